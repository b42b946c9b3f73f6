#!/usr/bin/env python3
"""Independent float64 reference trajectories for Muon and LiMuon (ALGORITHMS.md §2-3).

Written from the specification, not from the C++ code: LiMuon is run in the explicit form of
§3.1 (a stored copy of W_t, two gradients per step on the same batch), while the C++ optimizer
uses the lagged one-call form of §3.2. Only two conventions are shared on purpose: the Gaussian
sketch of the randomized SVD (torch's CPU generator, seeded by derive_seed below) and the
parameter order.

Run with the project venv (scripts/setup.sh): .venv/bin/python tests/reference/make_reference.py
It rewrites tests/reference/trajectories.txt.
"""
import math
import os

import torch

torch.set_default_dtype(torch.float64)
MASK64 = (1 << 64) - 1
CALLS = 6


# ---------------------------------------------------------------- seeds (shared convention)
def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def derive_seed(seed, stream, step):
    return splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ step) & 0x7FFFFFFFFFFFFFFF


def sketch(n, l, seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.randn(n, l, generator=g, dtype=torch.float32).to(torch.float64)


# ---------------------------------------------------------------- orthogonalizers (§1)
NS5 = [(3.4445, -4.7750, 2.0315)] * 5
POLAR_EXPRESS = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]


