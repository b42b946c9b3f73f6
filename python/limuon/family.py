"""The rest of the Muon family (ALGORITHMS.md section 4) as torch.optim.Optimizer subclasses on the
limuon C++ core: MuonMVR (Muon-MVR1/MVR2), Sumo, MuonEq, LionMuon, MiMuon, Gluon.

They share the plumbing of limuon.Muon (options read from ``param_groups`` before each step, so
torch's lr schedulers work; ``state_dict`` through the C++ archive; ``state_bytes``). Every
parameter must have at least two dimensions (N-D weights are viewed as [out, rest] matrices):
route the others to AdamW, e.g. with ``limuon.hybrid(model, method="muoneq")``. The README's
"The Muon family" table gives each method's update, defaults, state and source paper.
"""

from . import _C
from .optim import _SHARED, _CppOptimizer, _TwoPointStages, _as_bool, _as_float, _as_int, _as_str

__all__ = ["MuonMVR", "Sumo", "MuonEq", "LionMuon", "MiMuon", "Gluon"]

_MOMENTUM = dict(_SHARED, momentum=_as_float, nesterov=_as_bool)


def _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed, nonfinite):
    return dict(lr=lr, weight_decay=weight_decay, adjust_lr=adjust_lr, orthogonalizer=orthogonalizer, rank=rank,
                oversample=oversample, power_iters=power_iters, seed=seed, nonfinite=nonfinite)


class MuonMVR(_TwoPointStages, _CppOptimizer):
    r"""Muon-MVR / Muon++: Muon's momentum fed a clipped, damped STORM correction.

    With mu = momentum and clip(x) = x * min(1, max_norm / ||x||_F)::

        c = clip(g) + gamma * mu / (1 - mu) * (clip(g) - clip(g_prev)),  ||c||_F capped at max_norm
        B <- mu B + (1 - mu) c;   U = (1 - mu) c + mu B (nesterov) or B
        W <- W (1 - lr wd) - lr scale orth(U)

    ``variant="mvr1"`` takes g_prev from the previous step (one closure evaluation per step, the
    closure optional). ``variant="mvr2"`` takes it at the old weights on the current batch: like
    LiMuon's exact mode, ``step(closure)`` then evaluates the closure twice (once on the first
    call) and the closure is required; :func:`limuon.hybrid` steps AdamW between the two.
    ``max_norm=float('inf')`` disables the clip. The variant is fixed at construction.
    """

    _name = "MuonMVR"
    _kind = "muon_mvr"
    _cpp_class = _C.MuonMVR
    _spec = dict(_MOMENTUM, gamma=_as_float, max_norm=_as_float, variant=_as_str)
    _fixed = ("variant",)

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, gamma=0.025, max_norm=1.0, variant="mvr1",
                 weight_decay=0.0, adjust_lr="original", orthogonalizer="ns5", rank=32, oversample=8, power_iters=0,
                 seed=0, nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(momentum=momentum, nesterov=nesterov, gamma=gamma, max_norm=max_norm, variant=variant)
        super().__init__(params, defaults)


