"""Both evaluations of a two-evaluation step (LiMuon storm="exact", Muon-MVR2) draw the same random
numbers: dropout masks and torch.rand in the closure repeat exactly, so STORM's correction compares
gradients on the same sample. Covers the optimizers' own step (the C++ core) and limuon.hybrid,
which runs the stages from Python."""
import pytest
import torch
import torch.nn as nn

import limuon


def make_net():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))
    net.train()
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    return net, x, y


def recording_closure(net, x, y, zero_grad, record):
    def closure():
        zero_grad()
        record["draws"].append(torch.rand(4))
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        record["grads"].append(torch.cat([p.grad.reshape(-1).clone() for p in net.parameters() if p.grad is not None]))
        return loss
    return closure


def check(record, calls):
    d, g = record["draws"], record["grads"]
    assert len(d) == 2 * calls - 1
    for c in range(1, calls):
        a, b = 2 * c - 1, 2 * c
        assert torch.equal(d[a], d[b]), f"call {c}: torch.rand differs between the two evaluations"
        assert torch.equal(g[a], g[b]), f"call {c}: dropout masks differ although the weights did not move"
        assert not torch.equal(d[a - 1], d[a]), f"call {c} repeated the previous call's draws"


@pytest.mark.parametrize("make", [
    lambda ps: limuon.LiMuon(ps, lr=0.0, beta=0.5),
    lambda ps: limuon.MuonMVR(ps, lr=0.0, variant="mvr2"),
], ids=["limuon_exact", "muon_mvr2"])
def test_optimizer_step_shares_randomness(make):
    net, x, y = make_net()
    matrices = [net[0].weight, net[3].weight]
    opt = make(matrices)
    record = {"draws": [], "grads": []}
    closure = recording_closure(net, x, y, lambda: net.zero_grad(set_to_none=False), record)
    for _ in range(3):
        opt.step(closure)
    check(record, 3)


@pytest.mark.parametrize("method", ["limuon", "muon_mvr2"])
def test_hybrid_shares_randomness(method):
    net, x, y = make_net()
    opt = limuon.hybrid(net, method=method, matrix_kwargs={"lr": 0.0}, adamw_kwargs={"lr": 0.0}, verbose=False)
    record = {"draws": [], "grads": []}
    closure = recording_closure(net, x, y, lambda: opt.zero_grad(set_to_none=False), record)
    for _ in range(3):
        opt.step(closure)
    check(record, 3)
    # The generator continues as after the second evaluation: the next draw is new.
    assert not torch.equal(torch.rand(4), record["draws"][-1])
