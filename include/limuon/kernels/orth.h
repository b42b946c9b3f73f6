// Orthogonalization kernels: stateless functions returning (an approximation of) the polar
// factor U Vᵀ of a matrix M = U Σ Vᵀ, for one matrix [m, n] or a batch [k, m, n].
// Spec: docs ALGORITHMS.md §1. Gram Newton–Schulz after "Gram Newton-Schulz: A Fast, Hardware-Aware
// Newton-Schulz Algorithm for Muon" (Dao AI Lab, 2026, tridao.me/blog/2026/gram-newton-schulz).
#pragma once

#include <ATen/Tensor.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace limuon {

enum class Orthogonalizer { svd, ns5, polar_express, rsvd, gram_ns };

std::string to_string(Orthogonalizer o);
// Throws std::invalid_argument naming the valid choices.
Orthogonalizer parse_orthogonalizer(const std::string& name);

// Quintic Newton–Schulz coefficients (a, b, c), from Keller Jordan's Muon, and the eps of the
// normalisation X / (‖X‖_F + eps). torch.optim.Muon uses the same values but divides by
// max(‖X‖_F, eps); the two agree to a relative eps/‖X‖_F.
constexpr double kNs5A = 3.4445, kNs5B = -4.7750, kNs5C = 2.0315;
constexpr int kNs5Steps = 5;
constexpr double kNs5Eps = 1e-7;
using NsCoefficients = std::array<double, 3>;
constexpr NsCoefficients kNs5Coefficients = {kNs5A, kNs5B, kNs5C};

// Polar Express per-step coefficients (Amsel, Persson, Musco, Gower 2025), 5 steps,
// with normalisation ‖M‖_F·1.02 + 1e-6 (values as given in ALGORITHMS.md §1).
constexpr int kPolarExpressSteps = 5;
constexpr double kPolarExpressCoeffs[kPolarExpressSteps][3] = {
    {8.156554524902461, -22.48329292557795, 15.878769915207462},
    {4.042929935166739, -2.808917465908714, 0.5000178451051316},
    {3.8916678022926607, -2.772484153217685, 0.5060648178503393},
    {3.285753657755655, -2.3681294933425376, 0.46449024233003106},
    {2.3465413258596377, -1.7097828382687081, 0.42323551169305323},
};

// Exact polar factor from the thin SVD. fp32/fp64 only.
at::Tensor orth_svd(const at::Tensor& m);

// Newton–Schulz with the quintic coefficients above; works in the input dtype (fp32, fp64, bf16,
// fp16, on CPU and CUDA; the half types run at a fraction of fp32's speed on most CPUs). Singular
// values of the result land roughly in [0.5, 1.5]. Tall inputs are iterated as their transpose.
at::Tensor orth_ns5(const at::Tensor& m, int steps = kNs5Steps);
// The same iteration with any coefficients (a, b, c) per step, `steps` ≥ 1 and normalisation eps > 0.
at::Tensor orth_ns5(const at::Tensor& m, const NsCoefficients& coefficients, int64_t steps, double eps);

// Polar Express: the Newton–Schulz loop with the per-step coefficient table above.
at::Tensor orth_polar_express(const at::Tensor& m);

