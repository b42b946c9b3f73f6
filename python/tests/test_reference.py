"""The Python classes against the committed float64 reference trajectories
(tests/reference/trajectories.txt, written by the independent tests/reference/make_reference.py;
the C++ test_reference.cpp checks the C++ API against the same file)."""
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
import limuon  # noqa: E402

REFERENCE = ROOT / "tests" / "reference" / "trajectories.txt"


def load_reference(path=REFERENCE):
    """(tensors, losses, configs {name: (kind, {key: text})}, calls) of a reference file."""
    tensors, losses, configs, calls = {}, {}, {}, 0
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        f = line.split()
        if f[0] == "calls":
            calls = int(f[1])
        elif f[0] == "tensor":
            ndim = int(f[2])
            dims = [int(d) for d in f[3:3 + ndim]]
            vals = [float(v) for v in f[3 + ndim:]]
            tensors[f[1]] = torch.tensor(vals, dtype=torch.float64).reshape(dims)
        elif f[0] == "loss":
            losses[(f[1], int(f[2]))] = float(f[3])
        elif f[0] == "config":
            configs[f[1]] = (f[2], dict(kv.split("=", 1) for kv in f[3:]))
        else:
            raise ValueError(f"unknown record {f[0]!r}")
    return tensors, losses, configs, calls


REF = load_reference()


def kwargs_of(kind, opts):
    """Config strings -> keyword options, with the same key mapping as tests/test_reference.cpp."""
    kw = dict(lr=float(opts["lr"]), weight_decay=float(opts["weight_decay"]), adjust_lr=opts["adjust_lr"],
              orthogonalizer=opts["orthogonalizer"], rank=int(opts["rank"]), oversample=int(opts["oversample"]),
              power_iters=int(opts["power_iters"]), seed=int(opts["seed"]))
    if kind == "muon":
        kw.update(momentum=float(opts["momentum"]), nesterov=opts["nesterov"] == "True")
    else:
        kw.update(beta=float(opts["beta"]), gamma=float(opts["gamma"]), lowrank_state=opts["lowrank_state"],
                  storm=opts["storm"])
    return kw


class Problem:
    """The reference problem: W1 [5,3], W2 [4,5], W3 [3,2,2]; call t uses batch t."""

    def __init__(self, dtype=torch.float64):
        tensors = REF[0]
        self.params = [tensors[f"init/{k}"].to(dtype).clone().requires_grad_(True) for k in ("W1", "W2", "W3")]
        self.batch = 0
        self.evaluations = 0

    def loss(self):
        t = REF[0]
        b = f"batch/{self.batch}/"
        dt = self.params[0].dtype
        x, y, z, u = (t[b + k].to(dt) for k in "xyzu")
        w1, w2, w3 = self.params
        pred = torch.tanh(x @ w1.T) @ w2.T
        side = z @ w3.reshape(3, 4).T
        return ((pred - y) ** 2).mean() + ((side - u) ** 2).mean()

    def closure(self):
        for p in self.params:
            p.grad = None
        self.evaluations += 1
        loss = self.loss()
        loss.backward()
        return loss


def rel_diff(a, b):
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / (1 + b.abs().max())).item()


def make(name, params):
    kind, opts = REF[2][name]
    cls = limuon.Muon if kind == "muon" else limuon.LiMuon
    return cls(params, **kwargs_of(kind, opts))


def test_every_configuration_is_listed():
    assert len(REF[2]) == 15
    assert REF[3] == 6


def follow_reference(ref, name, opt, prob, twice):
    """Steps `opt` through the reference's calls, checking every loss and weight; `twice`: the
    method evaluates the closure twice per call after the first (at the old and the new weights)."""
    tensors, losses, _, calls = ref
    for t in range(calls):
        prob.batch = t
        before = prob.evaluations
        loss = opt.step(prob.closure)
        assert prob.evaluations - before == (2 if twice and t > 0 else 1)
        ref_loss = losses[(name, t)]
        assert abs(loss.item() - ref_loss) <= 1e-10 * (1 + abs(ref_loss)), (name, t)
        for k, p in zip(("W1", "W2", "W3"), prob.params):
            assert rel_diff(p, tensors[f"traj/{name}/{t}/{k}"]) < 1e-9, (name, t, k)
    # A run that never moved would prove nothing.
    assert rel_diff(prob.params[0], REF[0]["init/W1"]) > 1e-3


@pytest.mark.parametrize("name", sorted(REF[2]))
def test_trajectory_matches_float64_reference(name):
    prob = Problem()
    kind, opts = REF[2][name]
    follow_reference(REF, name, make(name, prob.params), prob, twice=kind == "limuon" and opts["storm"] == "exact")


def test_trajectory_with_zero_grad_filling_zeros():
    """zero_grad(set_to_none=False) keeps the same .grad tensors: the C++ side must still see them."""
    tensors, _, _, calls = REF
    prob = Problem()
    opt = make("limuon_paper_ns5", prob.params)

    def closure():
        opt.zero_grad(set_to_none=False)
        return prob.loss().backward() or prob.loss().detach()

    for t in range(calls):
        prob.batch = t
        opt.step(closure)
    for k, p in zip(("W1", "W2", "W3"), prob.params):
        assert rel_diff(p, tensors[f"traj/limuon_paper_ns5/{calls - 1}/{k}"]) < 1e-9


def test_float32_follows_the_reference_loosely():
    tensors, _, _, calls = REF
    prob = Problem(torch.float32)
    opt = make("limuon_none_ns5", prob.params)
    for t in range(calls):
        prob.batch = t
        opt.step(prob.closure)
        assert prob.params[0].dtype == torch.float32
    assert rel_diff(prob.params[1], tensors[f"traj/limuon_none_ns5/{calls - 1}/W2"]) < 1e-4
