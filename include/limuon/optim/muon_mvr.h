// Muon-MVR1 / MVR2 (Chang, Liu, Yuan, "On the Convergence of Muon and Beyond", arXiv 2509.15816;
// the authors' code: muon-eq optimizers/muon_variants/muon_mvr.py). Muon whose momentum is fed a
// damped STORM (MARS-style) variance-reduced gradient (ALGORITHMS.md §4). With μ = momentum,
// k = gamma·μ/(1 − μ) and cap(x) = x·min(1, max_norm/‖x‖_F):
//   c = cap(g + k·(g − g_prev))                                   (their c_t and its ‖c‖ ≤ 1 cap)
//   B ← μB + (1 − μ)c;  U = B  (nesterov: (1 − μ)c + μB)
//   W ← W·(1 − lr·wd) − lr·scale·orth(U)                          (scale 0.2·√max(m, n))
// g and g_prev are the raw gradients: the authors clip the GLOBAL gradient norm (1.0, every
// parameter) in their training loop, which belongs in the trainer (`limuon train --grad-clip 1`),
// not per matrix here. clip_inputs = true clips g and g_prev to max_norm per matrix before the
// correction (limuon's earlier form, not in the authors' code). The first step: the authors start
// from g_prev = 0, so c_0 = cap((1 + k)·g_0) (zero_prev_init, the default); zero_prev_init = false
// gives c_0 = cap(g_0).
// variant mvr1: g_prev is the previous step's gradient (one evaluation per call; state B and
//   g_{t−1}, 2·rows·cols).
// variant mvr2: g_prev = ∇f(W_{t−1}; ξ_t), the old weights on the current batch. step(closure)
//   evaluates twice without a copy of W, lagging the update one call as LiMuon does (§3.2), with
//   the same shared randomness:
//     g̃ = closure() at W_t;  W ← W_t − lr·scale·orth(U_t);  g = closure() at W_{t+1};  form U_{t+1}
//   The first call evaluates once and only forms U_0. State: B (mn), plus U pending with Nesterov.
// Defaults: the authors' LLM runs (γ 0.025, μ 0.95, no Nesterov, 0.2·√max(m, n); their wd 0.1 is
// left to the user, as for every limuon optimizer). Their CIFAR runs use no shape scale
// (adjust_lr none) and γ 0.1, μ 0.9. gamma = 0 is Muon on capped gradients (max_norm = inf: Muon).
#pragma once

#include "limuon/optim/family.h"
#include "limuon/libtorch_compat.h"

#include "limuon/optim/options.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <string>
#include <unordered_map>
#include <vector>

namespace limuon {

enum class MvrVariant { mvr1, mvr2 };
std::string to_string(MvrVariant v);
MvrVariant parse_mvr_variant(const std::string& name);

struct MuonMVROptions : public torch::optim::OptimizerCloneableOptions<MuonMVROptions> {
  MuonMVROptions(double lr = 1e-3);
  TORCH_ARG(double, lr) = 1e-3;  // an AdamW-like lr: the step is scaled by 0.2·√max(m, n) (see below)
  TORCH_ARG(double, momentum) = 0.95;
  // Not in the authors' MVR (plain EMA momentum); kept as an option.
  TORCH_ARG(bool, nesterov) = false;
  // Damping of the correction, in [0, 1].
  TORCH_ARG(double, gamma) = 0.025;
  // Frobenius-norm radius of the cap on c (and of the input clip with clip_inputs), in (0, inf];
  // inf = no cap.
  TORCH_ARG(double, max_norm) = 1.0;
  // Clip g and g_prev per matrix to max_norm before the correction (off: the authors' code).
  TORCH_ARG(bool, clip_inputs) = false;
  // First step: g_prev = 0, c_0 = cap((1 + k)·g_0) (the authors' code); false: c_0 = cap(g_0).
  TORCH_ARG(bool, zero_prev_init) = true;
  TORCH_ARG(MvrVariant, variant) = MvrVariant::mvr1;
  // Default gram_ns (ns5 on the Gram matrix, kernels/orth.h; the same map as ns5 up to rounding).
  LIMUON_MATRIX_OPTIONS(AdjustLr::match_rms_adamw, Orthogonalizer::gram_ns);

  LIMUON_OPTIONS_MEMBERS(MuonMVROptions);
};

class MuonMVR : public MuonFamily, public TwoPointStepper {
 public:
  explicit MuonMVR(std::vector<torch::optim::OptimizerParamGroup> param_groups, MuonMVROptions defaults = {});
  explicit MuonMVR(std::vector<at::Tensor> params, MuonMVROptions defaults = {});
  void load(torch::serialize::InputArchive& archive) override;
  // mvr2: the closure is required and evaluated twice per call (once on the first); returns the
  // loss at the new point. mvr1: one evaluation, as MuonFamily::step.
  at::Tensor step(LossClosure closure = nullptr) override;
  bool evaluates_twice() const override;
  bool needs_old_point_gradient() const override;
  void after_old_point_gradient() override;
  void after_new_point_gradient() override;

 protected:
  SharedOptions shared(const torch::optim::OptimizerOptions& o) const override;
  void validate(const torch::optim::OptimizerOptions& o) const override;
  std::vector<Direction> directions(const torch::optim::OptimizerOptions& o, std::vector<Item>& items) override;

 private:
  void new_point_group(size_t group);
  // Between the two evaluations of one call: g̃ per parameter, and the groups skipped.
  std::unordered_map<StateKey, at::Tensor> old_grads_;
  std::vector<bool> group_skipped_;
};

}  // namespace limuon
