#!/usr/bin/env python3
"""Independent float64 reference trajectories for the rest of the Muon family (ALGORITHMS.md §4):
Muon-MVR1/MVR2, SUMO, MuonEq, LionMuon, MiMuon, Gluon.

Written from the specification as plain loops, not from the C++ code. Muon-MVR2 is run in its
explicit form (a stored copy of the previous weights, two gradients per step on the same batch)
while the C++ optimizer lags the update by one call. The test problem, the orthogonalizers, the
randomized SVD and its seeded sketch are those of make_reference.py (shared conventions).

Run with the project venv (scripts/setup.sh): .venv/bin/python tests/reference/make_family_reference.py
It rewrites tests/reference/family_trajectories.txt.
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import (CALLS, NAMES, SHAPES, derive_seed, fmt_tensor, grads, lr_scale,  # noqa: E402
                            make_problem, matrix, orth, rsvd)

torch.set_default_dtype(torch.float64)


def orth_seed(cfg, i, t):
    return derive_seed(cfg["seed"], 2 * i + 1, t)


def step(ws, k, direction, lr, scale, wd):
    """W ← W(1 − lr·wd) − lr·scale·D, on the matrix view."""
    new = matrix(ws[k]) * (1 - lr * wd) - lr * scale * direction
    return new.reshape(SHAPES[k])


def nesterov_input(buf, g, mom, nesterov):
    """Muon's EMA momentum; returns (new buffer, the update input)."""
    buf = mom * buf + (1 - mom) * g
    return buf, ((1 - mom) * g + mom * buf if nesterov else buf)


def equilibrate(u, mode):
    rn = u.norm(dim=1, keepdim=True).clamp_min(1e-30)
    cn = u.norm(dim=0, keepdim=True).clamp_min(1e-30)
    if mode == "rows":
        return u / rn
    if mode == "cols":
        return u / cn
    if mode == "both":
        return u / rn.sqrt() / cn.sqrt()
    return u


def min_relative_gap(s):
    s = sorted(s.tolist(), reverse=True)
    top = s[0]
    nz = [v for v in s if v > 1e-12 * top]
    gaps = [(a - b) / top for a, b in zip(nz, nz[1:]) if a - b > 0]
    return min(gaps) if gaps else math.inf


def clip(x, max_norm):
    n = x.norm().item()
    return x * (max_norm / n) if n > max_norm else x


STATS = {}


# ---------------------------------------------------------------- Muon-momentum methods
def run_momentum_family(kind, cfg, init, batches):
    """MuonEq, MiMuon, Gluon: Muon's momentum, a different direction."""
    ws = {k: v.clone() for k, v in init.items()}
    buf = {k: torch.zeros(matrix(ws[k]).shape) for k in NAMES}
    traj = []
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        new = {}
        for i, k in enumerate(NAMES):
            buf[k], u = nesterov_input(buf[k], g[k], cfg["momentum"], cfg["nesterov"])
            rows, cols = u.shape
            scale = lr_scale(cfg["adjust_lr"], rows, cols)
            if kind == "muoneq":
                d = orth(equilibrate(u, cfg["equilibrate"]), cfg, orth_seed(cfg, i, t))
            elif kind == "mimuon":
                P, S, Qh = torch.linalg.svd(u, full_matrices=False)
                if min_relative_gap(S) > cfg["tau"]:
                    d = P @ Qh
                    STATS[cfg["name"] + "/muon"] = STATS.get(cfg["name"] + "/muon", 0) + 1
                else:
                    d, scale = u, 1.0
                    STATS[cfg["name"] + "/momentum"] = STATS.get(cfg["name"] + "/momentum", 0) + 1
            elif kind == "gluon":
                d = orth(u, cfg, orth_seed(cfg, i, t))
                nuclear = max(0.0, (d * u).sum().item())
                scale *= nuclear / (cfg["l0"] + cfg["l1"] * nuclear)
            new[k] = step(ws, k, d, cfg["lr"], scale, cfg["weight_decay"])
        ws = new
        traj.append((loss, ws))
    return traj


