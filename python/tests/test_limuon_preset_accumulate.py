"""LiMuon's `paper` preset and the opt-in accumulate_second_gradient protocol (no dense copy of the
old-point gradient through the second evaluation)."""
import pytest
import torch
import torch.nn as nn

import limuon


def matrices(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 3, generator=g, dtype=dtype).requires_grad_(),
            torch.randn(4, 6, generator=g, dtype=dtype).requires_grad_()]


def batches(n, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, generator=g, dtype=dtype), torch.randn(8, 6, generator=g, dtype=dtype))
            for _ in range(n)]


def loss_of(params, x, z):
    a, b = params
    return (torch.tanh(x @ a.T) ** 2).mean() + ((z @ b.T) ** 3).mean()


def closure_of(clear, params, x, z):
    """A closure that clears gradients with `clear()`, then evaluates loss_of and its gradient."""
    def closure():
        clear()
        loss = loss_of(params, x, z)
        loss.backward()
        return loss
    return closure


# ------------------------------------------------------------------ item 3: the paper preset
def test_paper_preset_sets_the_papers_options():
    opt = limuon.LiMuon(matrices(), lr=0.01, preset="paper")
    g = opt.param_groups[0]
    assert (g["orthogonalizer"], g["adjust_lr"], g["weight_decay"], g["storm"]) == ("svd", "none", 0.0, "exact")
    assert g["lr"] == 0.01 and g["beta"] == 0.1 and g["lowrank_state"] == "none"
    practical = limuon.LiMuon(matrices()).param_groups[0]
    assert (practical["orthogonalizer"], practical["adjust_lr"]) == ("gram_ns", "original")


def test_explicit_keywords_override_the_preset():
    opt = limuon.LiMuon(matrices(), preset="paper", orthogonalizer="ns5", lowrank_state="paper", beta=0.3)
    g = opt.param_groups[0]
    assert (g["orthogonalizer"], g["adjust_lr"], g["lowrank_state"], g["beta"]) == ("ns5", "none", "paper", 0.3)


def test_unknown_preset_is_a_value_error():
    with pytest.raises(ValueError, match="preset"):
        limuon.LiMuon(matrices(), preset="fast")


def test_paper_preset_moves_by_lr_times_the_exact_polar_factor():
    # beta = 1: call 0 sets M_0 = g(W_0); call 1 moves W by exactly lr·U Vᵀ of M_0, with no
    # shape factor (the practical default would scale the 5×3 matrix by sqrt(5/3)).
    params = matrices()
    lr = 0.05
    opt = limuon.LiMuon(params, lr=lr, beta=1.0, preset="paper")
    (x, z), = batches(1)
    closure = closure_of(opt.zero_grad, params, x, z)
    opt.step(closure)
    w0 = [p.detach().clone() for p in params]
    g0 = [p.grad.detach().clone() for p in params]
    opt.step(closure)
    for p, w, g in zip(params, w0, g0):
        u, _, vh = torch.linalg.svd(g, full_matrices=False)
        torch.testing.assert_close(w - p.detach(), lr * (u @ vh), rtol=0, atol=1e-12)


# ------------------------------------------------------------------ item 4: accumulate_second_gradient
def run(kw, steps=5, zero=None):
    params = matrices()
    opt = limuon.LiMuon(params, lr=0.05, beta=0.3, rank=2, oversample=2, seed=4, **kw)
    data = batches(steps)
    for x, z in data:
        opt.step(closure_of(zero or opt.zero_grad, params, x, z))
    return params, opt


@pytest.mark.parametrize("lowrank_state", ["paper", "light"])
def test_accumulating_matches_the_stored_copy_up_to_rounding(lowrank_state):
    ref, ref_opt = run(dict(lowrank_state=lowrank_state))
    acc, acc_opt = run(dict(lowrank_state=lowrank_state, accumulate_second_gradient=True))
    for a, b in zip(acc, ref):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-10)
    assert acc_opt.state_bytes() == ref_opt.state_bytes()
    assert acc_opt.param_groups[0]["accumulate_second_gradient"] is True
    # and the weights did move
    assert (acc[0].detach() - matrices()[0].detach()).abs().max() > 1e-3


def test_model_zero_grad_in_the_closure_is_refused():
    params = matrices()
    holder = nn.Module()
    holder.a, holder.b = nn.Parameter(params[0].detach()), nn.Parameter(params[1].detach())
    ps = [holder.a, holder.b]
    opt = limuon.LiMuon(ps, lowrank_state="light", rank=2, accumulate_second_gradient=True)
    (x, z), = batches(1)
    closure = closure_of(holder.zero_grad, ps, x, z)  # drops the seeded gradient: must not pass silently
    opt.step(closure)  # the first call evaluates once: nothing seeded yet
    with pytest.raises(RuntimeError, match="zero_grad"):
        opt.step(closure)
    # the optimizer recovers: a correct closure steps normally afterwards
    good = closure_of(opt.zero_grad, ps, x, z)
    opt.step(good)
    opt.step(good)


def test_in_place_zeroing_by_hand_is_refused():
    params = matrices()
    opt = limuon.LiMuon(params, lowrank_state="paper", rank=2, accumulate_second_gradient=True)
    (x, z), = batches(1)

    def zero_by_hand():  # in place: the storage survives, but LiMuon.zero_grad was never called
        for p in params:
            if p.grad is not None:
                p.grad.zero_()

    closure = closure_of(zero_by_hand, params, x, z)
    opt.step(closure)
    with pytest.raises(RuntimeError, match="zero_grad"):
        opt.step(closure)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(11, 6)
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 11)

    def forward(self, idx):
        return self.fc2(torch.tanh(self.fc1(self.emb(idx))))


def hybrid_run(acc, steps=4):
    model = Net().double()
    opt = limuon.hybrid(model, "limuon", verbose=False,
                        matrix_kwargs=dict(lr=0.05, beta=0.3, rank=2, lowrank_state="light",
                                           accumulate_second_gradient=acc))
    g = torch.Generator().manual_seed(3)
    for _ in range(steps):
        idx = torch.randint(0, 11, (4, 5), generator=g)

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
            loss.backward()
            return loss

        opt.step(closure)
    return model


def test_hybrid_with_accumulation_matches_and_clears_adamw_gradients():
    ref, acc = hybrid_run(False), hybrid_run(True)
    for (n, a), (_, b) in zip(acc.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-10, msg=n)
