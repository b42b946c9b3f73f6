"""The rest of the family from Python (limuon.MuonMVR, Sumo, MuonEq, LionMuon, MiMuon, Gluon):
trajectories against the committed float64 reference (tests/reference/family_trajectories.txt,
written by the independent tests/reference/make_family_reference.py; tests/test_family.cpp checks
the C++ API against the same file), state round trips, option errors, schedulers and the hybrid."""
import copy
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import limuon  # noqa: E402
from limuon._hybrid import _METHODS  # noqa: E402
from test_hybrid import Tiny, batch, count_adamw_steps, make_closure  # noqa: E402
from test_reference import Problem, follow_reference, load_reference  # noqa: E402
from test_state import closure_for, make_problem  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FAMILY = ROOT / "tests" / "reference" / "family_trajectories.txt"
CLASSES = {"muon_mvr": limuon.MuonMVR, "sumo": limuon.Sumo, "muoneq": limuon.MuonEq, "lionmuon": limuon.LionMuon,
           "mimuon": limuon.MiMuon, "gluon": limuon.Gluon}


def typed(text):
    """A config value as written by the reference script: True/False, an int, a float (inf), or a name."""
    if text in ("True", "False"):
        return text == "True"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def load_family():
    tensors, losses, configs, calls = load_reference(FAMILY)
    return tensors, losses, {n: (kind, {k: typed(v) for k, v in opts.items()}) for n, (kind, opts) in configs.items()}, calls


FAM = load_family()


def make(name, params):
    kind, opts = FAM[2][name]
    return CLASSES[kind](params, **opts)


def test_every_family_configuration_is_listed():
    kinds = {kind for kind, _ in FAM[2].values()}
    assert len(FAM[2]) == 21 and kinds == set(CLASSES) and FAM[3] == 6


# The published defaults (ALGORITHMS.md section 4; the C++ options have the same). The orthogonalizer
# is limuon's: gram_ns (ns5 on the Gram matrix) wherever the method orthogonalizes by Newton-Schulz.
PUBLISHED = {
    limuon.MuonMVR: dict(lr=1e-3, momentum=0.95, nesterov=False, gamma=0.025, max_norm=1.0, clip_inputs=False,
                         zero_prev_init=True, variant="mvr1", adjust_lr="match_rms_adamw", orthogonalizer="gram_ns"),
    limuon.Sumo: dict(lr=1e-3, momentum=0.95, update_interval=200, alpha=1.0, outer=True, growth_limit=0.0,
                      adjust_lr="match_rms_adamw", orthogonalizer="svd"),
    limuon.MuonEq: dict(lr=1e-3, momentum=0.95, nesterov=True, equilibrate="rows", exponent=-0.5, eps=1e-12, phase=0,
                        adjust_lr="match_rms_adamw", orthogonalizer="gram_ns"),
    limuon.LionMuon: dict(lr=1e-3, beta1=0.9, beta2=0.99, period=2, sign_lr_ratio=0.05, adjust_lr="match_rms_adamw",
                          orthogonalizer="gram_ns"),
    limuon.MiMuon: dict(lr=0.02, momentum=0.95, nesterov=False, tau=1e-6, adjust_lr="none", orthogonalizer="svd"),
    limuon.Gluon: dict(lr=0.014, mode="stochastic", beta_schedule=True, nesterov=False, step_decay=True, l0=0.0,
                       l1=70.0, adjust_lr="spectral", orthogonalizer="gram_ns"),
}


@pytest.mark.parametrize("cls", list(PUBLISHED), ids=lambda c: c.__name__)
def test_defaults_are_the_published_ones(cls):
    opt = cls([torch.zeros(3, 4, requires_grad=True)])
    group = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    assert {k: group.get(k) for k in PUBLISHED[cls]} == PUBLISHED[cls]
    # and the C++ optimizer runs with the same
    assert {k: v for k, v in opt._cpp.options(0).items() if k in PUBLISHED[cls]} == PUBLISHED[cls]


@pytest.mark.parametrize("name", sorted(FAM[2]))
def test_trajectory_matches_float64_reference(name):
    prob = Problem()
    follow_reference(FAM, name, make(name, prob.params), prob, twice=FAM[2][name][1].get("variant") == "mvr2")


