"""Muon and LiMuon as torch.optim.Optimizer subclasses backed by the C++ core (limuon._C).

The C++ optimizer is built on the very tensors held in ``param_groups`` (an at::Tensor made from
a Python tensor shares its storage and autograd metadata), so it reads the Python ``.grad`` and
updates the parameters in place. ``param_groups`` stays the user-facing source of truth for the
options that may change during training (learning rate, weight decay, momentum/beta, ...): they
are copied into the C++ options before every step, which is what makes torch.optim.lr_scheduler
work unchanged.
"""
import numbers
import operator

import torch

from . import _C

__all__ = ["Muon", "LiMuon"]

# One archive format tag for the Python state dict, independent of the C++ archive's own version.
_STATE_FORMAT = 1


def _as_float(who, name, v):
    if isinstance(v, (bool, str)) or not isinstance(v, (numbers.Real, torch.Tensor)):
        raise ValueError(f"{who}: option {name} must be a real number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{who}: option {name} must be a real number, got {v!r}") from e


def _as_int(who, name, v):
    if isinstance(v, bool):
        raise ValueError(f"{who}: option {name} must be an integer, got {v!r}")
    try:
        return operator.index(v)
    except TypeError as e:
        raise ValueError(f"{who}: option {name} must be an integer, got {v!r}") from e


def _as_bool(who, name, v):
    if isinstance(v, bool):
        return v
    if isinstance(v, numbers.Integral) and int(v) in (0, 1):
        return bool(v)
    raise ValueError(f"{who}: option {name} must be True or False, got {v!r}")


def _as_str(who, name, v):
    if not isinstance(v, str):
        raise ValueError(f"{who}: option {name} must be a string, got {v!r}")
    return v


def _as_coefficients(who, name, v):
    if isinstance(v, (str, bytes, torch.Tensor)) or not hasattr(v, "__len__") or len(v) != 3:
        raise ValueError(f"{who}: option {name} must be three numbers (a, b, c), got {v!r}")
    return tuple(_as_float(who, name, x) for x in v)


_SHARED = {"lr": _as_float, "weight_decay": _as_float, "adjust_lr": _as_str, "orthogonalizer": _as_str,
           "rank": _as_int, "oversample": _as_int, "power_iters": _as_int, "seed": _as_int, "nonfinite": _as_str}


