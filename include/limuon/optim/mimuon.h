// MiMuon (Huang, Luo, Chen, arXiv 2605.19619; the rule as a secondary source transcribes it, the
// primary algorithm text was not available): Muon that falls back to the plain momentum step when
// the momentum's singular values crowd together (ALGORITHMS.md §4). With μ = momentum (the
// transcription's M_t = βg_t + (1 − β)M_{t−1}, β = 1 − μ) and M_t = PΣQᵀ its exact thin SVD:
//   M_t = μ·M_{t−1} + (1 − μ)·g_t                   (nesterov: U = (1 − μ)g_t + μM_t; default off)
//   gap = min over pairs i ≠ j of the non-zero σ of |σ_i − σ_j|   (absolute; repeated values give 0)
//   gap ≥ tau:  W ← W·(1 − lr·wd) − lr·scale(rows, cols)·P Qᵀ     (the Muon step)
//   otherwise:  W ← W·(1 − lr·wd) − lr·M_t                        (the momentum step, unscaled)
// The transcription has no shape scale: adjust_lr defaults to none. tau is not published: the
// gap is in the units of the momentum (it scales with the gradient), so tau must be tuned per
// problem. Our default 1e-6 falls back only when two singular values nearly coincide; on a small
// MLP (out/family/mimuon_tau_sweep.py) it kept 99.5% Muon steps, 1e-4 about half (README). The
// transcription remarks that the SVD "is approximated by Newton–Schulz in practice"; the gap needs
// the singular values, so the orthogonalizer here must be svd. tau = 0 is Muon with the exact SVD
// orthogonalizer (a zero momentum takes the momentum step, i.e. none).
#pragma once

#include "limuon/optim/family.h"

#include "limuon/optim/options.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <vector>

namespace limuon {

struct MiMuonOptions : public torch::optim::OptimizerCloneableOptions<MiMuonOptions> {
  MiMuonOptions(double lr = 0.02);
  TORCH_ARG(double, lr) = 0.02;
  TORCH_ARG(double, momentum) = 0.95;
  TORCH_ARG(bool, nesterov) = false;
  // Absolute spectral-gap threshold, >= 0 (not published; our choice).
  TORCH_ARG(double, tau) = 1e-6;
  // rank/oversample/power_iters unused: MiMuon needs the exact SVD.
  LIMUON_MATRIX_OPTIONS(AdjustLr::none, Orthogonalizer::svd);

  LIMUON_OPTIONS_MEMBERS(MiMuonOptions);
};

class MiMuon : public MuonFamily {
 public:
  explicit MiMuon(std::vector<torch::optim::OptimizerParamGroup> param_groups, MiMuonOptions defaults = {});
  explicit MiMuon(std::vector<at::Tensor> params, MiMuonOptions defaults = {});
  void load(torch::serialize::InputArchive& archive) override;
  // Matrix updates that took the momentum step (gap < tau) and the Muon step (gap ≥ tau), so far.
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
