"""limuon's Muon against PyTorch's own torch.optim.Muon (PyTorch >= 2.9), in three ways:
  - bookkeeping: with torch's Newton-Schulz replaced by a float64 one that computes what our ns5
    computes, both implementations (the C++ class through limuon._C and limuon.Muon) follow
    torch's trajectory to 1e-10 in float64;
  - as shipped: torch runs Newton-Schulz in bfloat16, ours in float32; the trajectories agree to a
    measured bf16 tolerance;
  - the kernel: our ns5 in bfloat16 on CPU against torch's bfloat16 Newton-Schulz on the same input.
Also torch's argument names (adjust_lr_fn, ns_coefficients, ns_steps, eps) on limuon.Muon.
limuon.Muon's default orthogonalizer is gram_ns, the ns5 iteration on the Gram matrix (the same map
up to rounding, ~1e-15 in float64 on these shapes): the tolerances below hold it as they held ns5."""
import math

import pytest
import torch

import limuon

if not hasattr(torch.optim, "Muon"):
    pytest.skip("torch.optim.Muon needs PyTorch >= 2.9", allow_module_level=True)

from torch.optim import _muon as torch_muon  # noqa: E402  (torch's module, to patch its kernel)

TORCH_NS = getattr(torch_muon, "_zeropower_via_newtonschulz", None)
needs_torch_ns = pytest.mark.skipif(TORCH_NS is None, reason="torch.optim._muon has no _zeropower_via_newtonschulz")

# Tall, wide and square; the repeated shape goes through our batched (stacked) kernel path.
SHAPES = [(48, 20), (20, 48), (32, 32), (20, 48)]
STEPS = 10
LR, MOMENTUM, WEIGHT_DECAY = 0.02, 0.9, 0.1
DEFAULT_NS = dict(ns_coefficients=(3.4445, -4.7750, 2.0315), ns_steps=5, eps=1e-7)
# torch's adjust_lr_fn -> our adjust_lr, written out here rather than taken from limuon, so the
# C++ runs check the Python mapping independently.
NATIVE_ADJUST_LR = {None: "original", "original": "original", "match_rms_adamw": "match_rms_adamw",
                    "spectral_unclamped": "spectral"}


