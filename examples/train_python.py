#!/usr/bin/env python3
"""Trains a tiny next-character model in Python with limuon.hybrid + LiMuon.

The data is synthetic: text drawn from a fixed random second-order Markov chain, so the best
achievable loss is known (the chain's conditional entropy) and the run needs no download. The
hidden MLP matrices go to LiMuon; the embedding, output head, biases and norm gains go to AdamW.
LiMuon (storm=exact) evaluates the closure twice per step on the same batch.

    scripts/build_python.sh && .venv/bin/python examples/train_python.py

Exits non-zero if the held-out loss does not go down.
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import limuon  # noqa: E402


def markov_text(n, vocab, gen):
    """n tokens from a random order-2 chain with peaked transitions; also returns its entropy rate."""
    logits = torch.randn(vocab, vocab, vocab, generator=gen) * 2.5
    probs = logits.softmax(-1)
    x = torch.empty(n, dtype=torch.long)
    x[:2] = torch.randint(0, vocab, (2,), generator=gen)
    u = torch.rand(n, generator=gen)
    cdf = probs.cumsum(-1)
    for i in range(2, n):
        x[i] = min(int(torch.searchsorted(cdf[x[i - 2], x[i - 1]], u[i])), vocab - 1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean().item()  # rough: uniform over contexts
    return x, entropy


class CharMLP(nn.Module):
    def __init__(self, vocab, context, d=32, hidden=128):
        super().__init__()
        self.context = context
        self.wte = nn.Embedding(vocab, d)
        self.fc1 = nn.Linear(context * d, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab)

    def forward(self, ctx):  # ctx [B, context]
        h = self.wte(ctx).flatten(1)
        h = F.gelu(self.fc1(h))
        h = self.norm(h + F.gelu(self.fc2(h)))
        return self.lm_head(h)


def windows(text, context):
    idx = torch.arange(context, len(text))
    ctx = torch.stack([text[idx - context + j] for j in range(context)], 1)
    return ctx, text[idx]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.02, help="LiMuon learning rate")
    ap.add_argument("--adamw-lr", type=float, default=3e-3)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lowrank-state", default="none", choices=["none", "paper", "light"])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    vocab, context = 16, 3
    text, entropy = markov_text(40_000, vocab, gen)
    train_x, train_y = windows(text[:32_000], context)
    val_x, val_y = windows(text[32_000:], context)

    model = CharMLP(vocab, context)
    opt = limuon.hybrid(model, method="limuon",
                        matrix_kwargs={"lr": a.lr, "beta": a.beta, "lowrank_state": a.lowrank_state, "rank": a.rank},
                        adamw_kwargs={"lr": a.adamw_lr})
    # Cosine decay on both optimizers: schedulers work on the Python param_groups.
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=a.steps, eta_min=0.0) for o in opt.optimizers]

    @torch.no_grad()
    def val_loss():
        return F.cross_entropy(model(val_x), val_y).item()

    first = val_loss()
    print(f"step    0  val loss {first:.4f}  (uniform {math.log(vocab):.4f}, chain entropy ~{entropy:.4f})")
    t0 = time.perf_counter()
    for step in range(1, a.steps + 1):
        i = torch.randint(0, len(train_x), (a.batch,), generator=gen)
        x, y = train_x[i], train_y[i]

        def closure():  # one fixed batch per step: LiMuon evaluates it at W_t and at W_{t+1}
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        loss = opt.step(closure)
        for s in scheds:
            s.step()
        if step % 25 == 0 or step == a.steps:
            print(f"step {step:4d}  train loss {loss.item():.4f}  val loss {val_loss():.4f}")
    last = val_loss()
    secs = time.perf_counter() - t0
    print(f"done: {a.steps} steps, {opt.evaluations} closure evaluations, {opt.adamw_steps} AdamW steps, "
          f"{secs:.1f}s; val loss {first:.4f} -> {last:.4f}; optimizer state {opt.state_bytes()} bytes")
    if not last < 0.8 * first:
        print("FAIL: the loss did not go down enough", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
