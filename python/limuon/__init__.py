"""limuon: LiMuon, Muon and the rest of the Muon family (C++ core on LibTorch) for PyTorch.

    import limuon
    opt = limuon.LiMuon(model_matrices, lr=0.02, beta=0.1)        # torch.optim.Optimizer
    opt = limuon.hybrid(model, method="limuon", matrix_kwargs={"lr": 0.02},
                        adamw_kwargs={"lr": 3e-4})                  # routes an nn.Module
    loss = opt.step(closure)                                         # LiMuon: closure runs twice
    opt = limuon.MuonEq(model_matrices, lr=0.02)     # also MuonMVR, Sumo, LionMuon, MiMuon, Gluon

Kernels (no autograd; matrices [m, n] or batches [k, m, n]): ns5, polar_express, gram_ns,
svd_polar, rsvd, orthogonalize. Build the extension with scripts/build_python.sh.
"""
import torch  # loads LibTorch before the extension that links against it

from . import _C
from ._hybrid import HybridOptimizer, hybrid, route
from .family import Gluon, LionMuon, MiMuon, MuonEq, MuonMVR, Sumo
from .optim import LiMuon, Muon

__version__ = "0.1.0"
__all__ = ["Muon", "LiMuon", "MuonMVR", "Sumo", "MuonEq", "LionMuon", "MiMuon", "Gluon", "hybrid", "route",
           "HybridOptimizer", "ns5", "polar_express", "gram_ns", "svd_polar", "rsvd", "orthogonalize", "configure_allocator"]


def configure_allocator():
    """Raises glibc malloc's mmap and trim thresholds for this whole process, as the limuon CLI does
    at start-up: the optimizers' large per-step temporaries are then reused instead of being mapped
    and unmapped every step (measured: our Muon step on DistilGPT2's 24 hidden matrices from Python
    took ~7 s with glibc's defaults and ~3 s with this). Opt-in, since it changes the process.
    Returns False where the C library does not support it."""
    return _C.configure_allocator()


@torch.no_grad()
def ns5(m, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7):
    """Quintic Newton-Schulz, X <- a X + (b A + c A^2) X with A = X X^T, from X = m / (||m||_F + eps)
    (tall matrices iterate on the transpose). With the default coefficients the singular values of
    the result land roughly in [0.5, 1.5]. Any floating dtype, bfloat16 on CPU included."""
    return _C.ns5(m, steps, tuple(coefficients), eps)


@torch.no_grad()
def polar_express(m):
    """Polar Express (Amsel et al. 2025), 5 steps: an approximate polar factor."""
    return _C.polar_express(m)


@torch.no_grad()
def gram_ns(m, coefficients="ns5", restarts=None, min_aspect=1.5, steps=5,
            ns_coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7):
    """Gram Newton-Schulz (Dao AI Lab 2026): the ns5 or Polar Express iteration (``coefficients``
    "ns5" or "polar_express") carried out on the small Gram matrix R = X X^T, with the accumulated
    min(m,n)^2 factor applied to X once at the end; the same result as ``ns5``/``polar_express`` up
    to rounding, in about 0.56x the flops at aspect ratio 4. ``restarts``: steps (0-based, 1..steps-1)
    before which X = Q X0 and R are recomputed; None = by dtype ([] for float32/float64, [1, 3] for
    bfloat16/float16, which diverge without, and for float32 on CUDA while TF32 matmuls are allowed). Matrices with max(m,n)/min(m,n) < ``min_aspect`` use
    the plain loop (1.0 forces the Gram form). ``steps``, ``ns_coefficients`` and ``eps`` apply to
    the ns5 schedule, as in ``ns5``."""
    return _C.gram_ns(m, coefficients, None if restarts is None else list(restarts), min_aspect, steps,
                      tuple(ns_coefficients), eps)


@torch.no_grad()
def svd_polar(m):
    """Exact polar factor U V^T from the thin SVD (float32/float64)."""
    return _C.svd_polar(m)


@torch.no_grad()
def rsvd(m, rank, oversample=8, power_iters=0, seed=0):
    """Randomized SVD (Halko et al. 2011): returns (U [.., m, r], S [.., r], V [.., n, r]) with
    m ~ U diag(S) V^T. The Gaussian sketch comes from a CPU generator seeded with ``seed``."""
    return _C.rsvd(m, rank, oversample, power_iters, seed)


@torch.no_grad()
def orthogonalize(m, method="ns5", rank=32, oversample=8, power_iters=0, seed=0):
    """Dispatch on an orthogonalizer name (svd, ns5, polar_express, rsvd, gram_ns), as the optimizers do."""
    return _C.orthogonalize(m, method, rank, oversample, power_iters, seed)
