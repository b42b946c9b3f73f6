#!/usr/bin/env python3
"""A plain PyTorch Muon step (the usual Python formulation: EMA momentum, Nesterov, quintic
Newton-Schulz in fp32 with matmuls, original lr scaling) timed on the 24 hidden matrices of
DistilGPT2 with random gradients. Used by suite.py as the baseline for our C++ Muon.
"""
import argparse
import json
import statistics
import time

import torch

A, B, C = 3.4445, -4.7750, 2.0315  # Keller Jordan's quintic coefficients


def newton_schulz(g, steps=5):
    x = g.mT if g.size(-2) > g.size(-1) else g
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        s = x @ x.mT
        poly = B * s + C * (s @ s)
        x = A * x + poly @ x
    return x.mT if g.size(-2) > g.size(-1) else x


@torch.no_grad()
def muon_step(params, grads, bufs, lr=0.02, momentum=0.95, wd=0.0):
    for p, g, buf in zip(params, grads, bufs):
        buf.lerp_(g, 1 - momentum)
        u = g.lerp(buf, momentum)
        o = newton_schulz(u)
        p.mul_(1 - lr * wd)
        p.add_(o, alpha=-lr * max(1.0, p.size(0) / p.size(1)) ** 0.5)


def shapes(model):
    layers = {"distilgpt2": 6, "gpt2": 12, "tiny": 2}[model]
    d = 64 if model == "tiny" else 768
    return [s for _ in range(layers) for s in ((3 * d, d), (d, d), (4 * d, d), (d, 4 * d))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="distilgpt2")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    else:
        import os
        torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    sh = shapes(a.model)
    params = [torch.randn(m, n) * 0.02 for m, n in sh]
    grads = [torch.randn(m, n) for m, n in sh]
    bufs = [torch.zeros(m, n) for m, n in sh]
    for _ in range(a.warmup):
        muon_step(params, grads, bufs)
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        muon_step(params, grads, bufs)
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"bench": "step", "optimizer": "pytorch_muon", "model": a.model,
                      "median_ms": statistics.median(times), "threads": torch.get_num_threads(),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