class _CppOptimizer(torch.optim.Optimizer):
    """Common plumbing: option normalisation, lr sync, state_dict via the C++ archive."""

    _name = ""          # used in error messages
    _kind = ""          # the C++ archive's optimizer kind
    _cpp_class = None
    _spec = {}          # option name -> converter
    _fixed = ()         # options that cannot change once the optimizer holds state

    def __init__(self, params, defaults):
        self._cpp = None
        super().__init__(params, defaults)
        groups = [(list(g["params"]), self._options_of(g)) for g in self.param_groups]
        self._cpp = self._cpp_class(groups)  # validates options and shapes: ValueError naming them
        self._remember_synced()

    # ------------------------------------------------------------ options
    def _options_of(self, group):
        return {k: conv(self._name, k, group[k]) for k, conv in self._spec.items()}

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            if len(set(group["params"])) != len(group["params"]):
                raise ValueError(f"{self._name}: a parameter group lists the same tensor twice")
            opts = self._options_of(group)
            group.update(opts)
            if self._cpp is not None:
                self._cpp.add_param_group(list(group["params"]), opts)
                self._synced.append(opts)
        except BaseException:
            self.param_groups.pop()
            raise

    def _remember_synced(self):
        self._synced = [self._options_of(g) for g in self.param_groups]

    def _sync(self):
        """Copies options changed in param_groups (by a scheduler or by hand) into C++."""
        for i, g in enumerate(self.param_groups):
            opts = self._options_of(g)
            last = self._synced[i]
            if opts == last:
                continue
            for k in self._fixed:
                if opts[k] != last[k]:
                    raise ValueError(f"{self._name}: option {k} cannot change after construction "
                                     f"(group {i}: {last[k]!r} -> {opts[k]!r})")
            self._cpp.set_options(i, {k: v for k, v in opts.items() if v != last[k]})
            self._synced[i] = opts

    # ------------------------------------------------------------ stepping
    def _run(self, stage, closure):
        if closure is None:
            stage(None)
            return None
        last = None

        def call():
            nonlocal last
            with torch.enable_grad():
                last = closure()
            return last

        stage(call)
        return last

    @torch.no_grad()
    def step(self, closure=None):
        self._sync()
        return self._run(self._cpp.step, closure)

    # ------------------------------------------------------------ state
    def state_dict(self):
        """``param_groups`` (as in torch) plus the C++ optimizer state as an archive (bytes)."""
        self._sync()
        groups, index = [], 0
        for g in self.param_groups:
            d = {k: v for k, v in g.items() if k != "params"}
            d["params"] = list(range(index, index + len(g["params"])))
            index += len(g["params"])
            groups.append(d)
        return {"state": {}, "param_groups": groups,
                "limuon": {"format": _STATE_FORMAT, "optimizer": self._kind, "archive": self._cpp.save()}}

    def load_state_dict(self, state_dict):
        meta = state_dict.get("limuon") if isinstance(state_dict, dict) else None
        if not isinstance(meta, dict) or "archive" not in meta:
            raise ValueError(f"{self._name}.load_state_dict: not a limuon state dict (no 'limuon' entry)")
        if meta.get("format") != _STATE_FORMAT:
            raise ValueError(f"{self._name}.load_state_dict: unsupported format {meta.get('format')!r}")
        if meta.get("optimizer") != self._kind:
            raise ValueError(f"{self._name}.load_state_dict: state of optimizer {meta.get('optimizer')!r}, "
                             f"cannot load it into {self._kind!r}")
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for s, g in zip(saved, self.param_groups):
            if len(s["params"]) != len(g["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match "
                                 "the size of optimizer's group")
        # The C++ side checks every shape and leaves the optimizer untouched on failure.
        self._cpp.load(bytes(meta["archive"]))
        for i, (s, g) in enumerate(zip(saved, self.param_groups)):
            params = g["params"]
            g.clear()
            g.update({k: v for k, v in s.items() if k != "params"})
            g.update(self._cpp.options(i))  # what the C++ optimizer now runs with
            g["params"] = params
        self._remember_synced()

    def __getstate__(self):
        raise TypeError(f"{self._name} holds a C++ optimizer and cannot be pickled or deep-copied; "
                        "save state_dict() instead")

    # ------------------------------------------------------------ diagnostics
    def state_bytes(self):
        """Bytes of persistent optimizer state held by the C++ optimizer."""
        return self._cpp.state_bytes()

    def nonfinite_skips(self):
        """Parameter-group steps skipped because a gradient held NaN/Inf (nonfinite='skip')."""
        return self._cpp.nonfinite_skips()


class _TwoPointStages:
    """The stage methods of an optimizer whose step may evaluate the closure twice, at the old and
    the new weights (LiMuon storm="exact", Muon-MVR2); a hybrid optimizer calls them to step AdamW
    between the two evaluations, as limuon.hybrid does."""

    def evaluates_twice(self):
        """True when step(closure) evaluates the closure at the old and the new weights."""
        return self._cpp.evaluates_twice()

    def needs_old_point_gradient(self):
        """True when this call needs a gradient at the current weights first (two-evaluation
        mode, after the first call)."""
        return self._cpp.needs_old_point_gradient()

    @torch.no_grad()
    def after_old_point_gradient(self):
        """Consumes the gradients at W_t (now in ``.grad``) and moves the weights to W_{t+1}."""
        self._sync()
        self._cpp.after_old_point_gradient()

    @torch.no_grad()
    def after_new_point_gradient(self):
        """Consumes the gradients at the new weights and forms the new estimate (one-evaluation
        modes: the whole step)."""
        self._sync()
        self._cpp.after_new_point_gradient()

    def evaluations(self):
        """Closure evaluations made by step() so far."""
        return self._cpp.evaluations()

    def abandon_call(self):
        """Forgets what a call interrupted between its two evaluations kept (nothing, unless the
        subclass says otherwise); step() does this itself."""


# torch.optim.Muon's adjust_lr_fn values and the adjust_lr each one means (the same formulas:
# PyTorch's "spectral_unclamped" is our "spectral").
_ADJUST_LR_FN = {None: "original", "original": "original", "match_rms_adamw": "match_rms_adamw",
                 "spectral_unclamped": "spectral"}
class _Unset:
    """The default of an argument that has another name too: tells "not passed" from any value."""

    def __repr__(self):
        return "<unset>"


_UNSET = _Unset()


def _adjust_lr_from_torch(who, adjust_lr, adjust_lr_fn):
    """The adjust_lr meant by one of our name (adjust_lr) or torch's (adjust_lr_fn); both is an error."""
    if adjust_lr_fn is _UNSET:
        return "original" if adjust_lr is _UNSET else adjust_lr
    if adjust_lr is not _UNSET:
        raise ValueError(f"{who}: pass adjust_lr or torch.optim.Muon's name for it, adjust_lr_fn, not both")
    if not (adjust_lr_fn is None or isinstance(adjust_lr_fn, str)) or adjust_lr_fn not in _ADJUST_LR_FN:
        raise ValueError(f"{who}: option adjust_lr_fn must be None, 'original', 'match_rms_adamw' or "
                         f"'spectral_unclamped', got {adjust_lr_fn!r}")
    return _ADJUST_LR_FN[adjust_lr_fn]


class Muon(_CppOptimizer):
    r"""Muon (Keller Jordan 2024) on the limuon C++ core.

    For each weight (N-D weights viewed as [out, rest] matrices)::

        B <- momentum * B + (1 - momentum) * G
        U = (1 - momentum) * G + momentum * B   (nesterov)   or   U = B
        W <- W * (1 - lr * weight_decay) - lr * scale(rows, cols) * orth(U)

    Every parameter must have at least two dimensions: route biases, norms and embeddings to
    AdamW (see :func:`limuon.hybrid`). ``step(closure)`` evaluates the closure once, like
    torch's optimizers; without a closure the gradients already in ``.grad`` are used.

    Options: lr, momentum in [0, 1), nesterov, weight_decay (decoupled), adjust_lr
    (original | match_rms_adamw | spectral | none; default original), orthogonalizer (gram_ns |
    ns5 | polar_express | svd | rsvd; default gram_ns, the ns5 iteration carried out on the Gram
    matrix: the same map as ns5 up to rounding, faster from aspect ratio 1.5 on and ns5 bit for bit
    below it), rank / oversample / power_iters / seed (rsvd), nonfinite (skip | raise), and for
    ns5 and gram_ns ns_coefficients (a, b, c), ns_steps in [1, 100] and eps > 0 (the
    normalisation is U / (||U||_F + eps)). All but the parameters themselves are read from
    ``param_groups`` before each step.

    torch.optim.Muon's keyword names are accepted too: ``ns_coefficients``, ``ns_steps`` and
    ``eps`` are ours as well, and ``adjust_lr_fn`` (None | "original" | "match_rms_adamw" |
    "spectral_unclamped") sets adjust_lr (original, original, match_rms_adamw, spectral);
    passing both adjust_lr and adjust_lr_fn is an error. The recursion is torch's; what differs is
    that torch runs Newton-Schulz in bfloat16 and divides by max(||U||_F, eps), the defaults
    (torch: lr=1e-3, weight_decay=0.1) and the positional order, so pass these by keyword.
    """

    _name = "Muon"
    _kind = "muon"
    _cpp_class = _C.Muon
    _spec = dict(_SHARED, momentum=_as_float, nesterov=_as_bool, ns_coefficients=_as_coefficients,
                 ns_steps=_as_int, eps=_as_float)
    _fixed = ()

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0, adjust_lr=_UNSET,
                 orthogonalizer="gram_ns", rank=32, oversample=8, power_iters=0, seed=0, nonfinite="skip", *,
                 ns_coefficients=(3.4445, -4.7750, 2.0315), ns_steps=5, eps=1e-7, adjust_lr_fn=_UNSET):
        adjust_lr = _adjust_lr_from_torch(self._name, adjust_lr, adjust_lr_fn)
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, adjust_lr=adjust_lr,
                        orthogonalizer=orthogonalizer, rank=rank, oversample=oversample, power_iters=power_iters,
                        seed=seed, nonfinite=nonfinite, ns_coefficients=ns_coefficients, ns_steps=ns_steps, eps=eps)
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        """As torch's, also taking torch.optim.Muon's ``adjust_lr_fn`` in place of ``adjust_lr``."""
        if isinstance(param_group, dict) and "adjust_lr_fn" in param_group:
            param_group = dict(param_group)
            param_group["adjust_lr"] = _adjust_lr_from_torch(self._name, param_group.pop("adjust_lr", _UNSET),
                                                             param_group.pop("adjust_lr_fn"))
        super().add_param_group(param_group)


