// MiMuon: Muon that falls back to the plain momentum step when the momentum's singular values
// crowd together (ALGORITHMS.md §4). With U the (Nesterov) momentum of limuon::Muon and
// U = P Σ Qᵀ its exact thin SVD:
//   gap = min over consecutive distinct non-zero σ of (σ_i − σ_{i+1}) / σ_max
//   gap > tau:  W ← W·(1 − lr·wd) − lr·scale(rows, cols)·P Qᵀ      (the Muon step)
//   otherwise:  W ← W·(1 − lr·wd) − lr·U                           (the momentum step, unscaled)
// The gap is taken relative to σ_max so that tau does not depend on the gradient's scale (the
// one-line source leaves this open). tau = 0 is Muon with the exact SVD orthogonalizer.
// The orthogonalizer must be svd: the test needs the singular values.
#pragma once

#include "limuon/family.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <vector>

namespace limuon {

struct MiMuonOptions : public torch::optim::OptimizerCloneableOptions<MiMuonOptions> {
  MiMuonOptions(double lr = 0.02);
  TORCH_ARG(double, lr) = 0.02;
  TORCH_ARG(double, momentum) = 0.95;
  TORCH_ARG(bool, nesterov) = true;
  // Relative spectral-gap threshold, >= 0.
  TORCH_ARG(double, tau) = 1e-3;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(AdjustLr, adjust_lr) = AdjustLr::original;
  TORCH_ARG(Orthogonalizer, orthogonalizer) = Orthogonalizer::svd;
  // Randomized SVD settings (unused: MiMuon needs the exact SVD).
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
  friend bool operator==(const MiMuonOptions& lhs, const MiMuonOptions& rhs);
};

class MiMuon : public MuonFamily {
 public:
  explicit MiMuon(std::vector<torch::optim::OptimizerParamGroup> param_groups, MiMuonOptions defaults = {});
  explicit MiMuon(std::vector<at::Tensor> params, MiMuonOptions defaults = {});
  void load(torch::serialize::InputArchive& archive) override;
  // Matrix updates that took the momentum step (gap <= tau) and the Muon step, so far.
  int64_t momentum_steps() const { return momentum_steps_; }
  int64_t muon_steps() const { return muon_steps_; }

 protected:
  SharedOptions shared(const torch::optim::OptimizerOptions& o) const override;
  void validate(const torch::optim::OptimizerOptions& o) const override;
  std::vector<Direction> directions(const torch::optim::OptimizerOptions& o, std::vector<Item>& items) override;

 private:
  int64_t momentum_steps_ = 0, muon_steps_ = 0;
};

}  // namespace limuon
