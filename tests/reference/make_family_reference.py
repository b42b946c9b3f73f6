#!/usr/bin/env python3
"""Independent float64 reference trajectories for the rest of the Muon family, as published
(ALGORITHMS.md §4, corrected from the papers and the authors' code; ../shared/docs/FAMILY-SOURCES.md):
Muon-MVR1/MVR2 (arXiv 2509.15816), SUMO (2505.24749), MuonEq (2603.28254), LionMuon (2605.19811),
MiMuon (2605.19619), Gluon (2505.13416).

Written from the specification as explicit plain loops, one function per method, not from the C++
code. Muon-MVR2 is run in its explicit form (a stored copy of the previous weights, two gradients per
step on the same batch) while the C++ optimizer lags the update by one call. The test problem, the
orthogonalizers, the randomized SVD and its seeded sketch are those of make_reference.py (shared
conventions). Every configuration also records how often the data-dependent branches fired (the MVR
cap, SUMO's limiter, MiMuon's two steps), so a configuration that never exercises its option shows.

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
STATS = {}


def count(cfg, what):
    key = cfg["name"] + "/" + what
    STATS[key] = STATS.get(key, 0) + 1


def orth_seed(cfg, i, t):
    return derive_seed(cfg["seed"], 2 * i + 1, t)


def step(ws, k, direction, lr, scale, wd):
    """W <- W(1 - lr wd) - lr scale D, on the matrix view."""
    new = matrix(ws[k]) * (1 - lr * wd) - lr * scale * direction
    return new.reshape(SHAPES[k])


def ema(buf, g, mom, nesterov):
    """Muon's EMA momentum; returns (new buffer, the update input)."""
    buf = mom * buf + (1 - mom) * g
    return buf, ((1 - mom) * g + mom * buf if nesterov else buf)


# ---------------------------------------------------------------- MuonEq (2603.28254)
def muoneq_scale(u, mode, exponent, eps):
    """Row factors (sum_j u_ij^2 + eps)^e and column factors (sum_i u_ij^2 + eps)^e, both of u."""
    rows, cols = u.shape
    r = [(sum(u[i, j].item() ** 2 for j in range(cols)) + eps) ** exponent for i in range(rows)]
    c = [(sum(u[i, j].item() ** 2 for i in range(rows)) + eps) ** exponent for j in range(cols)]
    out = u.clone()
    for i in range(rows):
        for j in range(cols):
            f = 1.0
            if mode in ("rows", "both"):
                f *= r[i]
            if mode in ("cols", "both"):
                f *= c[j]
            out[i, j] = u[i, j] * f
    return out


def run_muoneq(cfg, init, batches):
    ws = {k: v.clone() for k, v in init.items()}
    buf = {k: torch.zeros(matrix(ws[k]).shape) for k in NAMES}
    traj = []
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        new = {}
        for i, k in enumerate(NAMES):
            buf[k], u = ema(buf[k], g[k], cfg["momentum"], cfg["nesterov"])
            mode = cfg["equilibrate"]
            if mode == "both" and cfg["phase"] > 0 and t >= cfg["phase"]:
                mode = "rows"  # RC for the first `phase` steps, then R
                count(cfg, "phase_rows")
            d = orth(muoneq_scale(u, mode, cfg["exponent"], cfg["eps"]), cfg, orth_seed(cfg, i, t))
            rows, cols = u.shape
            new[k] = step(ws, k, d, cfg["lr"], lr_scale(cfg["adjust_lr"], rows, cols), cfg["weight_decay"])
        ws = new
        traj.append((loss, ws))
    return traj


# ---------------------------------------------------------------- MiMuon (2605.19619)
def min_pair_gap(s, rows, cols):
    """min over all pairs i != j of the non-zero singular values of |s_i - s_j| (ties give 0);
    +inf with fewer than two. Zero: below max(rows, cols) * eps_float64 * s_max."""
    vals = s.tolist()
    top = max(vals) if vals else 0.0
    nz = [v for v in vals if v > max(rows, cols) * torch.finfo(torch.float64).eps * top]
    gap = math.inf
    for a in range(len(nz)):
        for b in range(len(nz)):
            if a != b:
                gap = min(gap, abs(nz[a] - nz[b]))
    return gap


