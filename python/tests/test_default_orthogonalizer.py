"""The default orthogonalizer (issue 16, item 4): every optimizer that orthogonalizes by Newton-Schulz
defaults to gram_ns, ns5's iteration carried out on the Gram matrix. It is the same map as ns5 up to
rounding (and ns5 bit for bit below aspect ratio 1.5), so a step with the default equals a step with
orthogonalizer="gram_ns" exactly and one with "ns5" to rounding. A state dict written with ns5 (the
default before) keeps running ns5."""
import copy

import pytest
import torch

import limuon

GRAM_NS = [limuon.Muon, limuon.LiMuon, limuon.MuonMVR, limuon.MuonEq, limuon.LionMuon, limuon.Gluon]
SVD = [limuon.Sumo, limuon.MiMuon]


@pytest.mark.parametrize("cls", GRAM_NS + SVD, ids=lambda c: c.__name__)
def test_default_orthogonalizer(cls):
    opt = cls([torch.zeros(3, 4, requires_grad=True)])
    want = "svd" if cls in SVD else "gram_ns"
    assert opt.param_groups[0]["orthogonalizer"] == want
    assert opt._cpp.options(0)["orthogonalizer"] == want  # what the C++ optimizer runs with
    assert opt.defaults["orthogonalizer"] == want


def test_presets():
    assert limuon._C.limuon_preset("practical")["orthogonalizer"] == "gram_ns"
    assert limuon._C.limuon_preset("paper")["orthogonalizer"] == "svd"
    assert limuon.LiMuon([torch.zeros(3, 4, requires_grad=True)], preset="paper").param_groups[0][
        "orthogonalizer"] == "svd"


def displacement(cls, shape, calls, **kw):
    """W - W0 of one fp32 weight after `calls` steps on 0.5 ||W - T||^2 (its gradient W - T moves
    with W, so LiMuon's two evaluations per step differ)."""
    g = torch.Generator().manual_seed(11)
    w0 = torch.randn(*shape, generator=g)
    target = torch.randn(*shape, generator=g)
    w = w0.clone().requires_grad_(True)
    opt = cls([w], lr=0.02, **kw)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (w - target).pow(2).sum()
        loss.backward()
        return loss

    for _ in range(calls):
        opt.step(closure)
    return (w.detach() - w0)


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("cls", GRAM_NS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (64, 80)], ids=lambda s: "%dx%d" % s)
def test_default_step_is_gram_ns_and_matches_ns5_to_rounding(cls, shape):
    d = displacement(cls, shape, 3)
    gram = displacement(cls, shape, 3, orthogonalizer="gram_ns")
    ns5 = displacement(cls, shape, 3, orthogonalizer="ns5")
    assert torch.equal(d, gram)
    assert ns5.norm() > 1e-3
    assert rel(d, ns5) < 1e-5
    # below the 1.5 crossover the plain loop runs: ns5 bit for bit
    gram_form = max(shape) >= 1.5 * min(shape)
    assert torch.equal(d, ns5) == (not gram_form)


@pytest.mark.parametrize("cls", [limuon.Muon, limuon.LiMuon, limuon.MuonEq], ids=lambda c: c.__name__)
def test_a_state_dict_written_with_ns5_keeps_ns5(cls):
    def problem():
        g = torch.Generator().manual_seed(3)
        return torch.randn(16, 48, generator=g).requires_grad_(True), torch.randn(16, 48, generator=g)

    def closure_for(opt, w, t):
        def closure():
            opt.zero_grad()
            loss = 0.5 * (w - t).pow(2).sum()
            loss.backward()
            return loss
        return closure

    wa, ta = problem()
    a = cls([wa], lr=0.02, orthogonalizer="ns5")
    for _ in range(2):
        a.step(closure_for(a, wa, ta))
    state = copy.deepcopy(a.state_dict())
    wb, tb = problem()
    with torch.no_grad():
        wb.copy_(wa)
    b = cls([wb], lr=0.02)
    assert b.param_groups[0]["orthogonalizer"] == "gram_ns"
    b.load_state_dict(state)
    assert b.param_groups[0]["orthogonalizer"] == "ns5" and b._cpp.options(0)["orthogonalizer"] == "ns5"
    for _ in range(2):
        a.step(closure_for(a, wa, ta))
        b.step(closure_for(b, wb, tb))
    assert torch.equal(wa, wb)