def ns_float64_like_ours(grad, ns_coefficients, ns_steps, eps):
    """What our ns5 (src/kernels/orth.cpp) computes, in float64 and written plainly: a tall matrix is
    iterated as its transpose (torch does the same), X = G / (||G||_F + eps), then ns_steps of
    X <- a X + (b A + c A A) X with A = X X^T (torch's iteration).

    The normalisation is the one place where this departs from torch's kernel, which divides by
    max(||G||_F, eps). We mirror ours here rather than add a second normalisation to limuon: the
    two differ by a relative eps/||G||_F (1e-7 for a unit-norm update), which bf16 cannot represent
    (our bf16 ns5 equals torch's bit for bit, see the kernel test below), and switching ours would
    change every trajectory limuon has published (tests/reference)."""
    a, b, c = ns_coefficients
    x = grad.to(torch.float64)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / (torch.linalg.matrix_norm(x) + eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if tall else x


def start(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    weights = [0.5 * torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
    targets = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
    return [w.to(dtype) for w in weights], [t.to(dtype) for t in targets]


def gradient(w, target, t):
    # Depends on the weights, so that a deviation in one step shows in the next steps' gradients.
    return (w - target) + 0.5 * torch.sin(3.0 * w + t)


def trajectory(make, dtype, steps=STEPS):
    """Weights after each of `steps` steps of the optimizer make(params) returns."""
    weights, targets = start(dtype)
    params = [w.clone().requires_grad_(True) for w in weights]
    opt = make(params)
    out = []
    for t in range(steps):
        with torch.no_grad():
            for p, target in zip(params, targets):
                p.grad = gradient(p, target, t)
        opt.step()
        out.append([p.detach().clone() for p in params])
    return out


def max_deviation(a, b):
    return max((x - y).abs().max().item() for wa, wb in zip(a, b) for x, y in zip(wa, wb))


def movement(traj, dtype):
    weights, _ = start(dtype)
    return max((w - w0).abs().max().item() for w, w0 in zip(traj[-1], weights))


class CppMuon:
    """The C++ limuon::Muon through the binding, with torch's step() interface."""

    def __init__(self, params, options):
        self.cpp = limuon._C.Muon([(params, options)])

    def step(self):
        self.cpp.step()


def make_torch(nesterov, adjust_lr_fn, ns):
    def make(params):
        try:
            return torch.optim.Muon(params, lr=LR, weight_decay=WEIGHT_DECAY, momentum=MOMENTUM, nesterov=nesterov,
                                    adjust_lr_fn=adjust_lr_fn, **ns)
        except ValueError as e:  # an adjust_lr_fn this torch does not have (spectral_unclamped, 2.10+)
            pytest.skip(str(e))
    return make


def make_ours(impl, nesterov, adjust_lr_fn, ns):
    if impl == "python":  # torch's names, as a torch user would write them
        return lambda params: limuon.Muon(params, lr=LR, weight_decay=WEIGHT_DECAY, momentum=MOMENTUM,
                                          nesterov=nesterov, adjust_lr_fn=adjust_lr_fn, **ns)
    options = dict(lr=LR, weight_decay=WEIGHT_DECAY, momentum=MOMENTUM, nesterov=nesterov,
                   adjust_lr=NATIVE_ADJUST_LR[adjust_lr_fn], **ns)
    return lambda params: CppMuon(params, options)


NS_CASES = {"default": DEFAULT_NS, "custom": dict(ns_coefficients=(3.0, -3.2, 1.2), ns_steps=4, eps=1e-2)}


# ---------------------------------------------------------------- (a) float64 bookkeeping
@needs_torch_ns
@pytest.mark.parametrize("ns", list(NS_CASES))
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust_lr_fn", [None, "original", "match_rms_adamw", "spectral_unclamped"])
@pytest.mark.parametrize("impl", ["cpp", "python"])
def test_float64_trajectory_follows_torch_with_float64_newton_schulz(monkeypatch, impl, adjust_lr_fn, nesterov, ns):
    # torch's kernel casts to bf16; replaced, torch's momentum, Nesterov, lr adjustment and decoupled
    # weight decay are all that is compared, and the ns_* / eps arguments reach both kernels alike.
    monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", ns_float64_like_ours)
    ns_kw = NS_CASES[ns]
    theirs = trajectory(make_torch(nesterov, adjust_lr_fn, ns_kw), torch.float64)
    ours = trajectory(make_ours(impl, nesterov, adjust_lr_fn, ns_kw), torch.float64)
    assert all(w.dtype == torch.float64 for w in ours[-1])
    assert movement(theirs, torch.float64) > 0.05  # the comparison is not between two standing weights
    # Measured: at most 4.4e-16 over these 64 cases (float64 rounding) while the weights move by 0.18.
    assert max_deviation(ours, theirs) < 1e-10


@needs_torch_ns
def test_patched_kernel_is_the_one_torch_calls(monkeypatch):
    # Guards the test above: if torch stopped calling the module-level function, the patch would be
    # silently ignored and the comparison above would be against bf16 numbers (it would then fail,
    # but for a misleading reason).
    calls = []

    def spy(*args):
        calls.append(args[0].shape)
        return ns_float64_like_ours(*args)

    monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", spy)
    trajectory(make_torch(True, None, DEFAULT_NS), torch.float64, steps=2)
    assert len(calls) == 2 * len(SHAPES)


# ---------------------------------------------------------------- (b) as shipped: torch in bf16
# Measured (PyTorch 2.15, CPU): max |ours_fp32 - torch_bf16| over the 10 steps is 8.5e-4 to 1.1e-3
# across these 8 cases (the C++ and Python classes give identical numbers), growing from 2.5e-4 after
# step one, while the weights move by 0.15: bf16 rounding (2^-8 relative) of each orthogonalized
# update, accumulated. 2.5e-3 leaves a 2.3x margin and still catches a missing weight decay (3.5e-2
# here), a wrong lr scaling (3.2e-2 for spectral) or a Nesterov flag ignored (3.7e-3); errors
# smaller than the bf16 noise (momentum 0.95 for 0.9, lr off by 1%: 1.7e-3) are for the float64
# test above to catch.
BF16_TOL = 2.5e-3


@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("impl", ["cpp", "python"])
def test_float32_trajectory_follows_shipped_torch_within_bf16_tolerance(impl, nesterov, adjust_lr_fn):
    theirs = trajectory(make_torch(nesterov, adjust_lr_fn, DEFAULT_NS), torch.float32)
    ours = trajectory(make_ours(impl, nesterov, adjust_lr_fn, DEFAULT_NS), torch.float32)
    assert all(w.dtype == torch.float32 for w in ours[-1])
    assert movement(theirs, torch.float32) > 0.05
    assert max_deviation(ours, theirs) < BF16_TOL


# ---------------------------------------------------------------- torch's argument names
def one_step(params_dtype=torch.float64, seed=3, **kw):
    """Weights after one step of limuon.Muon(**kw) with momentum 0 (the update is the gradient)."""
    weights, targets = start(params_dtype, seed)
    params = [w.clone().requires_grad_(True) for w in weights]
    opt = limuon.Muon(params, momentum=0.0, **kw)
    for p, target in zip(params, targets):
        p.grad = gradient(p.detach(), target, 0)
    opt.step()
    return [p.detach().clone() for p in params]


def expected_one_step(lr, weight_decay, scale, ns_coefficients, ns_steps, eps, seed=3):
    """The same step from the float64 kernel above: W (1 - lr wd) - lr scale(W) NS(G)."""
    weights, targets = start(torch.float64, seed)
    out = []
    for w, target in zip(weights, targets):
        o = ns_float64_like_ours(gradient(w, target, 0), ns_coefficients, ns_steps, eps)
        out.append(w * (1 - lr * weight_decay) - lr * scale(*w.shape) * o)
    return out


SCALES = {"original": lambda m, n: math.sqrt(max(1.0, m / n)),
          "match_rms_adamw": lambda m, n: 0.2 * math.sqrt(max(m, n)),
          "spectral": lambda m, n: math.sqrt(m / n)}


@pytest.mark.parametrize("adjust_lr_fn", [None, "original", "match_rms_adamw", "spectral_unclamped"])
def test_adjust_lr_fn_is_the_native_adjust_lr(adjust_lr_fn):
    native = NATIVE_ADJUST_LR[adjust_lr_fn]
    by_torch_name = one_step(lr=0.05, adjust_lr_fn=adjust_lr_fn)
    by_native_name = one_step(lr=0.05, adjust_lr=native)
    assert all(torch.equal(a, b) for a, b in zip(by_torch_name, by_native_name))
    expect = expected_one_step(0.05, 0.0, SCALES[native], **DEFAULT_NS)
    assert max(abs(a - b).max().item() for a, b in zip(by_torch_name, expect)) < 1e-12
    # The modes give different steps on these shapes (tall and wide), so the equalities above are
    # not those of a setting that is ignored.
    other = one_step(lr=0.05, adjust_lr="match_rms_adamw" if native != "match_rms_adamw" else "original")
    assert max(abs(a - b).max().item() for a, b in zip(by_torch_name, other)) > 1e-3


@pytest.mark.parametrize("kw", [dict(ns_coefficients=(2.0, -1.5, 0.5)), dict(ns_coefficients=[3.0, -3.2, 1.2]),
                                dict(ns_steps=2), dict(ns_steps=9), dict(eps=0.5)],
                         ids=["coefficients", "coefficients-list", "steps-2", "steps-9", "eps"])
def test_ns_arguments_change_the_step_as_the_kernel_says(kw):
    ns = dict(DEFAULT_NS, **kw)
    ns["ns_coefficients"] = tuple(ns["ns_coefficients"])
    got = one_step(lr=0.05, **kw)
    expect = expected_one_step(0.05, 0.0, SCALES["original"], **ns)
    assert max(abs(a - b).max().item() for a, b in zip(got, expect)) < 1e-12
    default = one_step(lr=0.05)
    assert max(abs(a - b).max().item() for a, b in zip(got, default)) > 1e-4
    # The same value through the C++ class (native and torch names are the same here) and the kernel.
    weights, targets = start(torch.float64, 3)
    params = [w.clone() for w in weights]
    cpp = limuon._C.Muon([(params, dict(lr=0.05, momentum=0.0, **ns))])
    for p, target in zip(params, targets):
        p.grad = gradient(p, target, 0)
    cpp.step()
    assert all(torch.equal(a, b) for a, b in zip(params, got))
    g = gradient(weights[0], targets[0], 0)
    o = limuon.ns5(g, ns["ns_steps"], ns["ns_coefficients"], ns["eps"])
    assert torch.allclose(o, ns_float64_like_ours(g, **ns), rtol=0, atol=1e-12)


def test_ns_options_are_in_param_groups_and_survive_state_dict():
    weights, targets = start(torch.float64)
    kw = dict(ns_coefficients=(3.0, -3.2, 1.2), ns_steps=3, eps=1e-3)
    a = limuon.Muon([w.clone().requires_grad_(True) for w in weights], adjust_lr_fn="match_rms_adamw", **kw)
    group = a.param_groups[0]
    assert (group["ns_coefficients"], group["ns_steps"], group["eps"], group["adjust_lr"]) == \
        ((3.0, -3.2, 1.2), 3, 1e-3, "match_rms_adamw")
    assert a._cpp.options(0)["ns_coefficients"] == (3.0, -3.2, 1.2)
    for p, target in zip(a.param_groups[0]["params"], targets):
        p.grad = gradient(p.detach(), target, 0)
    a.step()
    b = limuon.Muon([p.detach().clone().requires_grad_(True) for p in a.param_groups[0]["params"]])
    b.load_state_dict(a.state_dict())
    for k, v in kw.items():
        assert b.param_groups[0][k] == v and b._cpp.options(0)[k] == v
    for opt in (a, b):
        for p, target in zip(opt.param_groups[0]["params"], targets):
            p.grad = gradient(p.detach(), target, 1)
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.param_groups[0]["params"], b.param_groups[0]["params"]))


def test_ns_options_set_through_param_groups_reach_cpp():
    weights, _ = start(torch.float64)
    opt = limuon.Muon([w.clone().requires_grad_(True) for w in weights])
    opt.param_groups[0]["ns_steps"] = 7
    opt.param_groups[0]["ns_coefficients"] = (2.0, -1.5, 0.5)
    for p in opt.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    opt.step()
    assert opt._cpp.options(0)["ns_steps"] == 7 and opt._cpp.options(0)["ns_coefficients"] == (2.0, -1.5, 0.5)
    opt.param_groups[0]["eps"] = 0.0
    with pytest.raises(ValueError, match="eps"):
        opt.step()


# A Muon archive written before ns_coefficients, ns_steps and eps were options (limuon at commit
# 946315f, PyTorch 2.15): limuon._C.Muon([(p, {"lr": 0.1, "momentum": 0.9})]).save() after one step
# from LEGACY_W0 with gradient LEGACY_G (float64, 2x3), lzma-compressed, base64.
LEGACY_W0 = [[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]]
LEGACY_G = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]
LEGACY_ARCHIVE = [
    "/Td6WFoAAATm1rRGAgAhARwAAAAQz1jM4BNmBrldACgSvGAn5w2LqFIzP2Vjlo5NQBWGrpomgKukpD929ue6CDQ8UJ3zr2OeMoZh"
    "p2bR5OLqGbeTVAoycer4jVPIOci82WzNSVxt6K2GM8p2Mu6jtdAgrbInYTpSMidZkOXszHeiA+MwGTkOZRYwzmgxbMm9it396jl9"
    "1aSpz4HteVAJDG3bU5xs28osCSDsRpOVy+TAXq06d6BKzS/QIwdaMzZ2J5kmHSyihWkAfmOth/gcSuqRzsFpgNJLhBOSV23Epy9h"
    "mkv/aD7sC/cr+LJT2lPZoTAO8Hs6DROgbKWv65mCcXhpsUHrk7kPYDLjRDGlC7/Cz8CHOeDSVZlpZ8mV7SYC5VdaQRnjLw5dQXr7"
    "L+VliKKXd9zen97iZtKeGN1EeFHTO87hNmgR/TaGrOPvDQn1cUUz26/PE/gLcF2cW1yRSiUyTm0/UB7Rc5/PrI6jUXgtqXtJ+ULs"
    "2Z4oqZM+IA+DtrbmG3R1l/II1u+bW7whiZDeDUIf9LzYE907o0qU3idX0myAqMIlrGGeAZBhxl9qGoL3E96sxquipl4/FEADDL5c"
    "9rcjHZOGJhVT4K6edm3CEiGAQJOUVDNgAe5Zy6VrHuonZ8dAO4/8rnNx1+R/PFBQX4Y7eQGRPVrBVNo5FsU81Bm5ZfzDyFNIoMEr"
    "JElfXGlQ9hjumpcwebqsPmqUIKGxP9otxIk+Y9jiHF/gzV3TOOVwCQ/IYLEXF5FzuzZMa5CvYU1cUQIbc9SLTACE47BZHDypBbY/"
    "XKZZFr3H7pqYUxL8UlIK+d4lE6PZ+8eAiKuXG/VXLTP1AY8iYHmfoNWiG07jfbi7cIQB9th7EUMJdZWvDIc/qAnq1quCQwhGrQpy"
    "9IGN2qLxYLEAI+C+TiJNA+7TGqqjYygPmSN2PyXsa1v+UejR5tAY5NFPwO4v6rhvJuT+3Hz7wIdihLts+F1L/xfBR/Z6L/ubu064"
    "9tQuxjdgau/YCdS8YD6GCTYd+xr6BS8wONA1DKp4ylYNZj5wQkZlZ1/ZLy1QwVw0ClXVlpfw8kTp1K2Z9Upk5EzohI+DHTp/QPZG"
    "X9lTOhgrTjEiagIE9El8PA4wdiV+mDt7hcmLz1zd3bbj/o3K6ZrtOmXPYiTEQW5qMQi1HOSFvWMRdgOCumN1ItEmqZ89e/cR+2Qe"
    "NViZRWMgZkuo5boy5G4EFK6GY8wxivDuF1G4GFGfFuefEjk02hRjm0AZdqVfxqz6xfmryMW3t1po5boBiJAvDffRastZ7SDnNhAH"
    "1DngmUJYZrSIKILlYMc8DNLtp6HXJMXnNuVTMS0/oVLZ7SpTImJAi31x307dbP6tXO3H/BCt2zCeHcWD3Y7pk2HgBJT8df8FaVhI"
    "lUHorsS0N0UUKbhidEX+pxMmI9qv1PhnvyLk5q1+ZhrC3wTG0dNm1kjncP2gSRMr74gsemawKtxEd/HgTZxdUcALm0i/Z5yCR171"
    "KdhPaa26BpgmrkUwDaoBTwkUI29H7aZifL5JnlE1P0bMJ1DE8FdyB0iSkUjxOGmjns0nN26YUx763CHJBJN9Dt/DxRPuRYC4YyCD"
    "QRfHsLHiGtfDI3mYVSt1oyW1ChlipMqNIbW2tSjHNjnrXvKo9AqNXEuXXPYHgiqi76j84jOsPfCAhoPZkfgP1gMceWqE1mxVfQFV"
    "F+f6jyMZ2fugSbt4CDTHGJoZUB99M7gD7jgDwdVQZAxI7Jbv88chXGbInzUFRMq6aeEkQkUg38WCzJCv+7wc5CxtbGnhGQmkEhIv"
    "SL8YWgq25fS0Q+wD1RYq0tcmEpPZA37aTLW0hFfVejS9rT7AEWfXfJjgQDNvYfvdpjG+tPNNLoEUf0Jkuf+stk3YHTAvZ+F8ZHjG"
    "bGNOSb7w1khpaUELUjxzTp3ccUE7ozGcYmlnEuOXERdMRXeiVXs3qnKkAiPKVZRoZ6NKfqFw0W+quYTU9DnQEemIvc1j3F02f3Cg"
    "qYmL6UmhLunitsHTHhH2Q0yh3RFL4yugALaQhAwYZlQR6CX2ngjDCqD0sItYWlVunEc2MFYwykJg4b+34OJ11nsncX3NIKB6Hh6Z"
    "e9e6E710uDUs2C4bUa2lv2HamibjJCfn2at3eYQOu9hUCv3JWg2J1YltocDyGSgq7A0EDoV5OAYCl18FstEzzFzIG1COp44UFRZf"
    "AIc2k16v6TfGX1W72qt5+riM9y7KBKIu0gYnZywZk9ip4FlwHcKKtbMbakOgatHDl4wxWMmCnSgLa/Rg+oGhbmv44KsxvKu3nngp"
    "A73QUE4vVn2M1BY5l1qg+MhgGRBcGBz3jf5XAAAAAHQd4kn0Ha0aAAHVDecmAAAj3l4OscRn+wIAAAAABFla",
]


