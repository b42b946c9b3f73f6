"""Bad options and misuse give clear Python exceptions; options edited in param_groups (by hand
or by torch.optim.lr_scheduler) reach the C++ optimizer."""
import warnings
from pathlib import Path

import pytest
import torch

import limuon  # noqa: E402


def matrices(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 5, generator=g, dtype=dtype).requires_grad_(True),
            torch.randn(4, 8, generator=g, dtype=dtype).requires_grad_(True)]


def data(seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 5, generator=g, dtype=dtype), torch.randn(32, 4, generator=g, dtype=dtype)


def closure_for(params, x, y):
    def closure():
        for p in params:
            p.grad = None
        loss = ((torch.tanh(x @ params[0].T) @ params[1].T - y) ** 2).mean()
        loss.backward()
        return loss
    return closure


BAD_LIMUON = [
    (dict(beta=0), "beta"), (dict(beta=1.5), "beta"), (dict(gamma=2.0), "gamma"), (dict(lr=-1.0), "lr"),
    (dict(weight_decay=-0.1), "weight_decay"), (dict(rank=0), "rank"), (dict(oversample=-1), "oversample"),
    (dict(power_iters=-2), "power_iters"), (dict(seed=-1), "seed"), (dict(lowrank_state="half"), "lowrank_state"),
    (dict(storm="sometimes"), "storm"), (dict(orthogonalizer="qr"), "orthogonalizer"),
    (dict(adjust_lr="bigger"), "adjust_lr"), (dict(nonfinite="ignore"), "nonfinite"),
    (dict(beta="0.1"), "beta"), (dict(rank=2.5), "rank"), (dict(lowrank_state=None), "lowrank_state"),
    (dict(lr=float("nan")), "lr"),
]


@pytest.mark.parametrize("kw,option", BAD_LIMUON, ids=[f"{o}-{i}" for i, (_, o) in enumerate(BAD_LIMUON)])
def test_bad_limuon_option_is_a_value_error_naming_it(kw, option):
    with pytest.raises(ValueError, match=option):
        limuon.LiMuon(matrices(), **kw)


BAD_MUON = [(dict(momentum=1.0), "momentum"), (dict(momentum=-0.1), "momentum"), (dict(nesterov="yes"), "nesterov"),
            (dict(lr=-0.02), "lr"), (dict(orthogonalizer="magic"), "orthogonalizer")]


@pytest.mark.parametrize("kw,option", BAD_MUON, ids=[o for _, o in BAD_MUON])
def test_bad_muon_option_is_a_value_error_naming_it(kw, option):
    with pytest.raises(ValueError, match=option):
        limuon.Muon(matrices(), **kw)


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError):
        limuon.LiMuon(matrices(), momentum=0.9)


def test_exact_step_without_closure_asks_for_one():
    opt = limuon.LiMuon(matrices())
    with pytest.raises(ValueError, match="closure"):
        opt.step()


def test_approx_step_without_closure_uses_existing_grads():
    ps = matrices()
    x, y = data()
    opt = limuon.LiMuon(ps, storm="approx")
    closure_for(ps, x, y)()
    before = ps[0].detach().clone()
    assert opt.step() is None
    assert not torch.equal(before, ps[0])


def test_one_dimensional_parameter_is_rejected():
    with pytest.raises(ValueError, match="not a matrix"):
        limuon.Muon([torch.zeros(5, requires_grad=True)])
    with pytest.raises(ValueError, match="not a matrix"):
        limuon.LiMuon([torch.zeros(2, 3, requires_grad=True), torch.zeros(3, requires_grad=True)])


def test_empty_and_non_leaf_parameters_are_rejected():
    with pytest.raises(ValueError, match="empty"):
        limuon.Muon([])
    w = torch.zeros(3, 3, requires_grad=True)
    with pytest.raises(ValueError, match="non-leaf"):
        limuon.Muon([w * 2])


def test_add_param_group_validates_and_stays_consistent():
    ps = matrices()
    opt = limuon.Muon(ps[:1])
    with pytest.raises(ValueError, match="not a matrix"):
        opt.add_param_group({"params": [torch.zeros(4, requires_grad=True)]})
    with pytest.raises(ValueError, match="momentum"):
        opt.add_param_group({"params": [ps[1]], "momentum": 2.0})
    assert len(opt.param_groups) == 1 and opt._cpp.num_groups() == 1
    opt.add_param_group({"params": [ps[1]], "lr": 0.1})
    assert opt._cpp.num_groups() == 2 and opt._cpp.options(1)["lr"] == 0.1
    x, y = data()
    before = ps[1].detach().clone()
    opt.step(closure_for(ps, x, y))
    assert not torch.equal(before, ps[1])