class Sumo(_CppOptimizer):
    r"""SUMO: momentum kept in a rank-r subspace of the gradient and orthogonalized there.

    Per matrix G (the shorter side shown as rows)::

        every update_interval steps: Q = top-rank left singular vectors of G (randomized SVD);
                                     M <- Q_new^T Q_old M  (the moment rotated into the new basis)
        M <- momentum M + Q^T G
        W <- W (1 - lr wd) - lr alpha scale Q orth(M)

    State: Q and M, (rows + cols) * rank elements per matrix. ``orthogonalizer`` defaults to the
    exact SVD (M is small). ``rank`` (the state's shape) is fixed at construction.
    """

    _name = "Sumo"
    _kind = "sumo"
    _cpp_class = _C.Sumo
    _spec = dict(_SHARED, momentum=_as_float, update_interval=_as_int, alpha=_as_float)
    _fixed = ("rank",)

    def __init__(self, params, lr=0.02, momentum=0.95, rank=32, update_interval=200, alpha=1.0, weight_decay=0.0,
                 adjust_lr="original", orthogonalizer="svd", oversample=8, power_iters=0, seed=0, nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(momentum=momentum, update_interval=update_interval, alpha=alpha)
        super().__init__(params, defaults)


class MuonEq(_CppOptimizer):
    r"""MuonEq: Muon with the momentum equilibrated before orthogonalization.

    ``equilibrate``: ``rows`` (every row of U scaled to unit L2 norm; the default), ``cols``,
    ``both`` (D_r^-1/2 U D_c^-1/2) or ``none`` (Muon, bit for bit).
    """

    _name = "MuonEq"
    _kind = "muoneq"
    _cpp_class = _C.MuonEq
    _spec = dict(_MOMENTUM, equilibrate=_as_str)
    _fixed = ()

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, equilibrate="rows", weight_decay=0.0,
                 adjust_lr="original", orthogonalizer="ns5", rank=32, oversample=8, power_iters=0, seed=0,
                 nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(momentum=momentum, nesterov=nesterov, equilibrate=equilibrate)
        super().__init__(params, defaults)


class LionMuon(_CppOptimizer):
    r"""LionMuon: Lion's two-coefficient momentum, a Muon step every ``period`` steps and Lion's
    sign step in between::

        u = beta1 m + (1 - beta1) g
        step % period == 0:  W <- W (1 - lr wd) - lr scale orth(u)      (adjust_lr match_rms_adamw)
        otherwise:           W <- W (1 - lr' wd) - lr' sign(u),  lr' = lr * sign_lr_ratio
        m = beta2 m + (1 - beta2) g
    """

    _name = "LionMuon"
    _kind = "lionmuon"
    _cpp_class = _C.LionMuon
    _spec = dict(_SHARED, beta1=_as_float, beta2=_as_float, period=_as_int, sign_lr_ratio=_as_float)
    _fixed = ()

    def __init__(self, params, lr=0.02, beta1=0.9, beta2=0.99, period=2, sign_lr_ratio=0.1, weight_decay=0.0,
                 adjust_lr="match_rms_adamw", orthogonalizer="ns5", rank=32, oversample=8, power_iters=0, seed=0,
                 nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(beta1=beta1, beta2=beta2, period=period, sign_lr_ratio=sign_lr_ratio)
        super().__init__(params, defaults)


class MiMuon(_CppOptimizer):
    r"""MiMuon: Muon that falls back to the plain momentum step when the momentum's singular
    values crowd together. With U = P S Q^T the exact SVD of Muon's (Nesterov) momentum, and gap
    the smallest relative gap between consecutive distinct non-zero singular values::

        gap > tau:  W <- W (1 - lr wd) - lr scale P Q^T      (the Muon step)
        otherwise:  W <- W (1 - lr wd) - lr U                (the momentum step)

    The orthogonalizer must be ``svd``. ``tau=0`` is Muon with the exact SVD.
    """

    _name = "MiMuon"
    _kind = "mimuon"
    _cpp_class = _C.MiMuon
    _spec = dict(_MOMENTUM, tau=_as_float)
    _fixed = ()

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, tau=1e-3, weight_decay=0.0,
                 adjust_lr="original", orthogonalizer="svd", rank=32, oversample=8, power_iters=0, seed=0,
                 nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(momentum=momentum, nesterov=nesterov, tau=tau)
        super().__init__(params, defaults)


class Gluon(_CppOptimizer):
    r"""Gluon: Muon's direction with a per-layer step size from an (L0, L1) smoothness model::

        O = orth(U);  t = ||U||_* / (l0 + l1 ||U||_*)  with ||U||_* = <O, U>
        W <- W (1 - lr wd) - lr t scale O                    (adjust_lr none by default)

    ``l0=0, l1=1`` is Muon.
    """

    _name = "Gluon"
    _kind = "gluon"
    _cpp_class = _C.Gluon
    _spec = dict(_MOMENTUM, l0=_as_float, l1=_as_float)
    _fixed = ()

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, l0=1.0, l1=1.0, weight_decay=0.0,
                 adjust_lr="none", orthogonalizer="ns5", rank=32, oversample=8, power_iters=0, seed=0,
                 nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(momentum=momentum, nesterov=nesterov, l0=l0, l1=l1)
        super().__init__(params, defaults)
