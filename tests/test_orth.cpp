// Kernel properties across tall, wide, square and batched inputs, against an independent float64
// polar factor computed by eigendecomposition (not by SVD).
#include "limuon/orth.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <tuple>

using namespace limuon;

namespace {

// Polar factor via the symmetric eigendecomposition of the smaller Gram matrix, in float64:
// wide M: (M Mᵀ)^(-1/2) M; tall M: M (Mᵀ M)^(-1/2). Independent of linalg_svd.
torch::Tensor polar_eigh(const torch::Tensor& m) {
  auto d = m.to(torch::kDouble);
  const bool tall = d.size(-2) > d.size(-1);
  auto gram = tall ? d.transpose(-2, -1).matmul(d) : d.matmul(d.transpose(-2, -1));
  auto [evals, evecs] = at::linalg_eigh(gram, "L");
  auto inv_sqrt = evecs.matmul(torch::diag_embed(evals.rsqrt())).matmul(evecs.transpose(-2, -1));
  return tall ? d.matmul(inv_sqrt) : inv_sqrt.matmul(d);
}

// ‖O Oᵀ − I‖_F / √a with a = min(m, n), per matrix, worst of a batch.
double ortho_err(const torch::Tensor& o) {
  auto d = o.to(torch::kDouble);
  if (d.dim() == 2) d = d.unsqueeze(0);
  const bool tall = d.size(-2) > d.size(-1);
  auto x = tall ? d.transpose(-2, -1) : d;
  const int64_t a = x.size(-2);
  auto gram = x.matmul(x.transpose(-2, -1)) - torch::eye(a, torch::kDouble);
  return (gram.pow(2).sum({-2, -1}).sqrt() / std::sqrt(static_cast<double>(a))).max().item<double>();
}

double polar_rel_err(const torch::Tensor& o, const torch::Tensor& p) {
  auto diff = (o.to(torch::kDouble) - p).pow(2).sum({-2, -1}).sqrt();
  auto ref = p.pow(2).sum({-2, -1}).sqrt();
  return (diff / ref).max().item<double>();
}

std::pair<double, double> sv_range(const torch::Tensor& o) {
  auto s = at::linalg_svdvals(o.to(torch::kDouble));
  return {s.min().item<double>(), s.max().item<double>()};
}

using Shape = std::vector<int64_t>;
const std::vector<Shape> kShapes = {{48, 20}, {20, 48}, {32, 32}, {3, 24, 40}, {3, 40, 24}};

class KernelShapes : public ::testing::TestWithParam<std::tuple<Shape, torch::ScalarType>> {};

std::string shape_name(const ::testing::TestParamInfo<std::tuple<Shape, torch::ScalarType>>& info) {
  std::string s;
  for (auto d : std::get<0>(info.param)) s += (s.empty() ? "" : "x") + std::to_string(d);
  return s + (std::get<1>(info.param) == torch::kDouble ? "_f64" : "_f32");
}

// Gaussian input; square shapes get a controlled spectrum instead (singular values spread over
// [0.1, 1]), because a square Gaussian matrix has σ_min ≈ 0, which no 5-step iteration lifts.
torch::Tensor random_input(const Shape& shape, torch::ScalarType dt, uint64_t seed = 1) {
  torch::manual_seed(seed);
  const int64_t m = shape[shape.size() - 2], n = shape.back();
  if (m != n) return torch::randn(shape, torch::kDouble).to(dt);
  Shape s = shape;
  auto q1 = std::get<0>(at::linalg_qr(torch::randn(s, torch::kDouble), "reduced"));
  auto q2 = std::get<0>(at::linalg_qr(torch::randn(s, torch::kDouble), "reduced"));
  auto sv = torch::linspace(0.1, 1.0, m, torch::kDouble);
  return (q1 * sv).matmul(q2.transpose(-2, -1)).to(dt);
}

}  // namespace

