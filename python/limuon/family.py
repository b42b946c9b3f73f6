"""The rest of the Muon family (ALGORITHMS.md section 4) as torch.optim.Optimizer subclasses on the
limuon C++ core: MuonMVR (Muon-MVR1/MVR2), Sumo, MuonEq, LionMuon, MiMuon, Gluon.

They share the plumbing of limuon.Muon (options read from ``param_groups`` before each step, so
torch's lr schedulers work; ``state_dict`` through the C++ archive; ``state_bytes``). Every
parameter must have at least two dimensions (N-D weights are viewed as [out, rest] matrices):
route the others to AdamW, e.g. with ``limuon.hybrid(model, method="muoneq")``. The README's
"The Muon family" table gives each method's update, defaults, state and source paper; the C++
headers (include/limuon/<method>.h) give the update line by line with its source. Option names and
defaults are those of the C++ options. MuonMVR, MuonEq, LionMuon and Gluon orthogonalize with
``gram_ns`` by default (Newton-Schulz's ns5 iteration on the Gram matrix, the same map as ``ns5`` up
to rounding and faster for matrices with aspect ratio >= 1.5); Sumo and MiMuon keep ``svd``.
"""

from . import _C
from .optim import _SHARED, _CppOptimizer, _TwoPointStages, _as_bool, _as_float, _as_int, _as_str

__all__ = ["MuonMVR", "Sumo", "MuonEq", "LionMuon", "MiMuon", "Gluon"]

_MOMENTUM = dict(_SHARED, momentum=_as_float, nesterov=_as_bool)


def _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed, nonfinite):
    return dict(lr=lr, weight_decay=weight_decay, adjust_lr=adjust_lr, orthogonalizer=orthogonalizer, rank=rank,
                oversample=oversample, power_iters=power_iters, seed=seed, nonfinite=nonfinite)


