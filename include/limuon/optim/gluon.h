// Gluon (Riabinin, Shulgin, Gruntkowska, Richtárik, "Gluon: Making Muon & Scion Great Again",
// arXiv 2505.13416): layer-wise LMO steps on the spectral-norm ball under a layer-wise (L0, L1)
// smoothness model (ALGORITHMS.md §4). Two forms, as in the paper:
// mode stochastic (Algorithm 1 / Theorem 2; the training default), k = 0, 1, ... the matrix's step:
//   β_k = 1 − (k + 1)^−½  (beta_schedule; so M_0 = G_0), or the constant `momentum`
//   M ← β_k·M + (1 − β_k)·G;   U = M  (nesterov: (1 − β_k)G + β_k·M; not in the paper)
//   W ← W·(1 − lr·wd) − lr·(k + 1)^−¾·scale(rows, cols)·orth(U)   (step_decay; off: no (k+1)^−¾,
//                                                                   for an external lr schedule)
// mode deterministic (Algorithm 2 / Theorem 1), on the CURRENT gradient, no momentum:
//   ‖G‖_dual = s·‖G‖_*  (exact nuclear norm, from the singular values), s = scale(rows, cols)
//   t_k = ‖G‖_dual / (l0 + l1·‖G‖_dual)
//   W ← W·(1 − lr·wd) − lr·t_k·s·orth(G)                 (lr = 1 is the paper's rule)
// With the svd orthogonalizer orth(G) is the exact LMO direction U Vᵀ.
// s: adjust_lr spectral, s = √(m/n), is unScion's norm √(n/m)‖·‖_{2→2} for an m×n weight (fan-out
// × fan-in), whose dual is √(m/n)‖·‖_* and whose LMO step is √(m/n)·U Vᵀ; the paper measures its
// constants with these norms. Defaults from the paper's NanoGPT-124M/FineWeb measurements: L0 ≈ 0,
// L1 ≈ 70 for the transformer blocks; so t ≈ 1/L1 ≈ 0.014 (against a tuned 0.018), which is the
// default lr of the stochastic form. In deterministic mode use lr = 1 (l0 = 0 then gives the
// constant step 1/l1: Muon without momentum). The paper does not claim to beat Muon.
// Out of scope: CE-Gluon (arXiv 2604.10689: compression, SARAH / MVR estimators, federated training).
#pragma once

#include "limuon/optim/family.h"

#include "limuon/optim/options.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <string>
#include <vector>

namespace limuon {

enum class GluonMode { stochastic, deterministic };
std::string to_string(GluonMode m);
GluonMode parse_gluon_mode(const std::string& name);

struct GluonOptions : public torch::optim::OptimizerCloneableOptions<GluonOptions> {
  GluonOptions(double lr = 0.014);
  TORCH_ARG(double, lr) = 0.014;
  TORCH_ARG(GluonMode, mode) = GluonMode::stochastic;
  // Stochastic mode: β_k = 1 − (k + 1)^−½ (true) or the constant `momentum` (false).
  TORCH_ARG(bool, beta_schedule) = true;
  TORCH_ARG(double, momentum) = 0.95;
  TORCH_ARG(bool, nesterov) = false;
  // Stochastic mode: the step's (k + 1)^−¾ decay.
  TORCH_ARG(bool, step_decay) = true;
  // Deterministic mode: (L0, L1) smoothness constants, both >= 0 and not both 0.
  TORCH_ARG(double, l0) = 0.0;
  TORCH_ARG(double, l1) = 70.0;
  // Default gram_ns (ns5 on the Gram matrix, kernels/orth.h; the same map as ns5 up to rounding).
  LIMUON_MATRIX_OPTIONS(AdjustLr::spectral, Orthogonalizer::gram_ns);

  LIMUON_OPTIONS_MEMBERS(GluonOptions);
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
};

}  // namespace limuon
