// Muon-MVR / Muon++: Muon whose momentum is fed a clipped STORM (MARS-style) variance-reduced
// gradient (ALGORITHMS.md §4). With μ = momentum and clip(x) = x·min(1, max_norm/‖x‖_F):
//   c = clip(g) + gamma·(μ/(1 − μ))·(clip(g) − clip(g_prev)),  then ‖c‖_F capped at max_norm
//   B ← μB + (1 − μ)c;  U = (1 − μ)c + μB (nesterov) or B;  W ← W·(1 − lr·wd) − lr·scale·orth(U)
// variant mvr1: g_prev is the previous step's gradient (one evaluation per call; state B and
//   clip(g_{t−1}), 2·rows·cols).
// variant mvr2: g_prev is the gradient at the old weights on the current batch. step(closure)
//   evaluates twice without a copy of W, lagging the update one call as LiMuon does (§3.2):
//     g̃ = closure() at W_t;  W ← W_t − lr·scale·orth(U_t);  g = closure() at W_{t+1};  form U_{t+1}
//   The first call evaluates once and only forms U_0. State: B, plus U pending with Nesterov.
// gamma = 0 is Muon on clipped gradients (and with max_norm = inf, Muon).
#pragma once

#include "limuon/family.h"
#include "limuon/libtorch_compat.h"

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
  MuonMVROptions(double lr = 0.02);
  TORCH_ARG(double, lr) = 0.02;
  TORCH_ARG(double, momentum) = 0.95;
  TORCH_ARG(bool, nesterov) = true;
  // Damping of the correction, in [0, 1].
  TORCH_ARG(double, gamma) = 0.025;
  // Frobenius-norm radius of the gradient clip and of the cap on c, in (0, inf]; inf = no clip.
  TORCH_ARG(double, max_norm) = 1.0;
  TORCH_ARG(MvrVariant, variant) = MvrVariant::mvr1;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(AdjustLr, adjust_lr) = AdjustLr::original;
  TORCH_ARG(Orthogonalizer, orthogonalizer) = Orthogonalizer::ns5;
  // Randomized SVD settings (rsvd orthogonalizer only).
  TORCH_ARG(int64_t, rank) = 32;
  TORCH_ARG(int64_t, oversample) = 8;
  TORCH_ARG(int64_t, power_iters) = 0;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(NonFinitePolicy, nonfinite) = NonFinitePolicy::skip;

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override;
  void set_lr(const double lr) override;
  // Throws std::invalid_argument naming the option and its valid range.
  void validate() const;
  friend bool operator==(const MuonMVROptions& lhs, const MuonMVROptions& rhs);
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
  // Between the two evaluations of one call: clip(g̃) per parameter, and the groups skipped.
  std::unordered_map<StateKey, at::Tensor> old_grads_;
  std::vector<bool> group_skipped_;
};

}  // namespace limuon