def test_archive_without_ns_options_loads_with_the_published_defaults():
    import base64
    import lzma
    archive = lzma.decompress(base64.b64decode("".join(LEGACY_ARCHIVE)))
    w0, g = torch.tensor(LEGACY_W0, dtype=torch.float64), torch.tensor(LEGACY_G, dtype=torch.float64)
    # Uninterrupted, with the published ns5 settings: two steps. The archive was written while ns5 was
    # the default orthogonalizer (it names it): pinned here, since the default is now gram_ns.
    p = w0.clone()
    opt = limuon._C.Muon([([p], {"lr": 0.1, "momentum": 0.9, "orthogonalizer": "ns5"})])
    p.grad = g
    opt.step()
    after_one = p.clone()
    opt.step()
    # The legacy archive loaded into an optimizer made with other ns settings: absent means default.
    q = after_one.clone()
    loaded = limuon._C.Muon([([q], {"lr": 0.1, "momentum": 0.9, "ns_steps": 3, "eps": 0.5})])
    assert loaded.options(0)["orthogonalizer"] == "gram_ns"
    loaded.load(archive)
    o = loaded.options(0)
    assert (o["ns_coefficients"], o["ns_steps"], o["eps"]) == tuple(DEFAULT_NS.values())
    assert o["orthogonalizer"] == "ns5"  # as written, not today's default
    assert (o["lr"], o["momentum"]) == (0.1, 0.9)
    q.grad = g
    loaded.step()
    assert torch.equal(q, p)