class MuonMVR(_TwoPointStages, _CppOptimizer):
    r"""Muon-MVR1 / MVR2 (Chang, Liu, Yuan, arXiv 2509.15816; the authors' code): Muon's momentum fed
    a damped STORM correction. With mu = momentum, k = gamma mu / (1 - mu) and
    cap(x) = x min(1, max_norm / ||x||_F)::

        c = cap(g + k (g - g_prev))
        B <- mu B + (1 - mu) c;   U = B  (nesterov: (1 - mu) c + mu B; not in the paper)
        W <- W (1 - lr wd) - lr scale orth(U)          (adjust_lr match_rms_adamw: 0.2 sqrt(max(m, n)))

    g and g_prev are not clipped per matrix (the authors clip the global gradient norm to 1 in their
    training loop); ``clip_inputs=True`` clips both to max_norm first (limuon's earlier form). The
    first step uses g_prev = 0, c = cap((1 + k) g), as the authors' code; ``zero_prev_init=False``
    gives c = cap(g). ``variant="mvr1"`` takes g_prev from the previous step (one closure
    evaluation per step, the closure optional). ``variant="mvr2"`` takes it at the old weights on
    the current batch: like LiMuon's exact mode, ``step(closure)`` then evaluates the closure twice
    (once on the first call) and the closure is required; :func:`limuon.hybrid` steps AdamW between
    the two. ``max_norm=float('inf')`` disables the cap. The variant is fixed at construction.
    """

    _name = "MuonMVR"
    _kind = "muon_mvr"
    _cpp_class = _C.MuonMVR
    _spec = dict(_MOMENTUM, gamma=_as_float, max_norm=_as_float, clip_inputs=_as_bool, zero_prev_init=_as_bool,
                 variant=_as_str)
    _fixed = ("variant",)

    def __init__(self, params, lr=1e-3, momentum=0.95, nesterov=False, gamma=0.025, max_norm=1.0, clip_inputs=False,
                 zero_prev_init=True, variant="mvr1", weight_decay=0.0, adjust_lr="match_rms_adamw",
                 orthogonalizer="gram_ns", rank=32, oversample=8, power_iters=0, seed=0, nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(momentum=momentum, nesterov=nesterov, gamma=gamma, max_norm=max_norm, clip_inputs=clip_inputs,
                        zero_prev_init=zero_prev_init, variant=variant)
        super().__init__(params, defaults)


class Sumo(_CppOptimizer):
    r"""SUMO (Refael et al., arXiv 2505.24749, Algorithm 1): the moment kept in a rank-r subspace of
    the gradient and orthogonalized there; the update is full-rank.

    Per matrix G (the shorter side shown as rows)::

        every update_interval steps: Q = top-rank left singular vectors of G (randomized SVD);
                                     M <- Q_new^T Q_old M  (the moment rotated into the new basis)
        G_hat = Q^T G;  M <- momentum M + G_hat;  O = orth(M)        (exact SVD by default)
        growth_limit > 0: if ||O|| > growth_limit ||O_prev||, O <- O growth_limit ||O_prev|| / ||O||
        W <- W (1 - lr wd) - lr (G_perp + alpha scale Q O),  G_perp = G - Q Q^T G

    Block 4 of the paper is W - lr (G - Q (G_hat - O)) = W - lr (G_perp + Q O); alpha (the paper's
    projection back scale) and the Moonlight scale (adjust_lr match_rms_adamw) multiply the
    orthogonal part only. ``outer=False`` drops G_perp (the rank-r variant). ``growth_limit`` is the
    paper's optional Block 3 (1.1 there; 0 = off). State: Q and M, (rows + cols) * rank elements per
    matrix. ``rank`` (the state's shape) is fixed at construction.
    """

    _name = "Sumo"
    _kind = "sumo"
    _cpp_class = _C.Sumo
    _spec = dict(_SHARED, momentum=_as_float, update_interval=_as_int, alpha=_as_float, outer=_as_bool,
                 growth_limit=_as_float)
    _fixed = ("rank",)

    def __init__(self, params, lr=1e-3, momentum=0.95, rank=32, update_interval=200, alpha=1.0, outer=True,
                 growth_limit=0.0, weight_decay=0.0, adjust_lr="match_rms_adamw", orthogonalizer="svd", oversample=8,
                 power_iters=0, seed=0, nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(momentum=momentum, update_interval=update_interval, alpha=alpha, outer=outer,
                        growth_limit=growth_limit)
        super().__init__(params, defaults)


class MuonEq(_CppOptimizer):
    r"""MuonEq (arXiv 2603.28254; the authors' code): Muon with the momentum U equilibrated before
    orthogonalization::

        r_i = (sum_j U_ij^2 + eps)^exponent,  c_j = (sum_i U_ij^2 + eps)^exponent   (both from U)
        E(U) = U r (rows, the default R), U c (cols), U r c (both, RC) or U (none: Muon, bit for bit)
        W <- W (1 - lr wd) - lr scale orth(E(U))       (adjust_lr match_rms_adamw: 0.2 sqrt(max(m, n)))

    ``exponent`` -0.5 (the authors' default: unit rows; both divides by ||row|| ||col||), -0.25 the
    alternative they name. ``eps`` 1e-12 is our choice (theirs is unknown). ``phase`` > 0: ``both``
    acts as ``rows`` from step ``phase`` on (0 = never). Their LLM runs used weight_decay 0.1.
    """

    _name = "MuonEq"
    _kind = "muoneq"
    _cpp_class = _C.MuonEq
    _spec = dict(_MOMENTUM, equilibrate=_as_str, exponent=_as_float, eps=_as_float, phase=_as_int)
    _fixed = ()

    def __init__(self, params, lr=1e-3, momentum=0.95, nesterov=True, equilibrate="rows", exponent=-0.5, eps=1e-12,
                 phase=0, weight_decay=0.0, adjust_lr="match_rms_adamw", orthogonalizer="gram_ns", rank=32,
                 oversample=8, power_iters=0, seed=0, nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(momentum=momentum, nesterov=nesterov, equilibrate=equilibrate, exponent=exponent, eps=eps,
                        phase=phase)
        super().__init__(params, defaults)


class LionMuon(_CppOptimizer):
    r"""LionMuon (arXiv 2605.19811; the official code): Lion's two-coefficient momentum, a Muon step
    every ``period`` steps and Lion's sign step in between::

        u = beta1 m + (1 - beta1) g
        step % period == 0:  W <- W (1 - lr wd) - lr scale orth(u)      (adjust_lr match_rms_adamw)
        otherwise:           W <- W (1 - lr' wd) - lr' sign(u),  lr' = lr * sign_lr_ratio
        m = beta2 m + (1 - beta2) g

    ``sign_lr_ratio`` 0.05 is the paper's tuned ratio at 124M and 355M (about 0.003 at 720M).
    """

    _name = "LionMuon"
    _kind = "lionmuon"
    _cpp_class = _C.LionMuon
    _spec = dict(_SHARED, beta1=_as_float, beta2=_as_float, period=_as_int, sign_lr_ratio=_as_float)
    _fixed = ()

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.99, period=2, sign_lr_ratio=0.05, weight_decay=0.0,
                 adjust_lr="match_rms_adamw", orthogonalizer="gram_ns", rank=32, oversample=8, power_iters=0, seed=0,
                 nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(beta1=beta1, beta2=beta2, period=period, sign_lr_ratio=sign_lr_ratio)
        super().__init__(params, defaults)


class MiMuon(_CppOptimizer):
    r"""MiMuon (Huang, Luo, Chen, arXiv 2605.19619, as a secondary source transcribes it): Muon that
    falls back to the plain momentum step when the momentum's singular values crowd together. With
    M = momentum EMA (``nesterov`` off by default) and M = P S Q^T its exact SVD, and gap the
    minimum over all pairs of non-zero singular values of |s_i - s_j| (absolute; ties give 0)::

        gap >= tau:  W <- W (1 - lr wd) - lr scale P Q^T      (the Muon step; adjust_lr none)
        otherwise:   W <- W (1 - lr wd) - lr M                (the momentum step)

    ``tau`` is not published and is in the gradient's units: tune it (``branch_counts()`` says how
    often each step was taken). The orthogonalizer must be ``svd``. ``tau=0`` is Muon with the
    exact SVD.
    """

    _name = "MiMuon"
    _kind = "mimuon"
    _cpp_class = _C.MiMuon
    _spec = dict(_MOMENTUM, tau=_as_float)
    _fixed = ()

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=False, tau=1e-6, weight_decay=0.0,
                 adjust_lr="none", orthogonalizer="svd", rank=32, oversample=8, power_iters=0, seed=0,
                 nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(momentum=momentum, nesterov=nesterov, tau=tau)
        super().__init__(params, defaults)

    def branch_counts(self):
        """(Muon steps, momentum steps) taken so far, counted per matrix update."""
        return self._cpp.branch_counts()


class Gluon(_CppOptimizer):
    r"""Gluon (Riabinin, Shulgin, Gruntkowska, Richtarik, arXiv 2505.13416): layer-wise LMO steps
    under (L0, L1) smoothness, in the paper's two forms.

    ``mode="stochastic"`` (Algorithm 1, the default), k = 0, 1, ... the step count::

        beta_k = 1 - (k + 1)^(-1/2)   (beta_schedule; M_0 = G_0)   or the constant ``momentum``
        M <- beta_k M + (1 - beta_k) G
        W <- W (1 - lr wd) - lr (k + 1)^(-3/4) scale orth(M)      (step_decay=False drops the decay)

    ``mode="deterministic"`` (Algorithm 2), on the current gradient with its exact nuclear norm::

        t = s ||G||_* / (l0 + l1 s ||G||_*);   W <- W (1 - lr wd) - lr t s orth(G)   (lr = 1: the paper)

    s is the adjust_lr scale (spectral, sqrt(m/n): unScion's norms). Defaults from the paper's
    NanoGPT-124M measurements: l0 = 0, l1 = 70, lr = 1/l1 ~ 0.014. CE-Gluon is not implemented.
    """

    _name = "Gluon"
    _kind = "gluon"
    _cpp_class = _C.Gluon
    _spec = dict(_MOMENTUM, mode=_as_str, beta_schedule=_as_bool, step_decay=_as_bool, l0=_as_float, l1=_as_float)
    _fixed = ()

    def __init__(self, params, lr=0.014, mode="stochastic", beta_schedule=True, momentum=0.95, nesterov=False,
                 step_decay=True, l0=0.0, l1=70.0, weight_decay=0.0, adjust_lr="spectral", orthogonalizer="gram_ns",
                 rank=32, oversample=8, power_iters=0, seed=0, nonfinite="skip"):
        defaults = _shared_defaults(lr, weight_decay, adjust_lr, orthogonalizer, rank, oversample, power_iters, seed,
                                    nonfinite)
        defaults.update(mode=mode, beta_schedule=beta_schedule, momentum=momentum, nesterov=nesterov,
                        step_decay=step_decay, l0=l0, l1=l1)
        super().__init__(params, defaults)