CASES = [
    (limuon.MuonMVR, dict(lr=0.05, gamma=0.3, max_norm=2.0)),
    (limuon.MuonMVR, dict(lr=0.05, gamma=0.3, clip_inputs=True, zero_prev_init=False, nesterov=True)),
    (limuon.MuonMVR, dict(lr=0.05, gamma=0.3, variant="mvr2")),
    (limuon.MuonMVR, dict(lr=0.05, gamma=0.3, variant="mvr2", nesterov=True)),
    (limuon.Sumo, dict(lr=0.05, rank=2, update_interval=2, seed=4)),
    (limuon.Sumo, dict(lr=0.05, rank=2, update_interval=2, seed=4, orthogonalizer="ns5", growth_limit=1.01)),
    (limuon.MuonEq, dict(lr=0.05, equilibrate="both", phase=4)),
    (limuon.LionMuon, dict(lr=0.05, period=3)),
    (limuon.MiMuon, dict(lr=0.05, tau=0.02)),
    (limuon.Gluon, dict(lr=0.05, weight_decay=0.1)),
    (limuon.Gluon, dict(lr=1.0, mode="deterministic", l0=0.5, l1=2.0)),
]


@pytest.mark.parametrize("cls,kw", CASES, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(CASES)])
def test_state_round_trip_continues_bit_identically(cls, kw):
    params, batches = make_problem()
    a = cls(params, **kw)
    for b in batches[:3]:
        a.step(closure_for(params, b))
    state = a.state_dict()
    copies = [p.detach().clone().requires_grad_(True) for p in params]
    b_opt = cls(copies, **dict(kw, lr=0.9))
    b_opt.load_state_dict(copy.deepcopy(state))
    assert b_opt.param_groups[0]["lr"] == kw["lr"] and b_opt.state_bytes() == a.state_bytes()
    assert a.state_bytes() > 0 or kw.get("mode") == "deterministic"  # which keeps no momentum
    for b in batches[3:6]:
        la = a.step(closure_for(params, b))
        lb = b_opt.step(closure_for(copies, b))
        assert torch.equal(la, lb)
    for p, q in zip(params, copies):
        assert torch.equal(p, q)
    # Another method's state is refused by name.
    other = limuon.MuonEq if cls is not limuon.MuonEq else limuon.Gluon
    with pytest.raises(ValueError, match="cannot load it"):
        other([p.detach().clone() for p in params]).load_state_dict(state)


def test_state_bytes_follow_the_documented_sizes():
    """ALGORITHMS.md section 6 / README: MVR1 keeps B and clip(g_prev) (2mn), MuonEq B (mn),
    SUMO Q and M ((m+n)r) in float64 here."""
    w = [torch.zeros(6, 10, dtype=torch.float64, requires_grad=True)]
    g = torch.randn(6, 10, dtype=torch.float64)
    sizes = {}
    for name, opt in (("mvr1", limuon.MuonMVR(w)), ("muoneq", limuon.MuonEq(w)), ("sumo", limuon.Sumo(w, rank=3))):
        w[0].grad = g.clone()
        opt.step()
        sizes[name] = opt.state_bytes()
    assert sizes == {"mvr1": 2 * 60 * 8, "muoneq": 60 * 8, "sumo": (6 + 10) * 3 * 8}


@pytest.mark.parametrize("cls,kw,needle", [
    (limuon.MuonMVR, dict(gamma=1.5), "gamma"),
    (limuon.MuonMVR, dict(variant="mvr3"), "mvr3"),
    (limuon.MuonMVR, dict(max_norm=0.0), "max_norm"),
    (limuon.Sumo, dict(update_interval=0), "update_interval"),
    (limuon.Sumo, dict(rank=0), "rank"),
    (limuon.MuonEq, dict(equilibrate="diagonal"), "diagonal"),
    (limuon.MuonEq, dict(exponent=0.5), "exponent"),
    (limuon.MuonEq, dict(phase=-1), "phase"),
    (limuon.Sumo, dict(growth_limit=0.5), "growth_limit"),
    (limuon.Gluon, dict(mode="online"), "online"),
    (limuon.MuonMVR, dict(clip_inputs="yes"), "clip_inputs"),
    (limuon.LionMuon, dict(period=0), "period"),
    (limuon.LionMuon, dict(beta1=1.5), "beta1"),
    (limuon.MiMuon, dict(orthogonalizer="ns5"), "svd"),
    (limuon.MiMuon, dict(tau=-1.0), "tau"),
    (limuon.Gluon, dict(l0=-1.0), "l0"),
    (limuon.Gluon, dict(momentum="high"), "momentum"),
])
def test_bad_options_name_the_problem(cls, kw, needle):
    with pytest.raises(ValueError, match=needle):
        cls([torch.zeros(3, 4, requires_grad=True)], **kw)