def run_lionmuon(cfg, init, batches):
    ws = {k: v.clone() for k, v in init.items()}
    m = {k: torch.zeros(matrix(ws[k]).shape) for k in NAMES}
    traj = []
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        new = {}
        for i, k in enumerate(NAMES):
            u = cfg["beta1"] * m[k] + (1 - cfg["beta1"]) * g[k]
            rows, cols = u.shape
            if t % cfg["period"] == 0:
                new[k] = step(ws, k, orth(u, cfg, orth_seed(cfg, i, t)), cfg["lr"],
                              lr_scale(cfg["adjust_lr"], rows, cols), cfg["weight_decay"])
            else:
                new[k] = step(ws, k, torch.sign(u), cfg["lr"] * cfg["sign_lr_ratio"], 1.0, cfg["weight_decay"])
            m[k] = cfg["beta2"] * m[k] + (1 - cfg["beta2"]) * g[k]
        ws = new
        traj.append((loss, ws))
    return traj


def run_sumo(cfg, init, batches):
    ws = {k: v.clone() for k, v in init.items()}
    Q, M = {}, {}
    traj = []
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        new = {}
        for i, k in enumerate(NAMES):
            rows, cols = g[k].shape
            left = rows <= cols
            if t % cfg["update_interval"] == 0:
                u, _, v = rsvd(g[k], cfg["rank"], cfg["oversample"], cfg["power_iters"],
                               derive_seed(cfg["seed"], 2 * i, t))
                q = u if left else v
                if k in M:  # rotate the moment into the new basis
                    M[k] = (q.T @ Q[k]) @ M[k] if left else M[k] @ (Q[k].T @ q)
                Q[k] = q
            proj = Q[k].T @ g[k] if left else g[k] @ Q[k]
            M[k] = cfg["momentum"] * M[k] + proj if k in M else proj
            o = orth(M[k], cfg, orth_seed(cfg, i, t))
            d = Q[k] @ o if left else o @ Q[k].T
            new[k] = step(ws, k, d, cfg["lr"], cfg["alpha"] * lr_scale(cfg["adjust_lr"], rows, cols),
                          cfg["weight_decay"])
        ws = new
        traj.append((loss, ws))
    return traj


def mvr_direction(cfg, B, k, g_clipped, prev_clipped, i, t):
    mom = cfg["momentum"]
    if prev_clipped is None:
        c = g_clipped
    else:
        c = clip(g_clipped + cfg["gamma"] * (mom / (1 - mom)) * (g_clipped - prev_clipped), cfg["max_norm"])
    B[k], u = nesterov_input(B[k], c, mom, cfg["nesterov"])
    return orth(u, cfg, orth_seed(cfg, i, t))


def run_mvr1(cfg, init, batches):
    ws = {k: v.clone() for k, v in init.items()}
    B = {k: torch.zeros(matrix(ws[k]).shape) for k in NAMES}
    prev = {k: None for k in NAMES}
    traj = []
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        new = {}
        for i, k in enumerate(NAMES):
            gc = clip(g[k], cfg["max_norm"])
            d = mvr_direction(cfg, B, k, gc, prev[k], i, t)
            prev[k] = gc
            rows, cols = gc.shape
            new[k] = step(ws, k, d, cfg["lr"], lr_scale(cfg["adjust_lr"], rows, cols), cfg["weight_decay"])
        ws = new
        traj.append((loss, ws))
    return traj


def run_mvr2(cfg, init, batches):
    """Explicit form: at step t, g_t = ∇f(W_t; ξ_t) and g_prev = ∇f(W_{t−1}; ξ_t) (stored W_{t−1}).
    The C++ optimizer's call t ends at W_t with the step to W_{t+1} pending, so W_t is recorded."""
    ws = {k: v.clone() for k, v in init.items()}
    B = {k: torch.zeros(matrix(ws[k]).shape) for k in NAMES}
    prev_ws = None
    traj = []
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        g_old = grads(prev_ws, batches[t])[0] if prev_ws is not None else None
        traj.append((loss, ws))
        new = {}
        for i, k in enumerate(NAMES):
            gc = clip(g[k], cfg["max_norm"])
            pc = clip(g_old[k], cfg["max_norm"]) if g_old is not None else None
            d = mvr_direction(cfg, B, k, gc, pc, i, t)
            rows, cols = gc.shape
            new[k] = step(ws, k, d, cfg["lr"], lr_scale(cfg["adjust_lr"], rows, cols), cfg["weight_decay"])
        prev_ws, ws = ws, new
    return traj