BAD_TORCH_NAMED = [
    (dict(ns_coefficients=(1.0, 2.0)), "ns_coefficients"), (dict(ns_coefficients=3.0), "ns_coefficients"),
    (dict(ns_coefficients="abc"), "ns_coefficients"),
    (dict(ns_coefficients=(1.0, float("nan"), 2.0)), "ns_coefficients"),
    (dict(ns_coefficients=(1.0, "b", 2.0)), "ns_coefficients"),
    (dict(ns_steps=0), "ns_steps"), (dict(ns_steps=101), "ns_steps"), (dict(ns_steps=2.5), "ns_steps"),
    (dict(eps=0.0), "eps"), (dict(eps=-1e-7), "eps"), (dict(eps=float("nan")), "eps"), (dict(eps=float("inf")), "eps"),
    (dict(eps="1e-7"), "eps"),
    (dict(adjust_lr_fn="spectral"), "adjust_lr_fn"), (dict(adjust_lr_fn="none"), "adjust_lr_fn"),
    (dict(adjust_lr_fn=1), "adjust_lr_fn"),
]


@pytest.mark.parametrize("kw,option", BAD_TORCH_NAMED, ids=[f"{o}-{i}" for i, (_, o) in enumerate(BAD_TORCH_NAMED)])
def test_bad_torch_named_argument_is_a_value_error_naming_it(kw, option):
    weights, _ = start(torch.float64)
    with pytest.raises(ValueError, match=option):
        limuon.Muon([w.requires_grad_(True) for w in weights], **kw)