def test_vectors_are_refused_and_fixed_options_stay_fixed():
    with pytest.raises(ValueError, match="dim"):
        limuon.MuonEq([torch.zeros(4, requires_grad=True)])
    w = [torch.randn(4, 5, requires_grad=True)]
    opt = limuon.Sumo(w, rank=2)
    w[0].grad = torch.randn(4, 5)
    opt.step()
    opt.param_groups[0]["rank"] = 3
    with pytest.raises(ValueError, match="rank cannot change"):
        opt.step()
    mvr = limuon.MuonMVR([torch.randn(4, 5, requires_grad=True)], variant="mvr2")
    with pytest.raises(ValueError, match="closure"):
        mvr.step()


def test_lr_scheduler_reaches_the_cpp_options():
    w = [torch.randn(5, 4, dtype=torch.float64, requires_grad=True)]
    opt = limuon.LionMuon(w, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        w[0].grad = torch.randn(5, 4, dtype=torch.float64)
        opt.step()
        sched.step()
    assert math.isclose(opt._cpp.options(0)["lr"], 0.1 * 0.5 ** 2)  # synced before the third step
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)


def test_muoneq_without_equilibration_is_muon_bit_for_bit():
    params, batches = make_problem(3)
    copies = [p.detach().clone().requires_grad_(True) for p in params]
    a = limuon.MuonEq(params, lr=0.05, equilibrate="none", weight_decay=0.1, adjust_lr="original")
    b = limuon.Muon(copies, lr=0.05, weight_decay=0.1)
    for bt in batches[:4]:
        a.step(closure_for(params, bt))
        b.step(closure_for(copies, bt))
    for p, q in zip(params, copies):
        assert torch.equal(p, q)
    assert not torch.equal(params[0], make_problem(3)[0][0])


def test_mimuon_counts_its_two_steps():
    """Absolute all-pairs gap: tau = 0 always takes the Muon step, a huge tau always the momentum step,
    and the reference's tau = 0.02 mixes them (12 Muon, 6 momentum steps over 6 calls x 3 matrices)."""
    for tau, want in ((0.0, (18, 0)), (1e3, (0, 18)), (0.02, (12, 6))):
        prob = Problem()
        opt = limuon.MiMuon(prob.params, lr=0.05, momentum=0.9, tau=tau)
        for t in range(6):
            prob.batch = t
            opt.step(prob.closure)
        assert opt.branch_counts() == want, tau


@pytest.mark.parametrize("method", ["muon_mvr1", "sumo", "muoneq", "lionmuon", "mimuon", "gluon"])
def test_hybrid_one_evaluation_methods(method):
    torch.manual_seed(0)
    model = Tiny()
    before = model.fc1.weight.detach().clone()
    kw = {"rank": 4} if method == "sumo" else {}
    opt = limuon.hybrid(model, method=method, matrix_kwargs=kw, adamw_kwargs={"lr": 1e-2}, verbose=False)
    assert type(opt.matrix) is _METHODS[method][0]
    tokens, targets = batch()
    for _ in range(3):
        loss = opt.step(make_closure(model, opt, tokens, targets))
    assert opt.evaluations == 3 and opt.adamw_steps == 3 and torch.isfinite(loss)
    assert not torch.equal(before, model.fc1.weight) and opt.state_bytes() > 0


def test_hybrid_mvr2_steps_adamw_between_its_two_evaluations():
    torch.manual_seed(0)
    model = Tiny()
    opt = limuon.hybrid(model, method="muon_mvr2", adamw_kwargs={"lr": 1e-2}, verbose=False)
    assert opt.matrix.param_groups[0]["variant"] == "mvr2"
    log = []
    count_adamw_steps(opt, log)
    tokens, targets = batch()
    for _ in range(3):
        log.append("call")
        opt.step(make_closure(model, opt, tokens, targets, log))
    assert log == ["call", "eval"] + ["call", "eval", "adamw", "eval"] * 2
    assert opt.evaluations == 5 and opt.adamw_steps == 2
    with pytest.raises(ValueError, match="variant"):
        limuon.hybrid(Tiny(), method="muon_mvr2", matrix_kwargs={"variant": "mvr1"}, verbose=False)
