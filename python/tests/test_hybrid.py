"""limuon.hybrid: routing of nn.Module parameters and the AdamW/LiMuon interleaving."""
import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import limuon  # noqa: E402


class Tiny(nn.Module):
    def __init__(self, vocab=12, d=8, tie=False):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)           # an embedding by type, not by name
        self.fc1 = nn.Linear(d, 16)
        self.norm = nn.LayerNorm(16)
        self.conv = nn.Conv1d(16, 8, 3, padding=1)  # 3-D weight: a flattened matrix
        self.gain = nn.Parameter(torch.ones(1, 8))  # one non-unit dim: AdamW
        self.frozen = nn.Parameter(torch.ones(8, 8), requires_grad=False)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        if tie:
            self.lm_head.weight = self.emb.weight

    def forward(self, tokens):
        h = self.norm(torch.relu(self.fc1(self.emb(tokens))))        # [B, T, 16]
        h = self.conv(h.transpose(1, 2)).transpose(1, 2) * self.gain  # [B, T, 8]
        return self.lm_head(h)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 12, (4, 6), generator=g)
    return x, torch.roll(x, -1, dims=1)


def make_closure(model, opt, tokens, targets, log=None):
    def closure():
        if log is not None:
            log.append("eval")
        opt.zero_grad()
        logits = model(tokens)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        loss.backward()
        return loss
    return closure


def count_adamw_steps(opt, log):
    inner = opt.adamw.step

    def step(*a, **k):
        log.append("adamw")
        return inner(*a, **k)
    opt.adamw.step = step


def test_routing_sends_embeddings_heads_and_vectors_to_adamw(capsys):
    torch.manual_seed(0)
    model = Tiny()
    opt = limuon.hybrid(model, matrix_kwargs={"lr": 0.02})
    printed = capsys.readouterr().out
    routes = {n: r for n, _, r, _ in opt.routing}
    assert routes == {"emb.weight": "adamw", "fc1.weight": "matrix", "fc1.bias": "adamw", "norm.weight": "adamw",
                      "norm.bias": "adamw", "conv.weight": "matrix", "conv.bias": "adamw", "gain": "adamw",
                      "lm_head.weight": "adamw"}
    reasons = {n: why for n, _, _, why in opt.routing}
    assert reasons["emb.weight"] == "embedding module"
    assert "lm_head" in reasons["lm_head.weight"]
    assert "frozen" not in routes
    assert "routing: 2 tensors" in printed and "emb.weight" in printed
    assert isinstance(opt.matrix, limuon.LiMuon) and isinstance(opt.adamw, torch.optim.AdamW)
    assert {id(p) for p in opt.matrix.param_groups[0]["params"]} == {id(model.fc1.weight), id(model.conv.weight)}


def test_tied_head_and_embedding_is_one_adamw_tensor():
    model = Tiny(tie=True)
    routing, table = limuon.route(model)
    names = [n for n, _, _, _ in routing]
    assert names.count("emb.weight") == 1 and "lm_head.weight" not in names
    (why,) = [w for n, _, r, w in routing if n == "emb.weight" and r == "adamw"]
    assert "tied with lm_head.weight" in why


def test_force_patterns():
    model = Tiny()
    routing, _ = limuon.route(model, force_adamw=["conv.*"], force_matrix=["lm_head.weight"])
    routes = {n: r for n, _, r, _ in routing}
    assert routes["conv.weight"] == "adamw" and routes["lm_head.weight"] == "matrix"
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        limuon.route(model, force_matrix=["fc1.bias"])


def test_adamw_steps_once_per_two_evaluation_call():
    torch.manual_seed(0)
    model = Tiny()
    opt = limuon.hybrid(model, matrix_kwargs={"lr": 0.02, "beta": 0.2}, adamw_kwargs={"lr": 1e-2}, verbose=False)
    log = []
    count_adamw_steps(opt, log)
    tokens, targets = batch()
    calls = 4
    for t in range(calls):
        log.append("call")
        opt.step(make_closure(model, opt, tokens, targets, log))
    # First call: M_0 only, nobody moves. Then: old point, AdamW, new point.
    assert log == ["call", "eval"] + ["call", "eval", "adamw", "eval"] * (calls - 1)
    assert opt.evaluations == 1 + 2 * (calls - 1)
    assert opt.adamw_steps == calls - 1
    assert all(st["step"] == calls - 1 for st in opt.adamw.state.values())


