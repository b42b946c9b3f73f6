"""The orthogonalization kernels exposed as functions: limuon.ns5, polar_express, gram_ns, svd_polar,
rsvd, orthogonalize."""
import os
from pathlib import Path

import pytest
import torch

import limuon  # noqa: E402


def randn(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (48, 48)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ns5_singular_values_in_band(shape, dtype):
    m = randn(*shape, dtype=dtype)
    o = limuon.ns5(m)
    assert o.shape == m.shape and o.dtype == dtype
    s = torch.linalg.svdvals(o.double())
    # Quintic Newton-Schulz does not converge to 1; it lands in a band around it.
    assert s.min() > 0.5 and s.max() < 1.5, (s.min().item(), s.max().item())


def test_polar_express_is_close_to_orthogonal():
    m = randn(40, 24)
    s = torch.linalg.svdvals(limuon.polar_express(m))
    assert s.min() > 0.7 and s.max() < 1.3


@pytest.mark.parametrize("shape", [(30, 12), (12, 30), (16, 16)])
def test_svd_polar_is_orthogonal_and_the_polar_factor(shape):
    m = randn(*shape)
    q = limuon.svd_polar(m)
    k = min(shape)
    gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
    assert torch.allclose(gram, torch.eye(k, dtype=torch.float64), atol=1e-12)
    # Polar factor: Q^T M is symmetric positive (semi)definite for tall M.
    if shape[0] >= shape[1]:
        h = q.T @ m
        assert torch.allclose(h, h.T, atol=1e-10)
        assert torch.linalg.eigvalsh(h).min() > 0


@pytest.mark.parametrize("power_iters", [0, 2])
def test_rsvd_is_exact_on_a_rank_r_matrix(power_iters):
    r = 3
    m = randn(20, r, seed=1) @ randn(r, 15, seed=2)
    u, s, v = limuon.rsvd(m, rank=r, oversample=2, power_iters=power_iters, seed=11)
    assert u.shape == (20, r) and s.shape == (r,) and v.shape == (15, r)
    rec = u @ torch.diag(s) @ v.T
    assert ((rec - m).abs().max() / m.abs().max()).item() < 1e-10
    assert torch.allclose(s, torch.linalg.svdvals(m)[:r], rtol=1e-10)
    assert torch.allclose(u.T @ u, torch.eye(r, dtype=torch.float64), atol=1e-12)


def test_rsvd_is_reproducible_by_seed():
    m = randn(30, 20)
    a = limuon.rsvd(m, 4, seed=5)
    b = limuon.rsvd(m, 4, seed=5)
    c = limuon.rsvd(m, 4, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0].abs(), c[0].abs())


def test_batched_input_matches_per_matrix():
    ms = randn(3, 10, 6)
    batched = limuon.ns5(ms)
    for i in range(3):
        assert torch.allclose(batched[i], limuon.ns5(ms[i]), atol=1e-12)


def test_orthogonalize_dispatch_matches_the_kernels():
    m = randn(12, 8)
    assert torch.equal(limuon.orthogonalize(m, "ns5"), limuon.ns5(m))
    assert torch.equal(limuon.orthogonalize(m, "svd"), limuon.svd_polar(m))
    assert torch.equal(limuon.orthogonalize(m, "polar_express"), limuon.polar_express(m))
    u, _, v = limuon.rsvd(m, 3, 1, 0, 9)
    assert torch.allclose(limuon.orthogonalize(m, "rsvd", rank=3, oversample=1, seed=9), u @ v.T, atol=1e-12)


def test_kernels_ignore_autograd_and_reject_bad_input():
    m = randn(6, 4).requires_grad_(True)
    assert not limuon.ns5(m).requires_grad
    with pytest.raises(ValueError, match="matrix"):
        limuon.svd_polar(torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="rank"):
        limuon.rsvd(randn(5, 5), rank=0)
    with pytest.raises(ValueError, match="valid"):
        limuon.orthogonalize(randn(5, 5), "qr")


def test_configure_allocator_is_callable_and_reports_support():
    # glibc (this platform) supports mallopt: the call must report success, twice (idempotent).
    # Under AddressSanitizer (the sanitizer pass preloads it) malloc is ASan's and mallopt a no-op
    # that reports failure, which is then the right answer.
    expected = "libasan" not in os.environ.get("LD_PRELOAD", "")
    assert limuon.configure_allocator() is expected
    assert limuon.configure_allocator() is expected


def _ill_conditioned(m, n, kappa, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = min(m, n)
    u, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -torch.log10(torch.tensor(kappa)).item(), k, dtype=torch.float64)
    return ((u * s) @ v.T).to(dtype)


@pytest.mark.parametrize("shape", [(24, 80), (80, 24), (3, 24, 80)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("coefficients", ["ns5", "polar_express"])
def test_gram_ns_matches_plain_loop_and_float64_svd(shape, dtype, coefficients):
    m = randn(*shape, dtype=dtype, seed=3)
    g = limuon.gram_ns(m, coefficients=coefficients)
    plain = limuon.ns5(m) if coefficients == "ns5" else limuon.polar_express(m)
    assert g.shape == m.shape and g.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert ((g - plain).norm() / plain.norm()).item() < tol
    # Against the exact polar factor from a float64 SVD: the same distance as the plain loop's.
    u, _, vh = torch.linalg.svd(m.double(), full_matrices=False)
    exact = u @ vh
    err_g = ((g.double() - exact).norm() / exact.norm()).item()
    err_p = ((plain.double() - exact).norm() / exact.norm()).item()
    assert abs(err_g - err_p) < tol
    s = torch.linalg.svdvals(g.double())
    assert s.min() > 0.5 and s.max() < 1.3, (s.min().item(), s.max().item())


def test_gram_ns_restarts_and_fallback():
    assert limuon.orthogonalize(randn(8, 30), "gram_ns").shape == (8, 30)
    # Near-square: the plain loop runs, bit-identical; min_aspect=1 forces the Gram form.
    sq = randn(20, 20)
    assert torch.equal(limuon.gram_ns(sq), limuon.ns5(sq))
    assert not torch.equal(limuon.gram_ns(sq, min_aspect=1.0), limuon.ns5(sq))
    # bfloat16, kappa = 1e6: without restarts the Gram form diverges; the default ones keep it in band.
    assert _C_restarts(torch.bfloat16) == [1, 3] and _C_restarts(torch.float32) == []
    m = _ill_conditioned(128, 512, 1e6, torch.bfloat16)
    hi = lambda o: torch.linalg.svdvals(o.double()).max().item()  # noqa: E731
    assert hi(limuon.gram_ns(m)) < hi(limuon.ns5(m)) + 0.05
    assert hi(limuon.gram_ns(m, restarts=[])) > 2.0
    with pytest.raises(ValueError, match="restart"):
        limuon.gram_ns(randn(8, 30), restarts=[0])
    with pytest.raises(ValueError, match="valid: ns5, polar_express"):
        limuon.gram_ns(randn(8, 30), coefficients="cubic")


def _C_restarts(dtype):
    return limuon._C.gram_ns_default_restarts(torch.zeros(1, dtype=dtype))