TEST_P(KernelShapes, SvdIsTheExactPolarFactor) {
  auto [shape, dt] = GetParam();
  auto m = random_input(shape, dt);
  auto o = orth_svd(m);
  EXPECT_EQ(o.sizes(), m.sizes());
  EXPECT_EQ(o.scalar_type(), dt);
  const double tol = dt == torch::kDouble ? 1e-12 : 2e-5;
  EXPECT_LT(ortho_err(o), tol);
  EXPECT_LT(polar_rel_err(o, polar_eigh(m)), dt == torch::kDouble ? 1e-10 : 1e-4);
}

// Documented tolerances: after 5 quintic steps the singular values of a Gaussian matrix of
// these shapes lie in [0.55, 1.25] and the result is within 0.35 (relative Frobenius) of U Vᵀ.
TEST_P(KernelShapes, Ns5ApproximatesThePolarFactor) {
  auto [shape, dt] = GetParam();
  auto m = random_input(shape, dt);
  auto o = orth_ns5(m);
  EXPECT_EQ(o.sizes(), m.sizes());
  EXPECT_EQ(o.scalar_type(), dt);
  auto [lo, hi] = sv_range(o);
  EXPECT_GT(lo, 0.55);
  EXPECT_LT(hi, 1.25);
  EXPECT_LT(polar_rel_err(o, polar_eigh(m)), 0.35);
  EXPECT_LT(ortho_err(o), 0.6);
}

// Polar Express converges tighter than ns5 on the same inputs.
TEST_P(KernelShapes, PolarExpressIsTighterThanNs5) {
  auto [shape, dt] = GetParam();
  auto m = random_input(shape, dt);
  auto pe = orth_polar_express(m);
  auto ns = orth_ns5(m);
  auto p = polar_eigh(m);
  auto [lo, hi] = sv_range(pe);
  EXPECT_GT(lo, 0.7);
  EXPECT_LT(hi, 1.2);
  EXPECT_LT(polar_rel_err(pe, p), polar_rel_err(ns, p));
}

TEST_P(KernelShapes, RsvdRecoversAnExactlyLowRankMatrix) {
  auto [shape, dt] = GetParam();
  const int64_t r = 4;
  torch::manual_seed(3);
  Shape a_shape = shape, b_shape = shape;
  a_shape.back() = r;                            // [.., m, r]
  b_shape[b_shape.size() - 2] = r;               // [.., r, n]
  auto m = torch::randn(a_shape, torch::kDouble).matmul(torch::randn(b_shape, torch::kDouble)).to(dt);
  for (int64_t q : {0, 1, 2}) {
    auto f = rsvd(m, r, 5, q, 42);
    EXPECT_EQ(f.U.size(-1), r);
    EXPECT_EQ(f.S.size(-1), r);
    const double err = ((f.reconstruct() - m).norm() / m.norm()).item<double>();
    EXPECT_LT(err, dt == torch::kDouble ? 1e-10 : 1e-4) << "power_iters=" << q;
    // Û V̂ᵀ is the polar factor of the rank-r matrix: compare with the exact one from its SVD.
    auto usv = at::linalg_svd(m.to(torch::kDouble), false, std::nullopt);
    auto exact = std::get<0>(usv).narrow(-1, 0, r).matmul(std::get<2>(usv).narrow(-2, 0, r));
    EXPECT_LT(polar_rel_err(f.polar(), exact), dt == torch::kDouble ? 1e-8 : 1e-3);
  }
}

