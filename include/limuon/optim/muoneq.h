// MuonEq (Chang et al., arXiv 2603.28254, 2026; the authors' code: muon-eq
// optimizers/muon_variants/muoneq.py): Muon with the momentum equilibrated before
// orthogonalization (ALGORITHMS.md §4).
//   B ← μB + (1 − μ)G;  U = (1 − μ)G + μB (nesterov) or B
//   row factors r_i = (Σ_j U_ij² + eps)^exponent, column factors c_j = (Σ_i U_ij² + eps)^exponent
//   E(U) = U·r (rows, the paper's R and the default), U·c (cols, C) or U·r·c (both, RC; both
//   factors from the same U)
//   W ← W·(1 − lr·wd) − lr·scale(rows, cols)·orth(E(U))            (scale 0.2·√max(m, n))
// exponent: the authors' `rowcol_scale_exponent`, −½ by default (rows: unit rows; both: divide by
// ‖row‖·‖col‖); −¼ is the alternative their docstring names (and limuon's earlier `both`). eps: the
// authors add one, whose value we could not read; 1e-12 is our choice, small against the squared
// row norms of any gradient momentum (our EMA momentum is (1 − μ)× their SGD-form buffer; that
// factor changes nothing else after equilibration and NS). phase > 0: `both` switches to `rows`
// from step `phase` on (steps counted from 0; the authors' optional phase); 0 = never.
// Their LLM runs: μ 0.95, Nesterov, wd 0.1 (the default wd here stays 0, as for every limuon
// optimizer), global gradient clip 1.0, lr 2e-4 to 5e-3 with this scale. With equilibrate = none
// this is limuon::Muon bit for bit. Extra memory: O(rows + cols), transient.
#pragma once

#include "limuon/optim/family.h"

#include "limuon/optim/options.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <vector>

namespace limuon {

struct MuonEqOptions : public torch::optim::OptimizerCloneableOptions<MuonEqOptions> {
  MuonEqOptions(double lr = 1e-3);
  TORCH_ARG(double, lr) = 1e-3;  // an AdamW-like lr: the step is scaled by 0.2·√max(m, n) (see below)
  TORCH_ARG(double, momentum) = 0.95;
  TORCH_ARG(bool, nesterov) = true;
  TORCH_ARG(Equilibrate, equilibrate) = Equilibrate::rows;
  // Exponent of the squared row/column norms, < 0 (the authors: −½; −¼ the alternative).
  TORCH_ARG(double, exponent) = -0.5;
  // Added to the squared norms, >= 0 (our choice; the authors' value is unknown).
  TORCH_ARG(double, eps) = 1e-12;
  // Step from which `both` acts as `rows`; 0 = never.
  TORCH_ARG(int64_t, phase) = 0;
  // Default gram_ns (ns5 on the Gram matrix, kernels/orth.h; the same map as ns5 up to rounding).
  LIMUON_MATRIX_OPTIONS(AdjustLr::match_rms_adamw, Orthogonalizer::gram_ns);

  LIMUON_OPTIONS_MEMBERS(MuonEqOptions);
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
