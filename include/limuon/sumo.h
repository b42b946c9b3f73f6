// SUMO ("SUMO: Subspace-Aware Moment-Orthogonalization", 2025): momentum kept in a rank-r
// subspace of the gradient and orthogonalized there exactly (ALGORITHMS.md §4). Per matrix
// G [rows, cols], working on the shorter side (rows <= cols shown; otherwise transposed roles):
//   every update_interval steps: Q = top-r left singular vectors of G (randomized SVD, seeded);
//                                M ← Q_newᵀ Q_old M (the moment rotated into the new basis)
//   M ← μ·M + Qᵀ G                         [r, cols]
//   W ← W·(1 − lr·wd) − lr·alpha·scale(rows, cols)·Q·orth(M)
// orth defaults to the exact SVD (M is small). State: Q and M, (rows + cols)·r. With r at full
// rank and update_interval = 1 this is Muon (no Nesterov) with the SVD orthogonalizer.
#pragma once

#include "limuon/family.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <vector>

namespace limuon {

struct SumoOptions : public torch::optim::OptimizerCloneableOptions<SumoOptions> {
  SumoOptions(double lr = 0.02);
  TORCH_ARG(double, lr) = 0.02;
  TORCH_ARG(double, momentum) = 0.95;
  // K: steps between subspace refreshes, >= 1.
  TORCH_ARG(int64_t, update_interval) = 200;
  // Scale of the subspace update (the paper's α), > 0.
  TORCH_ARG(double, alpha) = 1.0;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(AdjustLr, adjust_lr) = AdjustLr::original;
  TORCH_ARG(Orthogonalizer, orthogonalizer) = Orthogonalizer::svd;
  // Randomized SVD settings (the subspace basis; and the rsvd orthogonalizer).
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
  friend bool operator==(const SumoOptions& lhs, const SumoOptions& rhs);
};

class Sumo : public MuonFamily {
 public:
  explicit Sumo(std::vector<torch::optim::OptimizerParamGroup> param_groups, SumoOptions defaults = {});
  explicit Sumo(std::vector<at::Tensor> params, SumoOptions defaults = {});
  void load(torch::serialize::InputArchive& archive) override;

 protected:
  SharedOptions shared(const torch::optim::OptimizerOptions& o) const override;
  void validate(const torch::optim::OptimizerOptions& o) const override;
  std::vector<Direction> directions(const torch::optim::OptimizerOptions& o, std::vector<Item>& items) override;
  at::Tensor finish(const torch::optim::OptimizerOptions& o, const Item& item, const at::Tensor& input,
                    const at::Tensor& orthogonalized, Direction& d) override;
};

}  // namespace limuon