// ---- Gram Newton–Schulz ---------------------------------------------------------------------
// The same polynomial iteration as orth_ns5 / orth_polar_express, carried out on the small
// symmetric Gram matrix instead of the rectangular X. On the wide orientation X0 [m, n], m ≤ n
// (tall inputs are iterated as their transpose, as ns5 does):
//
//   plain:  X_{k+1} = p_k(X_k X_kᵀ)·X_k,  p_k(t) = a_k + b_k·t + c_k·t²
//   so      X_k = Q_k·X0 with Q_k = p_{k-1}(R_{k-1})···p_0(R_0),  R_k = X_k X_kᵀ = Q_k R_0 Q_kᵀ.
//   Every R_k, p_k(R_k) and Q_k is a polynomial in R_0: they are symmetric and commute, so
//   R_{k+1} = P_k R_k P_k and Q_{k+1} = P_k Q_k with P_k = a_k I + b_k R_k + c_k R_k².
//
//   gram:   R = X0 X0ᵀ                                   2m²n
//           per step: P = aI + bR + cR²                  2m³  (R² in one fused addmm)
//                     Q = P (first step) or P·Q          2m³  (not on the first step)
//                     R = P·R·P                          4m³  (not after the last step)
//           output Q·X0                                  2m²n
//   5 steps: 4m²n + 34m³ flops, against plain 5·(4m²n + 2m³) = 20m²n + 10m³; equal at n/m = 1.5,
//   0.56x at n/m = 4 (768×3072), 0.39x at n/m = 8.
//
// A restart before step s recomputes X = Q·X0, R = X Xᵀ and sets Q = I (costs 4m²n, saves the R
// update before it and the P·Q product after it: net +4m²n − 6m³). Why restarts: Q accumulates the
// product of the step polynomials, whose eigenvalue for a tiny singular value is ∏ a_k (≈ 485 for
// ns5, ≈ 990 for Polar Express), so rounding in Q and in R is amplified by up to that factor and
// leaks into the large singular directions. Measured on ill-conditioned inputs (κ = 1e3..1e6,
// 128×512 .. 384×1536, relative difference to the plain iteration in the same dtype):
//   fp32, no restart: ≤ 1e-3 (the singular-value band identical to 3 digits); restart at 2: ≤ 3.5e-4.
//   bf16, no restart: diverges (largest singular value 2.3 .. 3e13). Restart at 2 (the published
//   choice): largest singular value 1.22 .. 1.42 where the plain loop gives 1.14 .. 1.20. Restarts
//   at 1 and 3: 1.14 .. 1.20, the plain loop's band.
// Hence the default policy gram_ns_default_restarts(): none for fp32/fp64, {1, 3} for bf16/fp16.
// CUDA fp32 with TF32 matmuls allowed rounds like fp16: a PyTorch mirror of this kernel on an H200
// (bench/gram_ns_torch_mirror.py, 1024×4096, κ = 1e6) gave σ_max 1.21 .. 1.23 without restarts where
// the plain TF32 loop gives 1.14 .. 1.20, and the plain band with {1, 3}; so that case restarts too.
// (The same run confirmed bf16 on CUDA: none 1.47 .. 8.2, {2} 1.25 .. 1.43, {1, 3} in band.)
//
// Near-square matrices are cheaper with the plain loop: when n/m < min_aspect the kernel runs the
// plain iteration (bit-identical to orth_ns5 / orth_polar_express) instead.
enum class GramCoefficients { ns5, polar_express };
std::string to_string(GramCoefficients c);
// Throws std::invalid_argument naming the valid choices (ns5, polar_express).
GramCoefficients parse_gram_coefficients(const std::string& name);

// Aspect ratio max(m, n)/min(m, n) from which gram_ns uses the Gram form (below it: the plain
// loop). Measured crossover on this 2-core CPU, fp32: see docs/BENCHMARKS.md.
constexpr double kGramNsMinAspect = 1.5;

struct GramNsOptions {
  GramCoefficients coefficients = GramCoefficients::ns5;
  // ns5 schedule only: quintic coefficients, step count and normalisation eps, as orth_ns5 takes
  // them. The polar_express schedule uses its table, 5 steps and ‖M‖_F·1.02 + 1e-6.
  NsCoefficients ns_coefficients = kNs5Coefficients;
  int64_t ns_steps = kNs5Steps;
  double ns_eps = kNs5Eps;
  // Steps s (1 ≤ s < steps, 0-based) before which to restart; unset = gram_ns_default_restarts()
  // of the compute dtype; an empty list = never.
  std::optional<std::vector<int64_t>> restarts;
  // Use the Gram form only when max(m, n)/min(m, n) ≥ min_aspect (1 = always).
  double min_aspect = kGramNsMinAspect;
};

// The restart steps used when GramNsOptions::restarts is unset, for an input like `like`: {1, 3}
// for bf16/fp16 and for fp32 on CUDA while TF32 matmuls are allowed (allowTF32CuBLAS); {} otherwise.
std::vector<int64_t> gram_ns_default_restarts(const at::Tensor& like);

// Gram Newton–Schulz; any floating dtype on any device (as orth_ns5), one matrix or a batch.
at::Tensor orth_gram_ns(const at::Tensor& m, const GramNsOptions& options = {});

// Flops of one gram_ns call on an m×n matrix with `steps` steps and the given restarts (the plain
// loop's 5·(4a²b + 2a³)-style count when the aspect ratio is below min_aspect).
double gram_ns_flops(int64_t m, int64_t n, int64_t steps = kNs5Steps, const std::vector<int64_t>& restarts = {},
                     double min_aspect = kGramNsMinAspect);

// Rank-r factors of a matrix (or batch): m ≈ U diag(S) Vᵀ with U [.., m, r], S [.., r], V [.., n, r].
struct LowRank {
  at::Tensor U, S, V;
  // U diag(S) Vᵀ, dense.
  at::Tensor reconstruct() const;
  // U Vᵀ: the polar factor of the rank-r approximation.
  at::Tensor polar() const;
};

// Randomized SVD (Halko, Martinsson, Tropp 2011): l = rank + oversample columns (capped at
// min(m, n)), Ω ~ N(0, 1) of shape [.., n, l] drawn from a CPU generator seeded with `seed`
// (so results are reproducible and identical across devices), q power iterations with
// re-orthonormalisation, Q = qr(MΩ), svd(QᵀM), top `rank` kept. fp32/fp64 only.
LowRank rsvd(const at::Tensor& m, int64_t rank, int64_t oversample, int64_t power_iters,
             uint64_t seed);