class LiMuon(_TwoPointStages, _CppOptimizer):
    r"""LiMuon (Huang, Luo, Chen 2025): orthogonalized STORM momentum on the limuon C++ core.

    **Two gradient evaluations per step.** With ``storm="exact"`` (the default) each
    ``step(closure)`` evaluates the closure TWICE on the same minibatch: once at the current
    weights W_t (the "old point"), then - after the weights moved - at W_{t+1} (the "new point").
    The closure must therefore zero the gradients, run forward and backward on a fixed batch, and
    return the loss; ``step`` returns the loss of the second (new-point) evaluation::

        def closure():
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss

        loss = opt.step(closure)

    The update is (beta in (0, 1]; (1 - beta) multiplies the old estimate)::

        M_{t+1} = g(W_{t+1}) + (1 - beta) * (M_t - g(W_t))      # both on the same batch
        W_{t+1} = W_t * (1 - lr * weight_decay) - lr * scale * orth(M_t)

    The very first call evaluates the closure once, only sets M_0 and does not move the
    weights. Calling ``step()`` without a closure in exact mode raises ValueError. With
    ``storm="approx"`` (Muon-MVR1 style, damped by ``gamma``) one evaluation per call is made and
    the closure is optional.

    ``lowrank_state``: ``none`` keeps M dense; ``paper`` keeps the randomized-SVD factors of M
    (rank, oversample, power_iters, seed) plus the dense direction; ``light`` keeps only the
    factors and steps along U V^T.

    For hybrid setups (AdamW on the non-matrix parameters, stepped between the two evaluations)
    use :func:`limuon.hybrid`, or the stage methods :meth:`needs_old_point_gradient`,
    :meth:`after_old_point_gradient` and :meth:`after_new_point_gradient`.

    **Presets.** ``preset="practical"`` (the default) gives the defaults in the signature
    (beta=0.1, weight_decay=0, adjust_lr="original", orthogonalizer="gram_ns", rank=32, oversample=8,
    power_iters=0, lowrank_state="none", storm="exact", gamma=0.025, seed=0, nonfinite="skip").
    ``preset="paper"`` is the algorithm as the paper analyses it (arXiv 2509.14562): exact SVD
    polar factor (orthogonalizer="svd"), no shape scale (adjust_lr="none"), no weight decay, two
    gradients per step (storm="exact"); lr and beta stay constant (the optimizer never schedules
    them; the theory's schedule is a scheduler's job). Keywords passed explicitly override the
    preset: ``LiMuon(params, lr=0.01, preset="paper", lowrank_state="paper")`` is Option #2.
    The values come from the C++ ``LiMuonOptions::preset`` (``limuon._C.limuon_preset``).

    **accumulate_second_gradient** (default False; lowrank_state "paper"/"light" with storm
    "exact", no effect otherwise) saves the dense copy of the old-point gradient those modes keep
    through the second evaluation (one rows x cols tensor per matrix, at the activation peak):
    ``.grad`` is scaled in place to ``-(1 - beta) * g_old`` and the second backward accumulates
    into it. The closure must then clear gradients only through this optimizer's
    :meth:`zero_grad` (or :meth:`limuon.HybridOptimizer.zero_grad`), which leaves the seeded
    gradients alone between the two evaluations; ``model.zero_grad()`` would drop the term
    (LiMuon raises RuntimeError when its zero_grad was not called before the second evaluation or
    a seeded gradient was set to None or reallocated). Anything applied to ``.grad`` in the
    closure must be linear (micro-batch sums, a data-parallel mean): gradient clipping is not.
    After such a step ``.grad`` of those matrices holds scratch, not the gradient.

    Options lowrank_state, storm, rank, oversample, power_iters and accumulate_second_gradient
    are fixed at construction; the others (lr, beta, gamma, weight_decay, ...) are read from
    ``param_groups`` before each step.
    """

    _name = "LiMuon"
    _kind = "limuon"
    _cpp_class = _C.LiMuon
    _spec = dict(_SHARED, beta=_as_float, gamma=_as_float, lowrank_state=_as_str, storm=_as_str,
                 accumulate_second_gradient=_as_bool)
    _fixed = ("lowrank_state", "storm", "rank", "oversample", "power_iters", "accumulate_second_gradient")

    def __init__(self, params, lr=0.02, beta=_UNSET, weight_decay=_UNSET, adjust_lr=_UNSET, orthogonalizer=_UNSET,
                 rank=_UNSET, oversample=_UNSET, power_iters=_UNSET, lowrank_state=_UNSET, storm=_UNSET,
                 gamma=_UNSET, seed=_UNSET, nonfinite=_UNSET, *, preset="practical",
                 accumulate_second_gradient=_UNSET):
        if not isinstance(preset, str) or preset not in _C.limuon_preset_names:
            raise ValueError(f"LiMuon: unknown preset {preset!r} (valid: {', '.join(_C.limuon_preset_names)})")
        base = _C.limuon_preset(preset)
        given = dict(beta=beta, weight_decay=weight_decay, adjust_lr=adjust_lr, orthogonalizer=orthogonalizer,
                     rank=rank, oversample=oversample, power_iters=power_iters, lowrank_state=lowrank_state,
                     storm=storm, gamma=gamma, seed=seed, nonfinite=nonfinite,
                     accumulate_second_gradient=accumulate_second_gradient)
        defaults = dict(lr=lr, **{k: base[k] if v is _UNSET else v for k, v in given.items()})
        super().__init__(params, defaults)

    def zero_grad(self, set_to_none=True):
        """As torch's; with accumulate_second_gradient, between the two evaluations of a step the
        gradients seeded with -(1 - beta) * g_old are kept (see the class docstring)."""
        if any(g["accumulate_second_gradient"] for g in self.param_groups):
            self._cpp.zero_grad(set_to_none)
        else:
            super().zero_grad(set_to_none=set_to_none)

    def abandon_call(self):
        """Forgets a step interrupted between its two evaluations (step() does this itself)."""
        self._cpp.abandon_call()

    @torch.no_grad()
    def step(self, closure=None):
        """One LiMuon step; see the class docstring (exact mode evaluates ``closure`` twice)."""
        return super().step(closure)
