"""state_dict / load_state_dict: continuation is bit-identical, lr comes back, bad states fail
cleanly (RuntimeError/ValueError with the message) and leave the optimizer untouched."""
import copy
import pickle
from pathlib import Path

import pytest
import torch

import limuon  # noqa: E402


def make_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(6, 4, generator=g, dtype=torch.float64).requires_grad_(True),
              torch.randn(3, 6, generator=g, dtype=torch.float64).requires_grad_(True),
              torch.randn(2, 3, 2, generator=g, dtype=torch.float64).requires_grad_(True)]
    batches = [(torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, 3, generator=g,
                                                                                    dtype=torch.float64))
               for _ in range(8)]
    return params, batches


def closure_for(params, batch):
    x, y = batch

    def closure():
        for p in params:
            p.grad = None
        h = torch.tanh(x @ params[0].T) @ params[1].T
        loss = ((h - y) ** 2).mean() + params[2].pow(2).sum() * 1e-2 + (params[2].sum() - 1) ** 2
        loss.backward()
        return loss
    return closure


CASES = [
    ("muon", dict(lr=0.05, momentum=0.9)),
    ("muon", dict(lr=0.05, orthogonalizer="rsvd", rank=2, oversample=1, seed=3, weight_decay=0.1)),
    ("limuon", dict(lr=0.05, beta=0.3)),
    ("limuon", dict(lr=0.05, beta=0.3, lowrank_state="paper", rank=2, seed=5)),
    ("limuon", dict(lr=0.05, beta=0.3, lowrank_state="light", rank=2, power_iters=1)),
    ("limuon", dict(lr=0.05, beta=0.3, storm="approx", gamma=0.2, orthogonalizer="polar_express")),
]


def build(kind, params, **kw):
    return (limuon.Muon if kind == "muon" else limuon.LiMuon)(params, **kw)


@pytest.mark.parametrize("kind,kw", CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_round_trip_continues_bit_identically(kind, kw):
    params, batches = make_problem()
    a = build(kind, params, **kw)
    for t in range(2):
        a.step(closure_for(params, batches[t]))
    sd = a.state_dict()
    at_save = [p.detach().clone() for p in params]
    # Through pickle too: the state dict must survive torch.save / pickle.
    sd = pickle.loads(pickle.dumps(sd))

    copies = [p.detach().clone().requires_grad_(True) for p in params]
    b = build(kind, copies, **dict(kw, lr=0.5))
    b.load_state_dict(sd)
    assert b.param_groups[0]["lr"] == kw["lr"]
    assert a.state_bytes() == b.state_bytes() > 0
    for t in range(2, 5):
        la = a.step(closure_for(params, batches[t]))
        lb = b.step(closure_for(copies, batches[t]))
        assert torch.equal(la, lb)
    for p, q in zip(params, copies):
        assert torch.equal(p, q)
    # ...and the continuation really moved the weights.
    assert not torch.equal(params[0], at_save[0])


def test_round_trip_keeps_scheduler_lr_and_group_options():
    params, batches = make_problem()
    a = limuon.LiMuon([{"params": params[:2], "lr": 0.03}, {"params": params[2:], "beta": 0.5}], lr=0.05, beta=0.2)
    a.step(closure_for(params, batches[0]))
    a.param_groups[0]["lr"] = 0.01  # as a scheduler would
    sd = a.state_dict()
    copies = [p.detach().clone().requires_grad_(True) for p in params]
    b = limuon.LiMuon([{"params": copies[:2]}, {"params": copies[2:]}], lr=0.7, beta=0.9)
    b.load_state_dict(sd)
    assert [g["lr"] for g in b.param_groups] == [0.01, 0.05]
    assert [g["beta"] for g in b.param_groups] == [0.2, 0.5]
    assert b._cpp.options(0)["lr"] == 0.01
    for t in range(1, 4):
        a.step(closure_for(params, batches[t]))
        b.step(closure_for(copies, batches[t]))
    for p, q in zip(params, copies):
        assert torch.equal(p, q)


def test_loading_the_wrong_optimizer_kind_raises():
    params, batches = make_problem()
    m = limuon.Muon(params)
    m.step(closure_for(params, batches[0]))
    li = limuon.LiMuon(params)
    with pytest.raises(ValueError, match="muon"):
        li.load_state_dict(m.state_dict())
    with pytest.raises(ValueError, match="not a limuon state dict"):
        li.load_state_dict(torch.optim.SGD(params, lr=0.1).state_dict())


def test_corrupt_archive_is_a_runtime_error():
    params, _ = make_problem()
    li = limuon.LiMuon(params)
    sd = li.state_dict()
    sd["limuon"]["archive"] = b"not an archive"
    with pytest.raises(RuntimeError) as e:
        li.load_state_dict(sd)
    # The message, not a C++ backtrace.
    assert "Exception raised from" not in str(e.value)


def test_shape_mismatch_fails_and_leaves_state_untouched():
    params, batches = make_problem()
    a = limuon.LiMuon(params, lr=0.05)
    for t in range(2):
        a.step(closure_for(params, batches[t]))
    sd = a.state_dict()
    other = [torch.randn(4, 6, dtype=torch.float64, requires_grad=True), params[1].detach().clone().requires_grad_(),
             params[2].detach().clone().requires_grad_()]
    b = limuon.LiMuon(other, lr=0.3)
    before = b.state_dict()
    with pytest.raises(RuntimeError, match="shape"):
        b.load_state_dict(sd)
    assert b.param_groups[0]["lr"] == 0.3
    assert b.state_dict()["limuon"]["archive"] == before["limuon"]["archive"]


def test_group_count_mismatch_is_a_value_error():
    params, _ = make_problem()
    a = limuon.Muon([{"params": params[:1]}, {"params": params[1:]}])
    b = limuon.Muon(params)
    with pytest.raises(ValueError, match="number of parameter groups"):
        b.load_state_dict(a.state_dict())


def test_pickling_the_optimizer_points_to_state_dict():
    params, _ = make_problem()
    opt = limuon.Muon(params)
    with pytest.raises(TypeError, match="state_dict"):
        pickle.dumps(opt)
    with pytest.raises(TypeError, match="state_dict"):
        copy.deepcopy(opt)