@pytest.mark.parametrize("ours,theirs", [("original", None), ("original", "original"),
                                         ("spectral", "spectral_unclamped"), ("original", "match_rms_adamw")])
def test_both_names_for_adjust_lr_is_an_error(ours, theirs):
    weights, _ = start(torch.float64)
    params = [w.requires_grad_(True) for w in weights]
    with pytest.raises(ValueError, match="adjust_lr_fn"):
        limuon.Muon(params, adjust_lr=ours, adjust_lr_fn=theirs)
    opt = limuon.Muon(params[:1])
    with pytest.raises(ValueError, match="adjust_lr_fn"):
        opt.add_param_group({"params": params[1:], "adjust_lr": ours, "adjust_lr_fn": theirs})
    assert len(opt.param_groups) == 1 and opt._cpp.num_groups() == 1


def test_param_group_may_use_adjust_lr_fn():
    weights, _ = start(torch.float64)
    params = [w.requires_grad_(True) for w in weights]
    opt = limuon.Muon([{"params": params[:2], "adjust_lr_fn": "match_rms_adamw"}])
    opt.add_param_group({"params": params[2:], "adjust_lr_fn": None})
    assert [g["adjust_lr"] for g in opt.param_groups] == ["match_rms_adamw", "original"]
    assert all("adjust_lr_fn" not in g for g in opt.param_groups)
    assert [opt._cpp.options(i)["adjust_lr"] for i in range(2)] == ["match_rms_adamw", "original"]