def test_fixed_option_cannot_change_after_construction():
    ps = matrices()
    x, y = data()
    opt = limuon.LiMuon(ps)
    opt.step(closure_for(ps, x, y))
    opt.param_groups[0]["lowrank_state"] = "light"
    with pytest.raises(ValueError, match="lowrank_state"):
        opt.step(closure_for(ps, x, y))


def test_invalid_value_set_through_param_groups_is_caught_at_step():
    ps = matrices()
    x, y = data()
    opt = limuon.LiMuon(ps)
    opt.param_groups[0]["beta"] = 0.0
    with pytest.raises(ValueError, match="beta"):
        opt.step(closure_for(ps, x, y))


def test_closure_exception_propagates_unchanged():
    opt = limuon.LiMuon(matrices())

    def closure():
        raise KeyError("from the closure")

    with pytest.raises(KeyError, match="from the closure"):
        opt.step(closure)
    # The optimizer is still usable afterwards.
    ps = opt.param_groups[0]["params"]
    x, y = data()
    opt.step(closure_for(ps, x, y))


def test_nonfinite_gradient_policy():
    ps = matrices()
    x, y = data()
    x = x.clone()
    x[0, 0] = float("nan")
    skip = limuon.Muon(ps)
    before = [p.detach().clone() for p in ps]
    skip.step(closure_for(ps, x, y))
    assert skip.nonfinite_skips() == 1
    assert all(torch.equal(a, b) for a, b in zip(before, ps))
    strict = limuon.Muon(ps, nonfinite="raise")
    with pytest.raises(RuntimeError, match="non-finite"):
        strict.step(closure_for(ps, x, y))


def test_step_under_no_grad_still_evaluates_with_grad():
    ps = matrices()
    x, y = data()
    opt = limuon.LiMuon(ps)
    with torch.no_grad():
        for _ in range(2):
            loss = opt.step(closure_for(ps, x, y))
    assert loss is not None and opt.evaluations() == 3


def test_float_returning_closure_is_passed_through():
    ps = matrices()
    x, y = data()
    opt = limuon.Muon(ps)
    inner = closure_for(ps, x, y)
    assert isinstance(opt.step(lambda: inner().item()), float)


# ---------------------------------------------------------------- schedulers and live options
def scheduled_run(cls, lr0, factor, kw, steps):
    """Params after `steps` steps of an optimizer whose lr LambdaLR moved from lr0 to lr0*factor
    before the first step; returns them with the lr the scheduler set."""
    ps = matrices()
    x, y = data()
    opt = cls(ps, lr=lr0, **kw)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: factor ** min(epoch, 1))
    assert opt.param_groups[0]["lr"] == lr0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": on purpose here
        sched.step()
    lr = opt.param_groups[0]["lr"]
    assert lr == pytest.approx(lr0 * factor)
    for _ in range(steps):
        opt.step(closure_for(ps, x, y))
    return ps, lr


def fresh_run(cls, lr, kw, steps):
    ps = matrices()
    x, y = data()
    opt = cls(ps, lr=lr, **kw)
    for _ in range(steps):
        opt.step(closure_for(ps, x, y))
    return ps


@pytest.mark.parametrize("cls,kw,steps", [(limuon.Muon, {}, 1), (limuon.LiMuon, {}, 2),
                                          (limuon.LiMuon, {"storm": "approx"}, 1),
                                          (limuon.LiMuon, {"lowrank_state": "light", "rank": 2}, 2)],
                         ids=["muon", "limuon-exact", "limuon-approx", "limuon-light"])
def test_lambda_lr_changes_the_lr_the_cpp_side_uses(cls, kw, steps):
    # LiMuon exact/light: the first call only sets M_0, so the second is the one that moves.
    scheduled, lr = scheduled_run(cls, 0.1, 0.25, kw, steps)
    direct = fresh_run(cls, lr, kw, steps)
    for a, b in zip(scheduled, direct):
        assert torch.equal(a, b)
    # The lr matters: the unscheduled run lands elsewhere.
    unscheduled = fresh_run(cls, 0.1, kw, steps)
    assert not torch.allclose(scheduled[0], unscheduled[0])


def test_cosine_schedule_runs_and_syncs_every_step():
    ps = matrices()
    x, y = data()
    opt = limuon.LiMuon(ps, lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
    for _ in range(5):
        opt.step(closure_for(ps, x, y))
        sched.step()
        opt._sync()
        assert opt._cpp.options(0)["lr"] == pytest.approx(opt.param_groups[0]["lr"], abs=1e-15)


def test_momentum_edited_in_param_groups_reaches_cpp():
    ps, qs = matrices(), matrices()
    x, y = data()
    a = limuon.Muon(ps, momentum=0.5)
    a.param_groups[0]["momentum"] = 0.9
    a.step(closure_for(ps, x, y))
    b = limuon.Muon(qs, momentum=0.9)
    b.step(closure_for(qs, x, y))
    assert torch.equal(ps[0], qs[0])