def test_adamw_moves_between_the_two_evaluations():
    torch.manual_seed(1)
    model = Tiny()
    opt = limuon.hybrid(model, adamw_kwargs={"lr": 1e-2}, verbose=False)
    tokens, targets = batch()
    seen = []
    inner = make_closure(model, opt, tokens, targets)

    def closure():
        seen.append((model.emb.weight.detach().clone(), model.fc1.weight.detach().clone()))
        return inner()

    opt.step(closure)
    opt.step(closure)
    (e0, f0), (e1, f1), (e2, f2) = seen
    assert torch.equal(e0, e1) and torch.equal(f0, f1)          # first call moved nothing
    assert not torch.equal(e1, e2) and not torch.equal(f1, f2)  # both moved before the new point


@pytest.mark.parametrize("method,kw,evals,adamw", [("limuon", {"storm": "approx"}, 1, 1), ("muon", {}, 1, 1),
                                                  ("adamw", {}, 1, 1)])
def test_one_evaluation_methods_step_adamw_every_call(method, kw, evals, adamw):
    torch.manual_seed(0)
    model = Tiny()
    opt = limuon.hybrid(model, method=method, matrix_kwargs=kw, verbose=False)
    tokens, targets = batch()
    for _ in range(3):
        opt.step(make_closure(model, opt, tokens, targets))
    assert opt.evaluations == 3 * evals and opt.adamw_steps == 3 * adamw
    if method == "adamw":
        assert opt.matrix is None and len(opt.adamw.param_groups[0]["params"]) == 9


def test_closure_is_required():
    model = Tiny()
    opt = limuon.hybrid(model, verbose=False)
    with pytest.raises(ValueError, match="closure"):
        opt.step(None)
    with pytest.raises(ValueError, match="method"):
        limuon.hybrid(model, method="sgd", verbose=False)
    with pytest.raises(ValueError, match="beta"):
        limuon.hybrid(model, matrix_kwargs={"beta": 2.0}, verbose=False)


def test_nonfinite_adamw_gradient_is_skipped():
    torch.manual_seed(0)
    model = Tiny()
    opt = limuon.hybrid(model, method="muon", verbose=False)
    tokens, targets = batch()
    inner = make_closure(model, opt, tokens, targets)

    def closure():
        loss = inner()
        model.fc1.bias.grad[0] = float("inf")
        return loss

    before = model.emb.weight.detach().clone()
    opt.step(closure)
    assert opt.adamw_skips == 1 and opt.adamw_steps == 0
    assert torch.equal(before, model.emb.weight)


def test_hybrid_state_round_trip_is_bit_identical():
    torch.manual_seed(0)
    a_model = Tiny()
    a = limuon.hybrid(a_model, matrix_kwargs={"lr": 0.03, "lowrank_state": "paper", "rank": 4},
                      adamw_kwargs={"lr": 1e-2}, verbose=False)
    tokens, targets = batch()
    for _ in range(3):
        a.step(make_closure(a_model, a, tokens, targets))
    b_model = copy.deepcopy(a_model)
    b = limuon.hybrid(b_model, matrix_kwargs={"lr": 0.5, "lowrank_state": "paper", "rank": 4},
                      adamw_kwargs={"lr": 0.5}, verbose=False)
    b.load_state_dict(a.state_dict())
    assert b.matrix.param_groups[0]["lr"] == 0.03 and b.adamw.param_groups[0]["lr"] == 1e-2
    assert b.evaluations == a.evaluations and b.state_bytes() == a.state_bytes() > 0
    for s in range(3):
        tk, tg = batch(s + 1)
        la = a.step(make_closure(a_model, a, tk, tg))
        lb = b.step(make_closure(b_model, b, tk, tg))
        assert torch.equal(la, lb)
    for p, q in zip(a_model.parameters(), b_model.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="method"):
        limuon.hybrid(Tiny(), method="muon", verbose=False).load_state_dict(a.state_dict())


def test_route_accepts_named_pairs():
    w, b, e = torch.zeros(4, 3, requires_grad=True), torch.zeros(4, requires_grad=True), torch.zeros(9, 4,
                                                                                                     requires_grad=True)
    routing, _ = limuon.route([("block.w", w), ("block.b", b), ("wte", e)])
    assert [r for _, _, r, _ in routing] == ["matrix", "adamw", "adamw"]