// Same algorithm with a caller-supplied sketch Ω of shape [.., n, l] (l ≥ rank).
LowRank rsvd_with_sketch(const at::Tensor& m, const at::Tensor& omega, int64_t rank,
                         int64_t power_iters);

// rsvd() of A = d + coef·f.U diag(f.S) f.Vᵀ for one matrix, without forming A: the low-rank part
// is applied through its factors. Same sketch (and seed convention) as rsvd(A, ...).
LowRank rsvd_plus_low_rank(const at::Tensor& d, const LowRank& f, double coef, int64_t rank, int64_t oversample,
                           int64_t power_iters, uint64_t seed);

// The Gaussian sketch rsvd() uses: float32 N(0,1) values from a CPU generator seeded with
// `seed` (torch.randn(n, l, generator=g, dtype=torch.float32) in Python), shape [n, l] (or
// [k, n, l] when batch > 0), cast to `like`'s dtype and device.
at::Tensor gaussian_sketch(int64_t batch, int64_t n, int64_t l, uint64_t seed,
                           const at::Tensor& like);

// Everything a caller needs to pick and parameterise an orthogonalizer.
struct OrthSpec {
  Orthogonalizer method = Orthogonalizer::ns5;
  int64_t rank = 32;         // rsvd only
  int64_t oversample = 8;    // rsvd only
  int64_t power_iters = 0;   // rsvd only
  uint64_t seed = 0;         // rsvd only
  NsCoefficients ns_coefficients = kNs5Coefficients;  // ns5 only
  int64_t ns_steps = kNs5Steps;                       // ns5 only
  double ns_eps = kNs5Eps;                            // ns5 only (and gram_ns with ns5 coefficients)
  // gram_ns only: coefficient schedule, restarts (unset = by dtype) and fallback aspect ratio;
  // see GramNsOptions. With gram_coefficients = ns5 the ns_* fields above apply.
  GramCoefficients gram_coefficients = GramCoefficients::ns5;
  std::optional<std::vector<int64_t>> gram_restarts;
  double gram_min_aspect = kGramNsMinAspect;
  // Dtype the kernel computes in; Undefined = the input's. bf16/fp16 suit ns5 and polar_express
  // only (svd and rsvd need fp32/fp64).
  at::ScalarType compute_dtype = at::ScalarType::Undefined;
};

// Dispatches on spec.method; returns a tensor of m's shape and dtype.
at::Tensor orthogonalize(const at::Tensor& m, const OrthSpec& spec);

// Orthogonalizes a list of 2-D matrices: same-shape (and same dtype/device) matrices are stacked
// and handled in one batched call. Result i corresponds to input i. For rsvd, matrix i uses the
// sketch seeded with seeds[i] (when given) so results do not depend on the grouping.
std::vector<at::Tensor> orthogonalize_many(const std::vector<at::Tensor>& mats,
                                           const OrthSpec& spec,
                                           const std::vector<uint64_t>& seeds = {});

// How orthogonalize_many spreads its work. By default every matrix is orthogonalized in this
// process (orthogonalize_many_local). A data-parallel run (limuon/dist.h) installs an executor that
// orthogonalizes this rank's share and gathers the other ranks' results, so that the optimizers
// need not know about ranks. An executor takes orthogonalize_many's arguments, must return what
// orthogonalize_many_local would (up to rounding), and is process-wide.
using OrthExecutor = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&, const OrthSpec&,
                                                           const std::vector<uint64_t>&)>;
// Installs `executor` (an empty one restores the local default) and returns the previous one.
OrthExecutor set_orth_executor(OrthExecutor executor);
std::vector<at::Tensor> orthogonalize_many_local(const std::vector<at::Tensor>& mats, const OrthSpec& spec,
                                                 const std::vector<uint64_t>& seeds = {});

// The CPU fp32/fp64 Newton–Schulz loop computes X·Xᵀ and A·A with BLAS syrk and B·X with symm
// when the build links a BLAS (LIMUON_HAVE_BLAS). These switch that path off and on (tests
// compare it with the at::mm path); available() is false when the build has no BLAS.
bool symmetric_blas_available();
void set_symmetric_blas_enabled(bool enabled);

// Floating-point operations of one call on an m×n matrix (for benchmarks): ns5/polar_express
// count 5·(4·a²·b + 2·a³) with a = min(m, n), b = max(m, n); rsvd counts 4·m·n·l + (m + n)·l²;
// gram_ns counts its default fp32 configuration, gram_ns_flops(m, n) = 4·a²·b + 34·a³ (no
// restarts), or the plain count below kGramNsMinAspect.
double orth_flops(Orthogonalizer method, int64_t m, int64_t n, int64_t rank = 32,
                  int64_t oversample = 8, int64_t power_iters = 0);

}  // namespace limuon