def run_mimuon(cfg, init, batches):
    ws = {k: v.clone() for k, v in init.items()}
    M = {k: torch.zeros(matrix(ws[k]).shape) for k in NAMES}
    traj = []
    beta = 1 - cfg["momentum"]  # the transcription's M_t = beta g_t + (1 - beta) M_{t-1}
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        new = {}
        for i, k in enumerate(NAMES):
            M[k] = beta * g[k] + (1 - beta) * M[k]
            u = (1 - cfg["momentum"]) * g[k] + cfg["momentum"] * M[k] if cfg["nesterov"] else M[k]
            rows, cols = u.shape
            U, S, Vh = torch.linalg.svd(u, full_matrices=False)
            if S.max().item() > 0 and min_pair_gap(S, rows, cols) >= cfg["tau"]:
                new[k] = step(ws, k, U @ Vh, cfg["lr"], lr_scale(cfg["adjust_lr"], rows, cols), cfg["weight_decay"])
                count(cfg, "muon")
            else:
                new[k] = step(ws, k, u, cfg["lr"], 1.0, cfg["weight_decay"])
                count(cfg, "momentum")
        ws = new
        traj.append((loss, ws))
    return traj


# ---------------------------------------------------------------- Gluon (2505.13416)
def run_gluon(cfg, init, batches):
    ws = {k: v.clone() for k, v in init.items()}
    M = {k: torch.zeros(matrix(ws[k]).shape) for k in NAMES}
    traj = []
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        new = {}
        for i, k in enumerate(NAMES):
            rows, cols = g[k].shape
            s = lr_scale(cfg["adjust_lr"], rows, cols)
            if cfg["mode"] == "deterministic":
                # Algorithm 2: t_k = ||G||_dual / (L0 + L1 ||G||_dual), ||G||_dual = s ||G||_*, on the
                # current gradient; the step t_k s UV^T.
                dual = s * sum(torch.linalg.svdvals(g[k]).tolist())
                tk = dual / (cfg["l0"] + cfg["l1"] * dual) if dual > 0 else 0.0
                d = orth(g[k], cfg, orth_seed(cfg, i, t))
                new[k] = step(ws, k, d, cfg["lr"], tk * s, cfg["weight_decay"])
            else:
                # Algorithm 1: M_k = beta_k M_{k-1} + (1 - beta_k) G_k, beta_k = 1 - (k+1)^-1/2
                # (so M_0 = G_0); the step (k+1)^-3/4 s orth(M_k).
                beta = 1 - (t + 1) ** -0.5 if cfg["beta_schedule"] else cfg["momentum"]
                M[k] = beta * M[k] + (1 - beta) * g[k]
                u = (1 - beta) * g[k] + beta * M[k] if cfg["nesterov"] else M[k]
                decay = (t + 1) ** -0.75 if cfg["step_decay"] else 1.0
                d = orth(u, cfg, orth_seed(cfg, i, t))
                new[k] = step(ws, k, d, cfg["lr"], decay * s, cfg["weight_decay"])
        ws = new
        traj.append((loss, ws))
    return traj


# ---------------------------------------------------------------- LionMuon (2605.19811)
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


# ---------------------------------------------------------------- SUMO (2505.24749)
def run_sumo(cfg, init, batches):
    """Algorithm 1 with Q on the shorter side (left when rows <= cols, else the mirror form).
    Block 4: W <- W - lr (G - Q(G_hat - O)) - lr wd W = W - lr (G_perp + Q O); the orthogonal part
    Q O carries alpha and the shape scale, G_perp = G - Q Q^T G carries none."""
    ws = {k: v.clone() for k, v in init.items()}
    Q, M, last = {}, {}, {}
    traj = []
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        new = {}
        for i, k in enumerate(NAMES):
            G = g[k]
            rows, cols = G.shape
            left = rows <= cols
            if t % cfg["update_interval"] == 0:
                u, _, v = rsvd(G, cfg["rank"], cfg["oversample"], cfg["power_iters"], derive_seed(cfg["seed"], 2 * i, t))
                q = u if left else v
                if k in M:  # R = Q_t^T Q_{t-1}; M <- R M (mirror: M R^T)
                    R = q.T @ Q[k]
                    M[k] = R @ M[k] if left else M[k] @ R.T
                Q[k] = q
            ghat = Q[k].T @ G if left else G @ Q[k]
            M[k] = cfg["momentum"] * M[k] + ghat if k in M else ghat
            O = orth(M[k], cfg, orth_seed(cfg, i, t))
            if cfg["growth_limit"] > 0:  # Block 3
                n = torch.linalg.norm(O).item()
                if k in last and n > cfg["growth_limit"] * last[k]:
                    O = O * (cfg["growth_limit"] * last[k] / n)
                    count(cfg, "limited")
                last[k] = torch.linalg.norm(O).item()
            QO = Q[k] @ O if left else O @ Q[k].T
            scale = cfg["alpha"] * lr_scale(cfg["adjust_lr"], rows, cols)
            if cfg["outer"]:
                perp = G - Q[k] @ ghat if left else G - ghat @ Q[k].T
                new[k] = step(ws, k, perp + scale * QO, cfg["lr"], 1.0, cfg["weight_decay"])
            else:
                new[k] = step(ws, k, QO, cfg["lr"], scale, cfg["weight_decay"])
        ws = new
        traj.append((loss, ws))
    return traj