TEST_P(KernelShapes, FullRankRsvdEqualsTheExactPolarFactor) {
  auto [shape, dt] = GetParam();
  auto m = random_input(shape, dt);
  const int64_t k = std::min(shape[shape.size() - 1], shape[shape.size() - 2]);
  auto o = rsvd(m, k, 0, 0, 5).polar();
  EXPECT_LT(polar_rel_err(o, polar_eigh(m)), dt == torch::kDouble ? 1e-9 : 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Orth, KernelShapes,
                         ::testing::Combine(::testing::ValuesIn(kShapes),
                                            ::testing::Values(torch::kFloat, torch::kDouble)),
                         shape_name);

TEST(Orth, RsvdIsReproducibleUnderASeed) {
  auto m = random_input({30, 50}, torch::kFloat);
  auto a = rsvd(m, 6, 4, 1, 123), b = rsvd(m, 6, 4, 1, 123), c = rsvd(m, 6, 4, 1, 124);
  EXPECT_TRUE(torch::equal(a.U, b.U));
  EXPECT_TRUE(torch::equal(a.S, b.S));
  EXPECT_TRUE(torch::equal(a.V, b.V));
  // A full-rank Gaussian matrix: a different sketch gives a different rank-6 approximation.
  EXPECT_GT((a.reconstruct() - c.reconstruct()).abs().max().item<double>(), 1e-3);
}

TEST(Orth, SketchMatchesTorchGeneratorStream) {
  // gaussian_sketch is float32 randn from a CPU generator seeded with `seed`, the convention the
  // Python reference relies on (40x3 crosses the vectorised-fill threshold of 16 elements).
  auto like = torch::zeros({1}, torch::kDouble);
  auto s = gaussian_sketch(0, 40, 3, 99, like);
  auto gen = at::detail::createCPUGenerator(99);
  auto expect = at::randn({40, 3}, gen, torch::TensorOptions().dtype(torch::kFloat)).to(torch::kDouble);
  EXPECT_TRUE(torch::equal(s, expect));
}

TEST(Orth, BatchedEqualsLooped) {
  auto m = random_input({4, 24, 40}, torch::kDouble);
  for (auto method : {Orthogonalizer::svd, Orthogonalizer::ns5, Orthogonalizer::polar_express}) {
    OrthSpec spec;
    spec.method = method;
    auto batched = orthogonalize(m, spec);
    for (int64_t i = 0; i < 4; ++i)
      EXPECT_LT((batched[i] - orthogonalize(m[i], spec)).abs().max().item<double>(), 1e-12) << to_string(method);
  }
}

TEST(Orth, SymmetricBlasPathMatchesMatmulPath) {
  if (!symmetric_blas_available()) GTEST_SKIP() << "built without BLAS";
  for (const Shape& shape : kShapes) {
    auto m = random_input(shape, torch::kDouble);
    auto fast = orth_ns5(m);
    set_symmetric_blas_enabled(false);
    auto plain = orth_ns5(m);
    auto plain_pe = orth_polar_express(m);
    set_symmetric_blas_enabled(true);
    EXPECT_LT((fast - plain).abs().max().item<double>(), 1e-12);
    EXPECT_LT((orth_polar_express(m) - plain_pe).abs().max().item<double>(), 1e-12);
  }
}

TEST(Orth, Float32AgreesWithFloat64) {
  auto m = random_input({40, 64}, torch::kDouble);
  EXPECT_LT((orth_ns5(m.to(torch::kFloat)).to(torch::kDouble) - orth_ns5(m)).abs().max().item<double>(), 1e-4);
}

TEST(Orth, OrthogonalizeManyGroupsByShapeAndKeepsOrder) {
  torch::manual_seed(11);
  std::vector<torch::Tensor> mats = {torch::randn({8, 12}), torch::randn({12, 8}), torch::randn({8, 12}),
                                     torch::randn({5, 5}), torch::randn({8, 12})};
  std::vector<uint64_t> seeds = {1, 2, 3, 4, 5};
  for (auto method : {Orthogonalizer::ns5, Orthogonalizer::svd, Orthogonalizer::rsvd}) {
    OrthSpec spec;
    spec.method = method;
    spec.rank = 3;
    spec.oversample = 2;
    auto out = orthogonalize_many(mats, spec, seeds);
    ASSERT_EQ(out.size(), mats.size());
    for (size_t i = 0; i < mats.size(); ++i) {
      OrthSpec one = spec;
      one.seed = seeds[i];
      auto expect = orthogonalize(mats[i], one);
      EXPECT_EQ(out[i].sizes(), mats[i].sizes());
      EXPECT_LT((out[i] - expect).abs().max().item<double>(), 1e-5) << to_string(method) << " matrix " << i;
    }
  }
}

TEST(Orth, BadInputsAreRejectedWithClearErrors) {
  auto expect_msg = [](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no exception, expected one mentioning '" << needle << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_msg([] { orth_ns5(torch::randn({5})); }, "expected a matrix");
  expect_msg([] { orth_ns5(torch::ones({5, 4}, torch::kInt)); }, "floating-point");
  expect_msg([] { orth_ns5(torch::randn({5, 4}), kNs5Coefficients, 0, kNs5Eps); }, "steps must be >= 1");
  expect_msg([] { orth_ns5(torch::randn({5, 4}), kNs5Coefficients, 5, 0.0); }, "eps");
  expect_msg([] { orth_ns5(torch::randn({5, 4}), kNs5Coefficients, 5, std::nan("")); }, "eps");
  expect_msg([] { orth_ns5(torch::randn({5, 4}), {1.0, std::nan(""), 0.0}, 5, kNs5Eps); }, "coefficients");
  expect_msg([] { orth_svd(torch::randn({5, 4}).to(torch::kHalf)); }, "float32 or float64");
  expect_msg([] { rsvd(torch::randn({5, 4}), 0, 2, 0, 0); }, "rank must be >= 1");
  expect_msg([] { orth_ns5(torch::zeros({0, 4})); }, "empty");
  expect_msg([] { parse_orthogonalizer("newton"); }, "valid: svd, ns5, polar_express, rsvd");

  // orthogonalize_many: one seed per matrix or none, checked before any work, also before an
  // installed executor (the data-parallel one) would index the seeds.
  const std::vector<torch::Tensor> two = {torch::randn({4, 6}), torch::randn({4, 6})};
  expect_msg([&] { orthogonalize_many(two, OrthSpec{}, {7}); }, "got 1 seeds for 2 matrices");
  expect_msg([&] { orthogonalize_many_local(two, OrthSpec{}, {1, 2, 3}); }, "got 3 seeds for 2 matrices");
  int executor_calls = 0;
  struct Restore {  // the process-wide executor goes back however this test ends
    OrthExecutor previous;
    ~Restore() { set_orth_executor(std::move(previous)); }
  } restore{set_orth_executor(
      [&](const std::vector<at::Tensor>& mats, const OrthSpec& spec, const std::vector<uint64_t>& seeds) {
        ++executor_calls;
        return orthogonalize_many_local(mats, spec, seeds);
      })};
  expect_msg([&] { orthogonalize_many(two, OrthSpec{}, {7}); }, "got 1 seeds for 2 matrices");
  EXPECT_EQ(executor_calls, 0);
  EXPECT_EQ(orthogonalize_many(two, OrthSpec{}, {7, 8}).size(), 2u);
  EXPECT_EQ(executor_calls, 1);
}

// The coefficients, step count and eps are the caller's: checked against the iteration written out
// in float64, X = M / (‖M‖_F + eps), then X ← a·X + (b·A + c·A²)·X with A = X·Xᵀ (on Mᵀ if tall).
TEST(Orth, Ns5TakesCoefficientsStepsAndEps) {
  auto plain_ns = [](const torch::Tensor& m, const NsCoefficients& c, int64_t steps, double eps) {
    const bool tall = m.size(0) > m.size(1);
    auto x = tall ? m.t() : m;
    x = x / (x.norm() + eps);
    for (int64_t s = 0; s < steps; ++s) {
      auto a = x.matmul(x.t());
      x = c[0] * x + (c[1] * a + c[2] * a.matmul(a)).matmul(x);
    }
    return tall ? x.t() : x;
  };
  for (const Shape& shape : {Shape{48, 20}, Shape{20, 48}, Shape{32, 32}}) {
    auto m = random_input(shape, torch::kDouble);
    EXPECT_TRUE(torch::equal(orth_ns5(m, kNs5Coefficients, kNs5Steps, kNs5Eps), orth_ns5(m)));
    for (auto [c, steps, eps] : {std::tuple<NsCoefficients, int64_t, double>{kNs5Coefficients, 5, 1e-7},
                                 {{2.0, -1.5, 0.5}, 3, 1e-7}, {{3.0, -3.2, 1.2}, 9, 0.5}}) {
      auto got = orth_ns5(m, c, steps, eps);
      EXPECT_LT((got - plain_ns(m, c, steps, eps)).abs().max().item<double>(), 1e-12) << steps;
    }
  }
  // eps is added to the norm (torch.optim.Muon clamps the norm from below instead): with a = 1 and
  // b = c = 0 the iteration is the identity, so the result is the normalised input itself.
  auto m = torch::full({3, 4}, 0.5, torch::kDouble);  // ‖m‖_F = √3
  EXPECT_NEAR(orth_ns5(m, {1.0, 0.0, 0.0}, 1, 0.25)[0][0].item<double>(), 0.5 / (std::sqrt(3.0) + 0.25), 1e-15);
  EXPECT_TRUE(torch::equal(orth_ns5(torch::zeros({3, 4}, torch::kDouble)), torch::zeros({3, 4}, torch::kDouble)));
}

// bf16 (and fp16) on CPU: LibTorch 2.x has the matmuls, so ns5 runs there in the input dtype. The
// result is within half-precision rounding of the fp32 one: measured max |Δ| 0.012 (bf16, 8-bit
// mantissa) and 0.0015 (fp16, 11-bit) on these inputs; the bounds leave a 4x and 6x margin.
// (python/tests/test_torch_muon.py checks bf16 against torch.optim.Muon's own bf16 kernel.)
TEST(Orth, Ns5RunsInBf16AndFp16OnCpu) {
  for (const Shape& shape : {Shape{48, 20}, Shape{20, 48}, Shape{32, 32}, Shape{3, 20, 48}}) {
    auto m = random_input(shape, torch::kFloat);
    auto ref = orth_ns5(m);
    for (auto dt : {torch::kBFloat16, torch::kHalf}) {
      auto o = orth_ns5(m.to(dt));
      EXPECT_EQ(o.scalar_type(), dt);
      EXPECT_EQ(o.sizes(), m.sizes());
      const double tol = dt == torch::kBFloat16 ? 0.05 : 0.01;
      EXPECT_LT((o.to(torch::kFloat) - ref).abs().max().item<double>(), tol) << c10::toString(dt);
    }
  }
  // Through the dispatcher: a bf16 compute dtype on CPU, the result back in the input's dtype.
  auto m = random_input({20, 48}, torch::kFloat);
  OrthSpec spec;
  spec.compute_dtype = torch::kBFloat16;
  auto o = orthogonalize(m, spec);
  EXPECT_EQ(o.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(o, orth_ns5(m.to(torch::kBFloat16)).to(torch::kFloat)));
  // svd and rsvd still need fp32/fp64.
  spec.method = Orthogonalizer::svd;
  EXPECT_THROW(orthogonalize(m, spec), std::invalid_argument);
}

// OrthSpec's ns_* fields reach the kernel, in the batched path too.
TEST(Orth, OrthogonalizeManyPassesNsParameters) {
  torch::manual_seed(12);
  std::vector<torch::Tensor> mats = {torch::randn({8, 12}, torch::kDouble), torch::randn({8, 12}, torch::kDouble),
                                     torch::randn({12, 8}, torch::kDouble)};
  OrthSpec spec;
  spec.ns_coefficients = {2.0, -1.5, 0.5};
  spec.ns_steps = 7;
  spec.ns_eps = 1e-3;
  auto out = orthogonalize_many(mats, spec);
  for (size_t i = 0; i < mats.size(); ++i) {
    auto expect = orth_ns5(mats[i], spec.ns_coefficients, spec.ns_steps, spec.ns_eps);
    EXPECT_LT((out[i] - expect).abs().max().item<double>(), 1e-12) << i;
    EXPECT_GT((out[i] - orth_ns5(mats[i])).abs().max().item<double>(), 1e-3) << i;
  }
}