def test_muon_defaults_are_the_published_ones():
    weights, _ = start(torch.float64)
    opt = limuon.Muon([w.requires_grad_(True) for w in weights])
    o = opt._cpp.options(0)
    assert o["ns_coefficients"] == (3.4445, -4.7750, 2.0315) and o["ns_steps"] == 5 and o["eps"] == 1e-7
    assert o["adjust_lr"] == "original" and o["lr"] == 0.02 and o["weight_decay"] == 0.0
    # The kernel coefficients are torch's (its bf16 kernel reads the same constants).
    assert (torch_muon.DEFAULT_A, torch_muon.DEFAULT_B, torch_muon.DEFAULT_C) == o["ns_coefficients"]
    assert (torch_muon.DEFAULT_NS_STEPS, torch_muon.EPS) == (o["ns_steps"], o["eps"])


# ---------------------------------------------------------------- the kernel in bf16 on CPU
@needs_torch_ns
@pytest.mark.parametrize("shape", [(48, 20), (20, 48), (32, 32), (96, 320)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_bf16_ns5_on_cpu_equals_torch_bf16_newton_schulz(shape):
    g = torch.Generator().manual_seed(5)
    m = torch.randn(shape, generator=g).to(torch.bfloat16)
    ours = limuon.ns5(m)
    theirs = TORCH_NS(m, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    assert ours.dtype == torch.bfloat16 and ours.shape == m.shape
    # In bf16, ||X||_F + 1e-7 rounds back to ||X||_F, so our normalisation is torch's, and both run
    # the same matmul/addmm sequence in bf16. Measured: bit-identical on these shapes (and on
    # 768x3072, 3072x768) with PyTorch 2.15 on this CPU (AVX-512, no native bf16). Allowed: 1/64 (two
    # bf16 ulps of entries below 2), in case another CPU's matmul kernel (e.g. with AMX) picks a
    # different blocking for torch's transposed view than for our contiguous copy. For scale: our
    # fp32 result is 2e-3 to 9e-3 away from torch's bf16 one.
    assert (ours.float() - theirs.float()).abs().max().item() <= 1 / 64
    # And far closer to torch's result than to float32 (the comparison can tell bf16 from fp32).
    fp32 = limuon.ns5(m.float())
    assert (fp32 - theirs.float()).abs().max().item() > 4 * (ours.float() - theirs.float()).abs().max().item()


@needs_torch_ns
def test_bf16_ns5_batch_matches_torch_matrix_by_matrix():
    g = torch.Generator().manual_seed(6)
    batch = torch.randn(3, 20, 48, generator=g).to(torch.bfloat16)
    ours = limuon.ns5(batch)
    for i in range(3):
        theirs = TORCH_NS(batch[i], (3.4445, -4.7750, 2.0315), 5, 1e-7)
        assert (ours[i].float() - theirs.float()).abs().max().item() <= 1 / 64