# ---------------------------------------------------------------- Muon-MVR1 / MVR2 (2509.15816)
def mvr_c(cfg, g, g_prev):
    """c = g + gamma mu/(1-mu) (g - g_prev), capped at max_norm; g_prev None on the first step is 0
    (the authors' code) or g (zero_prev_init False, c = g)."""
    mu = cfg["momentum"]
    if cfg["clip_inputs"]:
        g = clip(g, cfg["max_norm"])
        g_prev = clip(g_prev, cfg["max_norm"]) if g_prev is not None else None
    if g_prev is None:
        g_prev = torch.zeros_like(g) if cfg["zero_prev_init"] else g
    c = g + cfg["gamma"] * (mu / (1 - mu)) * (g - g_prev)
    n = torch.linalg.norm(c).item()
    if n > cfg["max_norm"]:
        c = c * (cfg["max_norm"] / n)
        count(cfg, "capped")
    return c


def clip(x, r):
    n = torch.linalg.norm(x).item()
    return x * (r / n) if n > r else x


def run_mvr1(cfg, init, batches):
    ws = {k: v.clone() for k, v in init.items()}
    B = {k: torch.zeros(matrix(ws[k]).shape) for k in NAMES}
    prev = {k: None for k in NAMES}
    traj = []
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        new = {}
        for i, k in enumerate(NAMES):
            c = mvr_c(cfg, g[k], prev[k])
            prev[k] = g[k]
            B[k], u = ema(B[k], c, cfg["momentum"], cfg["nesterov"])
            rows, cols = c.shape
            new[k] = step(ws, k, orth(u, cfg, orth_seed(cfg, i, t)), cfg["lr"], lr_scale(cfg["adjust_lr"], rows, cols),
                          cfg["weight_decay"])
        ws = new
        traj.append((loss, ws))
    return traj


def run_mvr2(cfg, init, batches):
    """Explicit form: at step t, g_t = grad f(W_t; xi_t) and g_prev = grad f(W_{t-1}; xi_t) (a stored
    W_{t-1}). The C++ optimizer's call t ends at W_t with the step to W_{t+1} pending, so W_t is
    recorded."""
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
            c = mvr_c(cfg, g[k], g_old[k] if g_old is not None else None)
            B[k], u = ema(B[k], c, cfg["momentum"], cfg["nesterov"])
            rows, cols = c.shape
            new[k] = step(ws, k, orth(u, cfg, orth_seed(cfg, i, t)), cfg["lr"], lr_scale(cfg["adjust_lr"], rows, cols),
                          cfg["weight_decay"])
        prev_ws, ws = ws, new
    return traj


# ---------------------------------------------------------------- configurations
BASE = {"lr": 0.05, "weight_decay": 0.0, "orthogonalizer": "ns5", "rank": 2, "oversample": 1, "power_iters": 0,
        "seed": 7}