def newton_schulz(m, coeffs, scale, eps):
    x = m / (torch.linalg.norm(m) * scale + eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for a, b, c in coeffs:
        A = x @ x.T
        B = b * A + c * (A @ A)
        x = a * x + B @ x
    return x.T if tall else x


def polar_svd(m):
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    return u @ vh


def rsvd(m, rank, oversample, power_iters, seed):
    rows, cols = m.shape
    l = min(rank + oversample, min(rows, cols))
    omega = sketch(cols, l, seed)
    q, _ = torch.linalg.qr(m @ omega)
    for _ in range(power_iters):
        z, _ = torch.linalg.qr(m.T @ q)
        q, _ = torch.linalg.qr(m @ z)
    ub, s, vh = torch.linalg.svd(q.T @ m, full_matrices=False)
    r = min(rank, s.shape[0])
    return (q @ ub[:, :r], s[:r], vh[:r].T)


def orth(m, cfg, seed):
    method = cfg["orthogonalizer"]
    if method == "svd":
        return polar_svd(m)
    if method == "ns5":
        return newton_schulz(m, NS5, 1.0, 1e-7)
    if method == "polar_express":
        return newton_schulz(m, POLAR_EXPRESS, 1.02, 1e-6)
    if method == "rsvd":
        u, _, v = rsvd(m, cfg["rank"], cfg["oversample"], cfg["power_iters"], seed)
        return u @ v.T
    raise ValueError(method)


def lr_scale(mode, rows, cols):
    if mode == "original":
        return math.sqrt(max(1.0, rows / cols))
    if mode == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    if mode == "spectral":
        return math.sqrt(rows / cols)
    return 1.0


# ---------------------------------------------------------------- the test problem
SHAPES = {"W1": (5, 3), "W2": (4, 5), "W3": (3, 2, 2)}
NAMES = ["W1", "W2", "W3"]


def make_problem():
    g = torch.Generator()
    g.manual_seed(20250917)
    init = {k: 0.5 * torch.randn(*s, generator=g) for k, s in SHAPES.items()}
    batches = []
    for _ in range(CALLS + 1):
        batches.append({
            "x": torch.randn(8, 3, generator=g),
            "y": torch.randn(8, 4, generator=g),
            "z": torch.randn(8, 4, generator=g),
            "u": torch.randn(8, 3, generator=g),
        })
    return init, batches


def loss_fn(ws, b):
    h = torch.tanh(b["x"] @ ws["W1"].T)
    pred = h @ ws["W2"].T
    side = b["z"] @ ws["W3"].reshape(3, 4).T
    return ((pred - b["y"]) ** 2).mean() + ((side - b["u"]) ** 2).mean()


def grads(ws, b):
    """Gradients at ws on batch b, as matrices [rows, cols]."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in ws.items()}
    loss = loss_fn(leaves, b)
    loss.backward()
    return {k: leaves[k].grad.reshape(SHAPES[k][0], -1).clone() for k in NAMES}, loss.item()


def matrix(w):
    return w.reshape(w.shape[0], -1)


def update(ws, directions, cfg):
    out = {}
    for k in NAMES:
        rows, cols = matrix(ws[k]).shape
        scale = lr_scale(cfg["adjust_lr"], rows, cols)
        new = matrix(ws[k]) * (1 - cfg["lr"] * cfg["weight_decay"]) - cfg["lr"] * scale * directions[k]
        out[k] = new.reshape(SHAPES[k])
    return out


# ---------------------------------------------------------------- optimizers
def run_muon(cfg, init, batches):
    ws = {k: v.clone() for k, v in init.items()}
    buf = {k: torch.zeros(matrix(ws[k]).shape) for k in NAMES}
    traj = []
    mom = cfg["momentum"]
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        dirs = {}
        for i, k in enumerate(NAMES):
            buf[k] = mom * buf[k] + (1 - mom) * g[k]
            u = (1 - mom) * g[k] + mom * buf[k] if cfg["nesterov"] else buf[k]
            dirs[k] = orth(u, cfg, derive_seed(cfg["seed"], 2 * i + 1, t))
        ws = update(ws, dirs, cfg)
        traj.append((loss, ws))
    return traj


def compress(m, cfg, i, t):
    return rsvd(m, cfg["rank"], cfg["oversample"], cfg["power_iters"], derive_seed(cfg["seed"], 2 * i, t))


def reconstruct(f):
    u, s, v = f
    return u @ torch.diag(s) @ v.T


def direction_of(m_full, factors, cfg, i, t):
    """orth(M_t): the full estimate for none/paper, Û V̂ᵀ of the factors for light."""
    if cfg["lowrank_state"] == "light":
        u, _, v = factors
        return u @ v.T
    return orth(m_full, cfg, derive_seed(cfg["seed"], 2 * i + 1, t))


def run_limuon_exact(cfg, init, batches):
    beta, mode = cfg["beta"], cfg["lowrank_state"]
    ws = {k: v.clone() for k, v in init.items()}
    # Call 0: M_0 = ∇f(W_0; ξ_0); no move.
    M, loss = grads(ws, batches[0])
    F = {k: compress(M[k], cfg, i, 0) for i, k in enumerate(NAMES)} if mode != "none" else {}
    traj = [(loss, ws)]
    for t in range(CALLS - 1):
        b = batches[t + 1]
        dirs = {k: direction_of(M[k], F.get(k), cfg, i, t) for i, k in enumerate(NAMES)}
        new_ws = update(ws, dirs, cfg)
        g_old, _ = grads(ws, b)        # ∇f(W_t; ξ_{t+1})
        g_new, loss = grads(new_ws, b)  # ∇f(W_{t+1}; ξ_{t+1})
        for i, k in enumerate(NAMES):
            prev = M[k] if mode == "none" else reconstruct(F[k])
            M[k] = g_new[k] + (1 - beta) * (prev - g_old[k])
            if mode != "none":
                F[k] = compress(M[k], cfg, i, t + 1)
        ws = new_ws
        traj.append((loss, ws))
    return traj


def run_limuon_approx(cfg, init, batches):
    beta, mode, gamma = cfg["beta"], cfg["lowrank_state"], cfg["gamma"]
    ws = {k: v.clone() for k, v in init.items()}
    M, F, g_prev = {}, {}, {}
    traj = []
    for t in range(CALLS):
        g, loss = grads(ws, batches[t])
        dirs = {}
        for i, k in enumerate(NAMES):
            if t == 0:
                m = g[k].clone()
            else:
                c = g[k] + gamma * ((1 - beta) / beta) * (g[k] - g_prev[k])
                prev = M[k] if mode == "none" else reconstruct(F[k])
                m = (1 - beta) * prev + beta * c
            M[k] = m
            if mode != "none":
                F[k] = compress(m, cfg, i, t)
            dirs[k] = direction_of(m, F.get(k), cfg, i, t)
            g_prev[k] = g[k]
        ws = update(ws, dirs, cfg)
        traj.append((loss, ws))
    return traj


BASE = {"lr": 0.05, "weight_decay": 0.0, "adjust_lr": "original", "orthogonalizer": "ns5", "rank": 2,
        "oversample": 1, "power_iters": 0, "seed": 7}
CONFIGS = [
    ("muon_ns5", "muon", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("muon_svd_plain", "muon", {"momentum": 0.8, "nesterov": False, "orthogonalizer": "svd",
                                "adjust_lr": "match_rms_adamw", "lr": 0.01}),
    ("muon_pe_spectral", "muon", {"momentum": 0.95, "nesterov": True, "orthogonalizer": "polar_express",
                                  "adjust_lr": "spectral"}),
    ("muon_rsvd", "muon", {"momentum": 0.9, "nesterov": True, "orthogonalizer": "rsvd", "adjust_lr": "none"}),
    ("limuon_none_ns5", "limuon", {"beta": 0.3, "weight_decay": 0.1, "lowrank_state": "none", "storm": "exact"}),
    ("limuon_none_svd", "limuon", {"beta": 0.5, "orthogonalizer": "svd", "adjust_lr": "match_rms_adamw",
                                   "lr": 0.01, "lowrank_state": "none", "storm": "exact"}),
    ("limuon_none_pe", "limuon", {"beta": 0.2, "orthogonalizer": "polar_express", "lowrank_state": "none",
                                  "storm": "exact"}),
    ("limuon_none_rsvd", "limuon", {"beta": 0.3, "orthogonalizer": "rsvd", "lowrank_state": "none",
                                    "storm": "exact"}),
    ("limuon_paper_ns5", "limuon", {"beta": 0.3, "lowrank_state": "paper", "storm": "exact"}),
    ("limuon_paper_svd_q1", "limuon", {"beta": 0.4, "orthogonalizer": "svd", "power_iters": 1,
                                       "adjust_lr": "spectral", "lowrank_state": "paper", "storm": "exact"}),
    ("limuon_light", "limuon", {"beta": 0.3, "lowrank_state": "light", "storm": "exact"}),
    ("limuon_light_q2", "limuon", {"beta": 0.25, "rank": 1, "power_iters": 2, "weight_decay": 0.1,
                                   "lowrank_state": "light", "storm": "exact"}),
    ("limuon_approx_none", "limuon", {"beta": 0.3, "gamma": 0.5, "lowrank_state": "none", "storm": "approx"}),
    ("limuon_approx_paper", "limuon", {"beta": 0.3, "gamma": 0.3, "lowrank_state": "paper", "storm": "approx"}),
    ("limuon_approx_light", "limuon", {"beta": 0.3, "gamma": 0.025, "lowrank_state": "light", "storm": "approx"}),
]


def fmt_tensor(key, t):
    vals = " ".join(repr(float(v)) for v in t.reshape(-1).tolist())
    dims = " ".join(str(d) for d in t.shape)
    return f"tensor {key} {t.dim()} {dims} {vals}"


def main():
    init, batches = make_problem()
    lines = ["# Float64 reference trajectories for Muon/LiMuon; generated by make_reference.py. Do not edit.",
             f"calls {CALLS}"]
    for k in NAMES:
        lines.append(fmt_tensor(f"init/{k}", init[k]))
    for t, b in enumerate(batches):
        for k in ("x", "y", "z", "u"):
            lines.append(fmt_tensor(f"batch/{t}/{k}", b[k]))
    for name, kind, over in CONFIGS:
        cfg = dict(BASE)
        cfg.update({"gamma": 0.025})
        cfg.update(over)
        if kind == "muon":
            traj = run_muon(cfg, init, batches)
        elif cfg["storm"] == "exact":
            traj = run_limuon_exact(cfg, init, batches)
        else:
            traj = run_limuon_approx(cfg, init, batches)
        keys = sorted(k for k in cfg if not (kind == "muon" and k in ("beta", "gamma", "lowrank_state", "storm")))
        lines.append(f"config {name} {kind} " + " ".join(f"{k}={cfg[k]}" for k in keys))
        for t, (loss, ws) in enumerate(traj):
            lines.append(f"loss {name} {t} {loss!r}")
            for k in NAMES:
                lines.append(fmt_tensor(f"traj/{name}/{t}/{k}", ws[k]))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trajectories.txt")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}: {len(CONFIGS)} configurations x {CALLS} calls")


if __name__ == "__main__":
    main()
