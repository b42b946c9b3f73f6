// MuonEq: Muon with the momentum equilibrated before orthogonalization (ALGORITHMS.md §4).
//   B ← μB + (1 − μ)G;  U = (1 − μ)G + μB (nesterov) or B
//   W ← W·(1 − lr·wd) − lr·scale(rows, cols)·orth(E(U))
// E scales the rows (default), the columns, or both (D_r^-½ U D_c^-½) to unit L2 norm; with
// equilibrate = none this is limuon::Muon bit for bit. Extra memory: O(rows + cols), transient.
#pragma once

#include "limuon/family.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <vector>

namespace limuon {

struct MuonEqOptions : public torch::optim::OptimizerCloneableOptions<MuonEqOptions> {
  MuonEqOptions(double lr = 0.02);
  TORCH_ARG(double, lr) = 0.02;
  TORCH_ARG(double, momentum) = 0.95;
  TORCH_ARG(bool, nesterov) = true;
  TORCH_ARG(Equilibrate, equilibrate) = Equilibrate::rows;
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
  friend bool operator==(const MuonEqOptions& lhs, const MuonEqOptions& rhs);
};

class MuonEq : public MuonFamily {
 public:
  explicit MuonEq(std::vector<torch::optim::OptimizerParamGroup> param_groups, MuonEqOptions defaults = {});
  explicit MuonEq(std::vector<at::Tensor> params, MuonEqOptions defaults = {});
  void load(torch::serialize::InputArchive& archive) override;

 protected:
  SharedOptions shared(const torch::optim::OptimizerOptions& o) const override;
  void validate(const torch::optim::OptimizerOptions& o) const override;
  std::vector<Direction> directions(const torch::optim::OptimizerOptions& o, std::vector<Item>& items) override;
};

}  // namespace limuon