# Each method's published defaults (the C++/Python option defaults), overridden per configuration.
DEFAULTS = {
    "muoneq": dict(momentum=0.95, nesterov=True, equilibrate="rows", exponent=-0.5, eps=1e-12, phase=0,
                   adjust_lr="match_rms_adamw"),
    "mimuon": dict(momentum=0.95, nesterov=False, tau=1e-6, adjust_lr="none", orthogonalizer="svd"),
    "gluon": dict(mode="stochastic", momentum=0.95, nesterov=False, beta_schedule=True, step_decay=True, l0=0.0,
                  l1=70.0, adjust_lr="spectral"),
    "lionmuon": dict(beta1=0.9, beta2=0.99, period=2, sign_lr_ratio=0.05, adjust_lr="match_rms_adamw"),
    "sumo": dict(momentum=0.95, update_interval=200, alpha=1.0, outer=True, growth_limit=0.0,
                 adjust_lr="match_rms_adamw", orthogonalizer="svd"),
    "muon_mvr": dict(momentum=0.95, nesterov=False, gamma=0.025, max_norm=1.0, clip_inputs=False,
                     zero_prev_init=True, variant="mvr1", adjust_lr="match_rms_adamw"),
}
CONFIGS = [
    ("muoneq_rows", "muoneq", dict(momentum=0.9, weight_decay=0.1, lr=0.02)),
    ("muoneq_cols_svd", "muoneq", dict(momentum=0.9, equilibrate="cols", orthogonalizer="svd", nesterov=False,
                                       adjust_lr="original")),
    ("muoneq_both_pe", "muoneq", dict(momentum=0.9, equilibrate="both", orthogonalizer="polar_express", lr=0.01)),
    ("muoneq_both_quarter", "muoneq", dict(momentum=0.9, equilibrate="both", exponent=-0.25, eps=1e-3,
                                           adjust_lr="original")),
    ("muoneq_both_phase", "muoneq", dict(momentum=0.9, equilibrate="both", phase=3, orthogonalizer="svd",
                                         adjust_lr="spectral", lr=0.02)),
    ("mimuon_mixed", "mimuon", dict(momentum=0.9, tau=0.02)),
    ("mimuon_muon", "mimuon", dict(momentum=0.9, tau=0.0, nesterov=True, adjust_lr="spectral", weight_decay=0.1)),
    ("gluon_stochastic", "gluon", dict(lr=0.1)),
    ("gluon_stochastic_const_svd", "gluon", dict(beta_schedule=False, momentum=0.9, step_decay=False,
                                                 orthogonalizer="svd", adjust_lr="original", weight_decay=0.1)),
    ("gluon_deterministic_svd", "gluon", dict(mode="deterministic", l0=0.5, l1=2.0, orthogonalizer="svd", lr=0.2)),
    ("gluon_deterministic_ns5", "gluon", dict(mode="deterministic", lr=1.0, weight_decay=0.01)),
    ("lionmuon_p2", "lionmuon", dict(weight_decay=0.1, lr=0.02)),
    ("lionmuon_p3_svd", "lionmuon", dict(beta1=0.8, beta2=0.95, period=3, sign_lr_ratio=0.3, adjust_lr="original",
                                         orthogonalizer="svd")),
    ("sumo_k2", "sumo", dict(momentum=0.9, update_interval=2, lr=0.02)),
    ("sumo_k3_limiter_ns5", "sumo", dict(momentum=0.8, update_interval=3, alpha=0.5, power_iters=1,
                                         orthogonalizer="ns5", weight_decay=0.1, adjust_lr="spectral",
                                         growth_limit=1.01)),
    ("sumo_r1_no_outer", "sumo", dict(momentum=0.9, update_interval=2, rank=1, outer=False, adjust_lr="original")),
    ("mvr1", "muon_mvr", dict(momentum=0.9, gamma=0.5, max_norm=1.0, lr=0.02)),
    ("mvr1_old_form", "muon_mvr", dict(momentum=0.9, gamma=0.5, max_norm=0.5, clip_inputs=True, zero_prev_init=False,
                                       nesterov=True, adjust_lr="original")),
    ("mvr1_nocap_svd", "muon_mvr", dict(momentum=0.9, gamma=0.2, max_norm=math.inf, orthogonalizer="svd",
                                        adjust_lr="original")),
    ("mvr2", "muon_mvr", dict(momentum=0.9, gamma=0.5, max_norm=0.5, variant="mvr2", weight_decay=0.1, lr=0.02)),
    ("mvr2_nesterov_clip_pe", "muon_mvr", dict(momentum=0.9, gamma=0.1, max_norm=0.8, nesterov=True, clip_inputs=True,
                                               orthogonalizer="polar_express", variant="mvr2", adjust_lr="original")),
]
RUNNERS = {"muoneq": run_muoneq, "mimuon": run_mimuon, "gluon": run_gluon, "lionmuon": run_lionmuon,
           "sumo": run_sumo}


def main():
    init, batches = make_problem()
    lines = ["# Float64 reference trajectories for the Muon family (§4); generated by make_family_reference.py."
             " The problem (init, batches) is in trajectories.txt. Do not edit.",
             f"calls {CALLS}"]
    for name, kind, over in CONFIGS:
        cfg = dict(BASE)
        cfg.update(DEFAULTS[kind])
        cfg.update(over)
        cfg["name"] = name
        if kind == "muon_mvr":
            traj = (run_mvr1 if cfg["variant"] == "mvr1" else run_mvr2)(cfg, init, batches)
        else:
            traj = RUNNERS[kind](cfg, init, batches)
        keys = sorted(k for k in cfg if k != "name")
        lines.append(f"config {name} {kind} " + " ".join(f"{k}={cfg[k]}" for k in keys))
        for t, (loss, ws) in enumerate(traj):
            lines.append(f"loss {name} {t} {loss!r}")
            for k in NAMES:
                lines.append(fmt_tensor(f"traj/{name}/{t}/{k}", ws[k]))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "family_trajectories.txt")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}: {len(CONFIGS)} configurations x {CALLS} calls")
    for k in sorted(STATS):
        print(f"  {k}: {STATS[k]}")


if __name__ == "__main__":
    main()
