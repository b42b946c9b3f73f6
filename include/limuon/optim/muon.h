// Muon (Keller Jordan 2024): EMA momentum, optional Nesterov, orthogonalized update, as a native
// torch::optim::Optimizer. Spec: ALGORITHMS.md §2.
//
//   B ← m·B + (1 − m)·G                  m = momentum (0.95)
//   U = (1 − m)·G + m·B  (nesterov)  or  U = B
//   W ← W·(1 − lr·wd) − lr·scale(rows, cols)·orth(U)
//
// The same recursion as torch.optim.Muon (PyTorch ≥ 2.9); its ns_coefficients, ns_steps and eps
// are options here too. What differs: torch's Newton–Schulz always runs in bf16 and normalises by
// max(‖U‖_F, eps), ours runs in the momentum's dtype and normalises by ‖U‖_F + eps; torch's
// defaults are lr 1e-3 and weight_decay 0.1.
//
// N-D weights are orthogonalized as [out, rest] matrices. Parameters with fewer than two
// dimensions are rejected: route them to AdamW with limuon::HybridOptimizer.
#pragma once

#include "limuon/optim/common.h"
#include "limuon/kernels/orth.h"

#include "limuon/optim/options.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <utility>
#include <vector>

namespace limuon {

struct MuonOptions : public torch::optim::OptimizerCloneableOptions<MuonOptions> {
  MuonOptions(double lr = 0.02);
  TORCH_ARG(double, lr) = 0.02;
  // EMA coefficient of the momentum, in [0, 1). Equivalent to LiMuon's beta = 1 − momentum.
  TORCH_ARG(double, momentum) = 0.95;
  TORCH_ARG(bool, nesterov) = true;
  // ns5 and gram_ns (its ns5 schedule): quintic coefficients (a, b, c), iterations in [1, 100], and
  // the eps of the normalisation U / (‖U‖_F + eps), eps > 0.
  TORCH_ARG(NsCoefficients, ns_coefficients) = kNs5Coefficients;
  TORCH_ARG(int64_t, ns_steps) = kNs5Steps;
  TORCH_ARG(double, eps) = kNs5Eps;
  // rank/oversample/power_iters: the rsvd orthogonalizer only. Default gram_ns: the ns5 iteration
  // carried out on the Gram matrix (kernels/orth.h), the same map as ns5 up to rounding and faster
  // from aspect ratio 1.5 on (below it, ns5 bit for bit).
  LIMUON_MATRIX_OPTIONS(AdjustLr::original, Orthogonalizer::gram_ns);

  LIMUON_OPTIONS_MEMBERS(MuonOptions);
};

struct MuonParamState : public torch::optim::OptimizerCloneableParamState<MuonParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(at::Tensor, momentum_buffer);

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  friend bool operator==(const MuonParamState& lhs, const MuonParamState& rhs);
};

class Muon : public torch::optim::Optimizer {
 public:
  explicit Muon(std::vector<torch::optim::OptimizerParamGroup> param_groups, MuonOptions defaults = {});
  explicit Muon(std::vector<at::Tensor> params, MuonOptions defaults = {});

  // The closure, when given, is evaluated once (with gradients enabled) before the update.
  at::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  // Parameter-group steps skipped because a gradient was NaN/Inf (policy `skip`).
  int64_t nonfinite_skips() const { return nonfinite_skips_; }
  // Bytes held in persistent per-parameter state.
  int64_t state_bytes() const;

 private:
  void check_params() const;
  int64_t nonfinite_skips_ = 0;
};

// Builds the OrthSpec an optimizer's options describe.
template <class Options>
OrthSpec orth_spec_of(const Options& o) {
  OrthSpec s;
  s.method = o.orthogonalizer();
  s.rank = o.rank();
  s.oversample = o.oversample();
  s.power_iters = o.power_iters();
  s.seed = o.seed();
  if constexpr (requires { o.ns_coefficients(); o.ns_steps(); o.eps(); }) {
    s.ns_coefficients = o.ns_coefficients();
    s.ns_steps = o.ns_steps();
    s.ns_eps = o.eps();
  }
  return s;
}

}  // namespace limuon
