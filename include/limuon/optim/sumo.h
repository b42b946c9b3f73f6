// SUMO (Refael, Smorodinsky, Tirer, Lindenbaum, "SUMO: Subspace-Aware Moment-Orthogonalization",
// arXiv 2505.24749, NeurIPS 2025), Algorithm 1 (ALGORITHMS.md §4): the moment is kept in a rank-r
// subspace of the gradient and orthogonalized there exactly; the update is full-rank. Per matrix
// G [rows, cols], working on the shorter side (rows <= cols shown; otherwise the mirror form with
// Q spanning rows of G; GaLore's convention, the paper's text writes Q on the m side of an m ≥ n W):
//   every update_interval steps (K):  Q = top-r left singular vectors of G (randomized SVD,
//                                     seeded);  M ← (Q_newᵀ Q_old)·M           (Algorithm 1, R M)
//   Ĝ = QᵀG;  M ← μ·M + Ĝ                                          [r, cols]
//   O = orth(M)                                                     (exact SVD by default)
//   Block 3 (growth_limit = γ > 0): if ‖O‖_F > γ·‖O_prev‖_F, O ← O·γ‖O_prev‖_F/‖O‖_F
//   Block 4: W ← W − lr·(G − Q(Ĝ − O)) − lr·wd·W = W − lr·(G_⊥ + Q·O) − lr·wd·W,  G_⊥ = G − QQᵀG
// Scales, our reading: the paper scales the orthogonalized update after Moonlight and by its
// "projection back scale" α; Block 4 itself has no factor. Both scales exist to bring the
// orthogonal factor's entries (O(1/√max(m, n))) to a gradient's RMS, so they multiply the Q·O part
// only, and G_⊥, a raw gradient component, enters with factor 1:
//   W ← W·(1 − lr·wd) − lr·(G_⊥ + alpha·scale(rows, cols)·Q·O)
// With alpha·scale = 1 this is Block 4 exactly. Default adjust_lr match_rms_adamw is Moonlight's
// 0.2·√max(m, n); the paper's text says √max(m, n), which is alpha = 5 here. The paper's GLUE runs
// use α = 4 (r = 4) and 2 (r = 8); its pretraining runs r = d/4 to d/2, K 100–1000 (best 250–500).
// outer = false drops G_⊥ (limuon's earlier rank-r variant: W ← W·(1 − lr·wd) − lr·alpha·scale·Q·O).
// The limiter is optional in the paper and off by default (γ = 1.1 there); with the exact SVD
// ‖O‖_F = √rank(M) is constant, so it matters with an approximate orthogonalizer. State: Q and M,
// (rows + cols)·r, plus one scalar with the limiter. At full rank G_⊥ = 0 and, with
// update_interval = 1, this is Muon (no Nesterov) with the SVD orthogonalizer.
#pragma once

#include "limuon/optim/family.h"

#include "limuon/optim/options.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <vector>

namespace limuon {

struct SumoOptions : public torch::optim::OptimizerCloneableOptions<SumoOptions> {
  SumoOptions(double lr = 1e-3);
  TORCH_ARG(double, lr) = 1e-3;  // an AdamW-like lr: the step is scaled by 0.2·√max(m, n) (see below)
  TORCH_ARG(double, momentum) = 0.95;
  // K: steps between subspace refreshes, >= 1.
  TORCH_ARG(int64_t, update_interval) = 200;
  // Scale of the subspace update (the paper's α, "projection back scale"), > 0.
  TORCH_ARG(double, alpha) = 1.0;
  // Include the out-of-subspace gradient G_⊥ (Block 4); false: the rank-r update Q·O only.
  TORCH_ARG(bool, outer) = true;
  // Block 3's γ: 0 = off (the default), else >= 1 (the paper: 1.1).
  TORCH_ARG(double, growth_limit) = 0.0;
  // rank/oversample/power_iters: the randomized SVD of the subspace basis (and of rsvd).
  LIMUON_MATRIX_OPTIONS(AdjustLr::match_rms_adamw, Orthogonalizer::svd);

  LIMUON_OPTIONS_MEMBERS(SumoOptions);
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
