// Gluon (Riabinin et al. 2025, "Gluon: Making Muon & Scion Great Again"):
// a layer-wise step on the spectral-norm ball whose radius comes from the layer's (L0, L1)
// smoothness model (ALGORITHMS.md §4). With U the (Nesterov) momentum of limuon::Muon:
//   O = orth(U);  ‖U‖_* ≈ ⟨O, U⟩ (the nuclear norm, exact with the svd orthogonalizer)
//   t = ‖U‖_* / (l0 + l1·‖U‖_*)
//   W ← W·(1 − lr·wd) − lr·t·scale(rows, cols)·O
// lr = 1 is the paper's rule (lr is kept as a multiplier so that schedules apply; the default
// 0.02 matches the family). adjust_lr defaults to
// none (the spectral norm of the step is then lr·t). l0 = 0, l1 = 1 gives t = 1: Muon.
#pragma once

#include "limuon/family.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <vector>

namespace limuon {

struct GluonOptions : public torch::optim::OptimizerCloneableOptions<GluonOptions> {
  GluonOptions(double lr = 0.02);
  TORCH_ARG(double, lr) = 0.02;
  TORCH_ARG(double, momentum) = 0.95;
  TORCH_ARG(bool, nesterov) = true;
  // (L0, L1) smoothness constants, both >= 0 and not both 0.
  TORCH_ARG(double, l0) = 1.0;
  TORCH_ARG(double, l1) = 1.0;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(AdjustLr, adjust_lr) = AdjustLr::none;
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
  friend bool operator==(const GluonOptions& lhs, const GluonOptions& rhs);
};

class Gluon : public MuonFamily {
 public:
  explicit Gluon(std::vector<torch::optim::OptimizerParamGroup> param_groups, GluonOptions defaults = {});
  explicit Gluon(std::vector<at::Tensor> params, GluonOptions defaults = {});
  void load(torch::serialize::InputArchive& archive) override;

 protected:
  SharedOptions shared(const torch::optim::OptimizerOptions& o) const override;
  void validate(const torch::optim::OptimizerOptions& o) const override;
  std::vector<Direction> directions(const torch::optim::OptimizerOptions& o, std::vector<Item>& items) override;
  at::Tensor finish(const torch::optim::OptimizerOptions& o, const Item& item, const at::Tensor& input,
                    const at::Tensor& orthogonalized, Direction& d) override;
};

}  // namespace limuon
