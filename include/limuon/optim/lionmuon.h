// LionMuon (arXiv 2605.19811; the official code src/optim/lion_muon.py): Lion's two-coefficient
// momentum with a Muon step every `period` steps and Lion's sign step in between (ALGORITHMS.md §4,
// the paper's Algorithm 1). One buffer m per matrix:
//   u = β1·m + (1 − β1)·g
//   step % period == 0:  W ← W·(1 − lr·wd) − lr·scale(rows, cols)·orth(u)   (scale: match_rms_adamw)
//   otherwise:           W ← W·(1 − lr'·wd) − lr'·sign(u),  lr' = lr·sign_lr_ratio
//   m = β2·m + (1 − β2)·g
// sign_lr_ratio = η_L/η_M: 0.05 in the paper's tuned P = 2 runs at 124M (5e-5/1e-3) and 355M
// (3.75e-5/7.5e-4); ≈ 0.003 at 720M (1e-5/3e-3). Compare it with Muon at equal FLOPs, not equal
// steps (the sign steps cost no orthogonalization).
// With period = 1 and β1 = β2 = μ this is Muon (momentum μ, no Nesterov), bit for bit.
#pragma once

#include "limuon/optim/family.h"

#include "limuon/optim/options.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <vector>

namespace limuon {

struct LionMuonOptions : public torch::optim::OptimizerCloneableOptions<LionMuonOptions> {
  LionMuonOptions(double lr = 1e-3);
  TORCH_ARG(double, lr) = 1e-3;  // an AdamW-like lr: the step is scaled by 0.2·√max(m, n) (see below)
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.99;
  // Every period-th step (counting from the first) orthogonalizes; the others take sign steps.
  TORCH_ARG(int64_t, period) = 2;
  // The sign steps' lr as a fraction of lr, in (0, inf).
  TORCH_ARG(double, sign_lr_ratio) = 0.05;
  // Default gram_ns (ns5 on the Gram matrix, kernels/orth.h; the same map as ns5 up to rounding).
  LIMUON_MATRIX_OPTIONS(AdjustLr::match_rms_adamw, Orthogonalizer::gram_ns);

  LIMUON_OPTIONS_MEMBERS(LionMuonOptions);
};

class LionMuon : public MuonFamily {
 public:
  explicit LionMuon(std::vector<torch::optim::OptimizerParamGroup> param_groups, LionMuonOptions defaults = {});
  explicit LionMuon(std::vector<at::Tensor> params, LionMuonOptions defaults = {});
  void load(torch::serialize::InputArchive& archive) override;

 protected:
  SharedOptions shared(const torch::optim::OptimizerOptions& o) const override;
  void validate(const torch::optim::OptimizerOptions& o) const override;
  std::vector<Direction> directions(const torch::optim::OptimizerOptions& o, std::vector<Item>& items) override;
};

}  // namespace limuon
