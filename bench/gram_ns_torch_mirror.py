"""A plain-PyTorch mirror of limuon's gram_ns (src/kernels/orth.cpp gram_loop: the same op sequence) and of
the plain Newton-Schulz loop, to check the restart policy and the speed on devices our C++ build is
not run on (CUDA bf16 / fp32 / TF32). Not a reference for the tests (those compare against the
float64 SVD and the C++ plain loop).

    python bench/gram_ns_torch_mirror.py [--device cuda] [--sizes 768x3072,2048x8192]
"""
import argparse
import math
import time

import torch

NS5 = [(3.4445, -4.7750, 2.0315)] * 5
PE = [(8.156554524902461, -22.48329292557795, 15.878769915207462),
      (4.042929935166739, -2.808917465908714, 0.5000178451051316),
      (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
      (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
      (2.3465413258596377, -1.7097828382687081, 0.42323551169305323)]


def normalised(m, pe):
    x = m if m.shape[-2] <= m.shape[-1] else m.mT
    n = x.norm(dim=(-2, -1), keepdim=True)
    return (x / (n * 1.02 + 1e-6) if pe else x / (n + 1e-7)).contiguous()


def plain(m, coeffs, pe):
    x = normalised(m, pe)
    for a, b, c in coeffs:
        A = x @ x.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c) if A.dim() == 3 else torch.addmm(A, A, A, beta=b, alpha=c)
        x = a * x + B @ x
    return x if m.shape[-2] <= m.shape[-1] else x.mT


def gram(m, coeffs, pe, restarts=()):
    x = normalised(m, pe)
    R = x @ x.mT
    Q = None
    for s, (a, b, c) in enumerate(coeffs):
        if s in restarts:
            x = Q @ x
            R = x @ x.mT
            Q = None
        P = torch.baddbmm(R, R, R, beta=b, alpha=c) if R.dim() == 3 else torch.addmm(R, R, R, beta=b, alpha=c)
        P.diagonal(dim1=-2, dim2=-1).add_(a)
        Q = P if Q is None else P @ Q
        if s + 1 < len(coeffs) and (s + 1) not in restarts:
            R = P @ R @ P
    out = Q @ x
    return out if m.shape[-2] <= m.shape[-1] else out.mT


def ill(m, n, kappa, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = min(m, n)
    u, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -math.log10(kappa), k, dtype=torch.float64)
    return ((u * s) @ v.T).to(device)


def timeit(fn, device, repeats=20):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--acc-shape", default="1024x4096")
    ap.add_argument("--sizes", default="768x3072,2048x8192,4096x16384")
    a = ap.parse_args()
    dev = a.device
    print("torch", torch.__version__, "device", dev, torch.cuda.get_device_name() if dev == "cuda" else "")
    m, n = map(int, a.acc_shape.split("x"))
    print(f"## accuracy, {m}x{n}: rel diff to the float64 plain loop, and sigma_max (plain loop in the dtype / gram)")
    for kappa in [None, 1e3, 1e6]:
        base = ill(m, n, kappa, dev) if kappa else torch.randn(m, n, dtype=torch.float64, device=dev)
        for name, co, pe in [("ns5", NS5, False), ("pe", PE, True)]:
            ref = plain(base, co, pe)
            for label, dt, tf32 in [("bf16", torch.bfloat16, False), ("fp16", torch.float16, False),
                                    ("fp32", torch.float32, False), ("fp32+tf32", torch.float32, True)]:
                if dev == "cuda":
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                elif tf32:
                    continue
                x = base.to(dt)
                p = plain(x, co, pe)
                row = [f"k={kappa} {name} {label}: plain {((p.double() - ref).norm() / ref.norm()).item():.2e} "
                       f"smax {torch.linalg.svdvals(p.double()).max().item():.3f}"]
                for rs in [(), (2,), (1, 3)]:
                    g = gram(x, co, pe, rs)
                    err = ((g.double() - ref).norm() / ref.norm()).item()
                    row.append(f"{rs}: {err:.2e} smax {torch.linalg.svdvals(g.double()).max().item():.3f}")
                print(" | ".join(row), flush=True)
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    print("## time (median ms): plain ns5 vs gram (no restart, restarts {2}, {1,3})")
    for size in a.sizes.split(","):
        mm, nn = map(int, size.split("x"))
        for dt in [torch.bfloat16, torch.float32]:
            x = torch.randn(mm, nn, device=dev, dtype=dt)
            tp = timeit(lambda: plain(x, NS5, False), dev)
            row = [f"{size} {str(dt)[6:]}: plain {tp:.3f}"]
            for rs in [(), (2,), (1, 3)]:
                tg = timeit(lambda: gram(x, NS5, False, rs), dev)
                row.append(f"gram{rs} {tg:.3f} ({tg / tp:.2f}x)")
            print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