BASE = {"lr": 0.05, "weight_decay": 0.0, "adjust_lr": "original", "orthogonalizer": "ns5", "rank": 2,
        "oversample": 1, "power_iters": 0, "seed": 7}
MOM = {"momentum": 0.9, "nesterov": True}
CONFIGS = [
    ("muoneq_rows", "muoneq", dict(MOM, equilibrate="rows", weight_decay=0.1)),
    ("muoneq_cols_svd", "muoneq", dict(MOM, equilibrate="cols", orthogonalizer="svd", nesterov=False)),
    ("muoneq_both_pe", "muoneq", dict(MOM, equilibrate="both", orthogonalizer="polar_express",
                                      adjust_lr="match_rms_adamw", lr=0.01)),
    ("mimuon_mixed", "mimuon", dict(MOM, orthogonalizer="svd", tau=0.15)),
    ("mimuon_muon", "mimuon", dict(MOM, orthogonalizer="svd", tau=1e-6, adjust_lr="spectral", weight_decay=0.1)),
    ("gluon_ns5", "gluon", dict(MOM, l0=0.5, l1=2.0, adjust_lr="none", lr=0.1)),
    ("gluon_svd", "gluon", dict(MOM, l0=1.0, l1=0.5, orthogonalizer="svd", adjust_lr="original", nesterov=False,
                                weight_decay=0.1)),
    ("lionmuon_p2", "lionmuon", dict(beta1=0.9, beta2=0.99, period=2, sign_lr_ratio=0.1,
                                     adjust_lr="match_rms_adamw", weight_decay=0.1)),
    ("lionmuon_p3_svd", "lionmuon", dict(beta1=0.8, beta2=0.95, period=3, sign_lr_ratio=0.3,
                                         adjust_lr="original", orthogonalizer="svd")),
    ("sumo_k2", "sumo", dict(momentum=0.9, update_interval=2, alpha=1.0, orthogonalizer="svd")),
    ("sumo_k3_r1_ns5", "sumo", dict(momentum=0.8, update_interval=3, alpha=0.5, rank=1, power_iters=1,
                                    orthogonalizer="ns5", weight_decay=0.1, adjust_lr="spectral")),
    ("mvr1", "muon_mvr", dict(MOM, gamma=0.5, max_norm=0.5, variant="mvr1")),
    ("mvr1_noclip_plain", "muon_mvr", dict(MOM, gamma=0.2, max_norm=math.inf, nesterov=False,
                                           orthogonalizer="svd", variant="mvr1")),
    ("mvr2", "muon_mvr", dict(MOM, gamma=0.5, max_norm=0.5, variant="mvr2", weight_decay=0.1)),
    ("mvr2_plain_pe", "muon_mvr", dict(MOM, gamma=0.1, max_norm=2.0, nesterov=False,
                                       orthogonalizer="polar_express", variant="mvr2")),
]


def main():
    init, batches = make_problem()
    lines = ["# Float64 reference trajectories for the Muon family (§4); generated by make_family_reference.py."
             " The problem (init, batches) is in trajectories.txt. Do not edit.",
             f"calls {CALLS}"]
    for name, kind, over in CONFIGS:
        cfg = dict(BASE)
        cfg.update(over)
        cfg["name"] = name
        if kind in ("muoneq", "mimuon", "gluon"):
            traj = run_momentum_family(kind, cfg, init, batches)
        elif kind == "lionmuon":
            traj = run_lionmuon(cfg, init, batches)
        elif kind == "sumo":
            traj = run_sumo(cfg, init, batches)
        elif cfg["variant"] == "mvr1":
            traj = run_mvr1(cfg, init, batches)
        else:
            traj = run_mvr2(cfg, init, batches)
        keys = sorted(k for k in cfg if k != "name")
        lines.append(f"config {name} {kind} " + " ".join(f"{k}={cfg[k]}" for k in keys))
        for t, (loss, ws) in enumerate(traj):
            lines.append(f"loss {name} {t} {loss!r}")
            for k in NAMES:
                lines.append(fmt_tensor(f"traj/{name}/{t}/{k}", ws[k]))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "family_trajectories.txt")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}: {len(CONFIGS)} configurations x {CALLS} calls; branch counts {STATS}")


if __name__ == "__main__":
    main()
