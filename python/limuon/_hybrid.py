"""Hybrid optimizer for nn.Module models: hidden weight matrices go to Muon, LiMuon or another
member of the family, everything else (embeddings, output heads, biases, norm gains, class/position
tokens) to torch.optim.AdamW.

Routing uses the C++ rules (limuon._C.route_parameters), so a Python model and the C++ CLI place
the same parameter names the same way. With LiMuon in exact mode (and Muon-MVR2) the closure runs
twice per call and AdamW steps once, on the first (old-point) gradient, between the two
evaluations: that keeps the second evaluation of one call and the first of the next on the same
weights.
"""
import copy

import torch
import torch.nn as nn

from . import _C
from .family import Gluon, LionMuon, MiMuon, MuonEq, MuonMVR, Sumo
from .optim import LiMuon, Muon, _TwoPointStages

__all__ = ["hybrid", "route", "HybridOptimizer"]

_EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)


def _capture_generators():
    """The state of torch's default generators: the CPU one and, when CUDA is initialised, each
    device's. A generator the closure owns itself (torch.Generator, random, numpy) is not covered."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.random.get_rng_state(), cuda


def _restore_generators(states):
    cpu, cuda = states
    torch.random.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)

# method name (as in `limuon train --optimizer`) -> (class, options the method name fixes)
_METHODS = {"limuon": (LiMuon, {}), "muon": (Muon, {}), "muon_mvr1": (MuonMVR, {"variant": "mvr1"}),
            "muon_mvr2": (MuonMVR, {"variant": "mvr2"}), "sumo": (Sumo, {}), "muoneq": (MuonEq, {}),
            "lionmuon": (LionMuon, {}), "mimuon": (MiMuon, {}), "gluon": (Gluon, {})}


def _named_parameters(model):
    """(name, tensor, is_embedding) for every trainable parameter, tied aliases included: the C++
    router needs every name of a tied tensor to send it to AdamW when any alias is a head."""
    out = []
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        is_emb = isinstance(mod, _EMBEDDING_TYPES)
        for p_name, p in mod._parameters.items():
            if p is None or not p.requires_grad:
                continue
            name = f"{mod_name}.{p_name}" if mod_name else p_name
            out.append((name, p, is_emb))
    # A tensor that is an embedding weight anywhere is an embedding everywhere.
    emb = {id(p) for _, p, e in out if e}
    return [(n, p, e or id(p) in emb) for n, p, e in out]


def route(model, force_adamw=(), force_matrix=()):
    """Routes a module's trainable parameters (or an iterable of (name, tensor) pairs, with no
    embedding-by-type detection). Returns (list of (name, param, 'matrix'|'adamw', reason),
    printable table). force_adamw / force_matrix are fnmatch patterns on names."""
    if isinstance(model, nn.Module):
        named = _named_parameters(model)
    else:
        named = [(str(n), p, False) for n, p in model if p.requires_grad]
    if not named:
        raise ValueError("hybrid: the model has no trainable parameters")
    by_name = {n: p for n, p, _ in named}
    routed, table = _C.route_parameters(named, list(force_adamw), list(force_matrix))
    return [(n, by_name[n], r, why) for n, r, why in routed], table


class HybridOptimizer:
    """One object a training loop can ``step(closure)`` and ``zero_grad()``.

    ``matrix`` is the matrix optimizer (limuon.LiMuon, limuon.Muon, limuon.MuonEq, ...; None when
    no parameter is a hidden matrix or method='adamw'); ``adamw`` the torch.optim.AdamW instance
    (None when nothing is routed there). Attach learning-rate schedulers to either of them directly.

    Per call: LiMuon exact and Muon-MVR2 - closure at W_t, the matrices move, AdamW steps, closure
    at W_{t+1}, the new estimate is formed (the first call: one evaluation, nobody moves). Every
    other method - one evaluation, then every optimizer steps.
    """

    def __init__(self, routing, method="limuon", matrix_kwargs=None, adamw_kwargs=None):
        if method != "adamw" and method not in _METHODS:
            raise ValueError(f"hybrid: method must be one of {', '.join(list(_METHODS) + ['adamw'])}, got {method!r}")
        self.method = method
        self.routing = routing
        matrices = [p for _, p, r, _ in routing if r == "matrix" and method != "adamw"]
        rest = [p for _, p, r, _ in routing if not (r == "matrix" and method != "adamw")]
        matrix_kwargs = dict(matrix_kwargs or {})
        adamw_kwargs = dict({"lr": 3e-4, "weight_decay": 0.0}, **(adamw_kwargs or {}))
        self.matrix = None
        if matrices:
            cls, fixed = _METHODS[method]
            for k, v in fixed.items():
                if matrix_kwargs.setdefault(k, v) != v:
                    raise ValueError(f"hybrid: method {method!r} means {k}={v!r}, but matrix_kwargs has "
                                     f"{k}={matrix_kwargs[k]!r}")
            self.matrix = cls(matrices, **matrix_kwargs)
        elif matrix_kwargs and method != "adamw":
            raise ValueError("hybrid: matrix_kwargs given but no parameter was routed to the matrix optimizer")
        self.adamw = torch.optim.AdamW(rest, **adamw_kwargs) if rest else None
        self._raise_on_nonfinite = (self.matrix is not None and
                                    self.matrix.param_groups[0]["nonfinite"] == "raise")
        self.evaluations = 0
        self.adamw_steps = 0
        self.adamw_skips = 0
        self._stepped = []

    @property
    def optimizers(self):
        return [o for o in (self.matrix, self.adamw) if o is not None]

    def zero_grad(self, set_to_none=True):
        """Drops every routed gradient (set_to_none=True, torch 2.x's default, said here explicitly)
        or zeroes it (False: AdamW then still decays parameters that got no gradient). With LiMuon's
        accumulate_second_gradient the closure must clear gradients through this method (not
        ``model.zero_grad()``): between the two evaluations it keeps LiMuon's seeded gradients."""
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def _evaluate(self, closure):
        self.evaluations += 1
        with torch.enable_grad():
            return closure()

    def _adamw_step(self):
        if self.adamw is None:
            return
        grads = [p.grad for g in self.adamw.param_groups for p in g["params"] if p.grad is not None]
        # Same non-finite policy as the matrix optimizer: torch's AdamW would write NaN into its moments.
        if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            if self._raise_on_nonfinite:
                raise RuntimeError("AdamW group: non-finite gradient (nonfinite=raise)")
            self.adamw_skips += 1
            return
        self.adamw.step()
        self.adamw_steps += 1
        self._stepped.append(self.adamw)

    def _count_call(self, stepped):
        # A hybrid call counts as one step of each underlying optimizer, also when LiMuon is
        # driven through its stage methods or AdamW sits out LiMuon's first call: learning-rate
        # schedulers attached to them track optimizer steps (torch 1.x: _step_count, 2.x:
        # _opt_called) and would otherwise warn that they stepped first.
        for o in self.optimizers:
            if o in stepped:
                continue
            if hasattr(o, "_step_count"):
                o._step_count += 1
            o._opt_called = True

    def step(self, closure):
        """One training step; ``closure`` zeroes the gradients, runs forward and backward on one
        fixed batch and returns the loss. Returns the loss of the last evaluation."""
        self._stepped = []
        loss = self._step(closure)
        self._count_call(self._stepped)
        return loss

    def _step(self, closure):
        if closure is None:
            raise ValueError("HybridOptimizer.step: a closure is required (zero grads, forward, backward, "
                             "return loss)")
        two = self.matrix if isinstance(self.matrix, _TwoPointStages) and self.matrix.evaluates_twice() else None
        if two is None:
            # One evaluation per call (Muon, LiMuon approx, Muon-MVR1, ...): every optimizer steps on it.
            loss = self._evaluate(closure)
            if self.matrix is not None:
                self.matrix.step()  # on the gradients the closure left in .grad
                self._stepped.append(self.matrix)
            self._adamw_step()
            return loss
        if two.needs_old_point_gradient():
            # STORM needs both gradients on the same sample: the second evaluation draws the same
            # dropout masks (and any other draw from torch's default generators) as the first.
            rng = _capture_generators()
            try:
                self._evaluate(closure)
                two.after_old_point_gradient()
                self._adamw_step()
                _restore_generators(rng)
                loss = self._evaluate(closure)
                two.after_new_point_gradient()
            except BaseException:
                two.abandon_call()  # e.g. LiMuon's seeded gradients must not survive into the next call
                raise
        else:
            loss = self._evaluate(closure)  # first call: the estimate only, nothing moves
            two.after_new_point_gradient()
        return loss

    def state_dict(self):
        return {"method": self.method, "evaluations": self.evaluations, "adamw_steps": self.adamw_steps,
                "adamw_skips": self.adamw_skips,
                "matrix": self.matrix.state_dict() if self.matrix is not None else None,
                "adamw": self.adamw.state_dict() if self.adamw is not None else None}

    def load_state_dict(self, state_dict):
        if state_dict.get("method") != self.method:
            raise ValueError(f"hybrid: state saved with method {state_dict.get('method')!r}, "
                             f"this optimizer uses {self.method!r}")
        for key, opt in (("matrix", self.matrix), ("adamw", self.adamw)):
            if (state_dict.get(key) is None) != (opt is None):
                raise ValueError(f"hybrid: the saved {key} optimizer does not match this routing")
        if self.matrix is not None:
            self.matrix.load_state_dict(state_dict["matrix"])
        if self.adamw is not None:
            # A copy: torch 2.x's Optimizer.load_state_dict no longer deep-copies (1.x did), so the
            # loaded AdamW would share its moment and step tensors with the source and both would
            # update them in place.
            self.adamw.load_state_dict(copy.deepcopy(state_dict["adamw"]))
        self.evaluations = state_dict["evaluations"]
        self.adamw_steps = state_dict["adamw_steps"]
        self.adamw_skips = state_dict["adamw_skips"]

    def state_bytes(self):
        total = self.matrix.state_bytes() if self.matrix is not None else 0
        if self.adamw is not None:
            for st in self.adamw.state.values():
                total += sum(v.numel() * v.element_size() for v in st.values()
                             if isinstance(v, torch.Tensor) and v.dim() > 0)
        return total


def hybrid(model, method="limuon", matrix_kwargs=None, adamw_kwargs=None, force_adamw=(), force_matrix=(),
           verbose=True):
    """Builds a :class:`HybridOptimizer` for ``model`` (an nn.Module).

    Hidden weights with >= 2 non-unit dims go to ``method`` ('limuon', 'muon', 'muon_mvr1',
    'muon_mvr2', 'sumo', 'muoneq', 'lionmuon', 'mimuon', 'gluon', or 'adamw' for an all-AdamW
    baseline) with ``matrix_kwargs``; nn.Embedding weights, names matching
    wte/wpe/embed_tokens/embedding/lm_head/head./cls_token/pos_embed/position_embed, and
    everything with fewer than two non-unit dims go to torch.optim.AdamW with ``adamw_kwargs``
    (default lr=3e-4, weight_decay=0). The routing table is printed unless ``verbose=False``.
    """
    routing, table = route(model, force_adamw, force_matrix)
    if verbose:
        print(table, end="")
    return HybridOptimizer(routing, method, matrix_kwargs, adamw_kwargs)
