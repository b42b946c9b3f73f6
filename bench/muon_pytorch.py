#!/usr/bin/env python3
"""Muon steps side by side, in one process and one run, on the 24 hidden matrices of DistilGPT2 in
Hugging Face's Conv1D layout [in, out] (per layer attn.c_attn 768x2304, attn.c_proj 768x768,
mlp.c_fc 768x3072, mlp.c_proj 3072x768), fp32 weights, random gradients:

  torch_optim_muon     torch.optim.Muon as shipped (PyTorch >= 2.9; Newton-Schulz in bfloat16)
  limuon_binding_muon  limuon.Muon: our C++ step (Newton-Schulz in fp32) behind the binding, with
                       orthogonalizer ns5 (the plain loop, as the others; limuon's default is
                       gram_ns, which `limuon bench step` times)
  limuon_binding_muon_gram_ns  the same with orthogonalizer gram_ns (limuon's default): Newton-Schulz
                       carried out on the Gram matrix X X^T (README, "Gram Newton-Schulz")
  pytorch_muon         the usual Python formulation (Newton-Schulz in fp32 with matmuls), the
                       baseline suite.py checks our CLI's Muon against

All variants use the same hyperparameters (lr 0.02, momentum 0.95, Nesterov, no weight decay,
original lr scaling), start from the same weights, see the same gradients and run on the same
threads. After `--warmup` untimed rounds, each of `--repeats` rounds times one step of every
variant, in an order rotated each round so that drift in machine speed hits all of them. Prints
one JSON line per variant (median ms) and one with the ratios and the largest difference between
the first updates of ours and torch's (a check that the same algorithm is being timed).

By default the process gets the malloc settings our CLI sets for itself (limuon::configure_allocator:
mmap threshold 32 MiB, trim threshold 1 GiB), for every variant alike; with glibc's defaults each
step's large temporaries are mmap'ed and faulted in afresh, which more than doubled the step time
of every variant here. --malloc default keeps glibc's defaults.

    PYTHONPATH=build/python .venv/bin/python bench/muon_pytorch.py --threads 2
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import statistics
import sys
import time

import torch

A, B, C = 3.4445, -4.7750, 2.0315  # Keller Jordan's quintic coefficients (torch's defaults too)
LR, MOMENTUM = 0.02, 0.95


def newton_schulz(g, steps=5):
    x = g.mT if g.size(-2) > g.size(-1) else g
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        s = x @ x.mT
        poly = B * s + C * (s @ s)
        x = A * x + poly @ x
    return x.mT if g.size(-2) > g.size(-1) else x


class PlainMuon:
    """Muon as commonly written in Python: one momentum buffer per matrix, one matrix at a time."""

    def __init__(self, params):
        self.params = params
        self.bufs = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self):
        for p, buf in zip(self.params, self.bufs):
            g = p.grad
            buf.lerp_(g, 1 - MOMENTUM)
            u = g.lerp(buf, MOMENTUM)
            p.add_(newton_schulz(u), alpha=-LR * max(1.0, p.size(0) / p.size(1)) ** 0.5)


def conv1d_shapes(model):
    """The hidden matrices in Conv1D layout [in, out], four per transformer layer."""
    layers, d = {"distilgpt2": (6, 768), "gpt2": (12, 768), "tiny": (2, 64)}[model]
    return [s for _ in range(layers) for s in ((d, 3 * d), (d, d), (d, 4 * d), (4 * d, d))]


def make(variant, params):
    if variant == "pytorch_muon":
        return PlainMuon(params)
    if variant == "torch_optim_muon":
        return torch.optim.Muon(params, lr=LR, weight_decay=0.0, momentum=MOMENTUM, nesterov=True, adjust_lr_fn=None)
    import limuon  # the staged or installed package (see the module docstring)
    return limuon.Muon(params, lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=0.0, adjust_lr="original",
                       orthogonalizer="gram_ns" if variant.endswith("gram_ns") else "ns5")


def tune_malloc():
    """limuon::configure_allocator's settings, through glibc's mallopt; False where unavailable."""
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    except (OSError, AttributeError, TypeError):
        return False


VARIANTS = {"plain": "pytorch_muon", "torch": "torch_optim_muon", "limuon": "limuon_binding_muon",
            "gram": "limuon_binding_muon_gram_ns"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="distilgpt2", choices=["distilgpt2", "gpt2", "tiny"])
    ap.add_argument("--threads", type=int, default=0, help="0: one per CPU")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--variants", default="torch,limuon,plain", help="comma-separated: torch, limuon, gram, plain")
    ap.add_argument("--malloc", default="tuned", choices=["tuned", "default"],
                    help="tuned: the CLI's malloc settings (see above); default: glibc's")
    a = ap.parse_args()
    malloc = "tuned" if a.malloc == "tuned" and tune_malloc() else "default"
    torch.set_num_threads(a.threads if a.threads > 0 else os.cpu_count())
    names = [VARIANTS[v] for v in a.variants.split(",")]
    if "torch_optim_muon" in names and not hasattr(torch.optim, "Muon"):
        sys.exit(f"torch.optim.Muon needs PyTorch >= 2.9 (this is {torch.__version__}); drop 'torch' from --variants")

    torch.manual_seed(0)
    shapes = conv1d_shapes(a.model)
    weights = [torch.randn(m, n) * 0.02 for m, n in shapes]
    grads = [torch.randn(m, n) for m, n in shapes]
    params, opts = {}, {}
    for name in names:
        params[name] = [w.clone().requires_grad_(True) for w in weights]
        for p, g in zip(params[name], grads):
            p.grad = g  # shared, read-only for every optimizer: each step sees the same gradient
        opts[name] = make(name, params[name])

    times = {name: [] for name in names}
    first_update = {}
    for r in range(a.warmup + a.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            opts[name].step()
            ms = (time.perf_counter() - t0) * 1e3
            if r == 0:
                first_update[name] = [(p.detach() - w) for p, w in zip(params[name], weights)]
            if r >= a.warmup:
                times[name].append(ms)

    med = {name: statistics.median(t) for name, t in times.items()}
    for name in names:
        print(json.dumps({"bench": "step", "optimizer": name, "model": a.model, "layout": "conv1d",
                          "median_ms": med[name], "times_ms": [round(t, 1) for t in times[name]],
                          "threads": torch.get_num_threads(), "malloc": malloc, "torch": torch.__version__}))
    summary = {"bench": "muon_compare", "model": a.model, "threads": torch.get_num_threads(), "malloc": malloc,
               "warmup": a.warmup, "repeats": a.repeats, "torch": torch.__version__}
    for ours in ("limuon_binding_muon", "limuon_binding_muon_gram_ns"):
        for other in names:
            if other == ours or ours not in med or other.startswith("limuon_binding_muon") and ours.endswith("gram_ns"):
                continue
            summary[f"{other}_over_{ours}"] = med[other] / med[ours]
            # fp32 vs bf16 Newton-Schulz: about lr * 2^-8 * |O| for torch's, ~1e-7 for the plain one.
            key = f"max_first_update_diff_{other}" + ("_vs_gram_ns" if ours.endswith("gram_ns") else "")
            summary[key] = max((u - v).abs().max().item() for u, v in zip(first_update[ours], first_update[other]))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
