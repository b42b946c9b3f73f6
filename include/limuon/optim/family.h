// The shared skeleton of the rest of the Muon family (ALGORITHMS.md §4: Muon-MVR, SUMO, MuonEq,
// LionMuon, MiMuon, Gluon): one typed per-parameter state, the per-group step (state lookup,
// non-finite policy, batched orthogonalization, decoupled update), save/load, and the stateless
// pieces the methods add to Muon. Each optimizer class only says how its direction is formed.
#pragma once

#include "limuon/optim/common.h"
#include "limuon/kernels/orth.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace limuon {

// ---------------------------------------------------------------- stateless pieces

// x·min(1, max_norm/‖x‖_F): the matrix scaled back onto the Frobenius ball of radius max_norm
// (returned as is when inside it, or when max_norm is +inf).
at::Tensor clip_norm(const at::Tensor& x, double max_norm);

// MuonEq's equilibration of a matrix U before orthogonalization (arXiv 2603.28254, the authors'
// `rowcol_scale_exponent`): row factors r_i = (Σ_j U_ij² + eps)^exponent and column factors
// c_j = (Σ_i U_ij² + eps)^exponent, both computed from the same U;
//   rows  U_ij·r_i          (exponent −½: every row scaled to unit L2 norm, the paper's R)
//   cols  U_ij·c_j          (C)
//   both  U_ij·r_i·c_j      (RC; exponent −½ divides by ‖row‖·‖col‖, −¼ by their square roots)
// Zero rows/columns stay zero (the sum is floored at 1e-30 when eps = 0).
enum class Equilibrate { none, rows, cols, both };
std::string to_string(Equilibrate e);
Equilibrate parse_equilibrate(const std::string& name);
at::Tensor equilibrate(const at::Tensor& m, Equilibrate mode, double exponent = -0.5, double eps = 0.0);

// MiMuon's spectral gap (arXiv 2605.19619): the minimum over all pairs i ≠ j of the non-zero
// singular values of |σ_i − σ_j|, absolute (repeated values give 0); +inf when fewer than two
// non-zero values exist. Values at or below rtol·σ_max count as zero (callers pass
// max(rows, cols)·machine epsilon, the numerical-rank tolerance of torch.linalg.matrix_rank).
double min_spectral_gap(const at::Tensor& singular_values, double rtol);

// ---------------------------------------------------------------- state

// One state type for the family; each method uses the tensors it needs and leaves the rest
// undefined (all are [rows, cols] of the matrix view unless noted).
struct FamilyParamState : public torch::optim::OptimizerCloneableParamState<FamilyParamState> {
  // Updates this parameter took (drives the sketch seeds and LionMuon's period, SUMO's refresh).
  TORCH_ARG(int64_t, step) = 0;
  // The momentum buffer; SUMO: the moment inside the subspace ([r, cols] or [rows, r]).
  TORCH_ARG(at::Tensor, momentum);
  // Muon-MVR1: g_{t−1} (clip(g_{t−1}) with clip_inputs).
  TORCH_ARG(at::Tensor, prev_grad);
  // Muon-MVR2 with Nesterov: the update input U_t, orthogonalized and applied by the next call.
  TORCH_ARG(at::Tensor, pending);
  // SUMO: orthonormal basis Q of the gradient subspace ([rows, r] or [cols, r]).
  TORCH_ARG(at::Tensor, basis);
  // SUMO's norm-growth limiter: ‖O_{t−1}‖_F of the last (limited) subspace direction; 0 = none yet.
  // Archives written before it existed load with 0.
  TORCH_ARG(double, last_norm) = 0.0;

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  friend bool operator==(const FamilyParamState& lhs, const FamilyParamState& rhs);
  int64_t bytes() const;
  // Every defined tensor with its name (checks for NaN, state reports).
  std::vector<std::pair<std::string, at::Tensor>> tensors() const;
};

// ---------------------------------------------------------------- the skeleton

// What every family member's options carry (one vocabulary, STYLE.md), read out of its own type.
struct SharedOptions {
  double lr = 0, weight_decay = 0;
  AdjustLr adjust_lr = AdjustLr::original;
  OrthSpec orth;
  uint64_t seed = 0;
  NonFinitePolicy nonfinite = NonFinitePolicy::skip;
};

template <class Options>
SharedOptions shared_options_of(const Options& o) {
  SharedOptions s;
  s.lr = o.lr();
  s.weight_decay = o.weight_decay();
  s.adjust_lr = o.adjust_lr();
  s.orth.method = o.orthogonalizer();
  s.orth.rank = o.rank();
  s.orth.oversample = o.oversample();
  s.orth.power_iters = o.power_iters();
  s.orth.seed = o.seed();
  s.seed = o.seed();
  s.nonfinite = o.nonfinite();
  return s;
}

class MuonFamily : public torch::optim::Optimizer {
 public:
  // The closure, when given, is evaluated once (with gradients enabled) before the update
  // (Muon-MVR2 overrides this with its two-evaluation protocol).
  at::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;

  // Parameter-group steps skipped because a gradient was NaN/Inf (policy `skip`).
  int64_t nonfinite_skips() const { return nonfinite_skips_; }
  // Bytes held in persistent per-parameter state.
  int64_t state_bytes() const;
  // Closure evaluations made by step() so far.
  int64_t evaluations() const { return evaluations_; }
  // "MuonEq", "SUMO", ...: the name used in error messages.
  const std::string& name() const { return name_; }

 protected:
  MuonFamily(std::vector<torch::optim::OptimizerParamGroup> param_groups,
             std::unique_ptr<torch::optim::OptimizerOptions> defaults, std::string kind, std::string name);

  struct Item {
    at::Tensor param;
    FamilyParamState* state = nullptr;
    int64_t index = 0;  // position in the whole optimizer (sketch seeds)
    at::Tensor grad;    // the gradient as a [rows, cols] matrix in the state dtype
    int64_t rows = 0, cols = 0;
  };

  // One matrix's update. Either `to_orth` is set (orthogonalized together with the group's other
  // matrices, then passed through finish()) or `direction` is final. The applied step is
  //   W ← W·(1 − lr·lr_factor·wd) − lr·lr_factor·scale·direction.
  struct Direction {
    at::Tensor to_orth;
    at::Tensor direction;
    double lr_factor = 1.0;
    double scale = 1.0;
  };

  virtual SharedOptions shared(const torch::optim::OptimizerOptions& o) const = 0;
  // Throws std::invalid_argument naming the option and its range.
  virtual void validate(const torch::optim::OptimizerOptions& o) const = 0;
  // Updates the state of every item of a group and says how each matrix moves.
  virtual std::vector<Direction> directions(const torch::optim::OptimizerOptions& o, std::vector<Item>& items) = 0;
  // Turns the orthogonalized input into the applied direction (SUMO maps it back from the
  // subspace, Gluon sets its step size); the default keeps it.
  virtual at::Tensor finish(const torch::optim::OptimizerOptions& o, const Item& item, const at::Tensor& input,
                            const at::Tensor& orthogonalized, Direction& d) {
    return orthogonalized;
  }

  // Called by the derived constructor (validate() is virtual).
  void validate_all() const;
  // Items of a group that have a gradient; state created when asked.
  std::vector<Item> group_items(size_t group, bool create_state);
  // False (and counted) when a gradient is NaN/Inf under `skip`; throws under `raise`.
  bool group_finite_or_raise(const std::vector<Item>& items, const SharedOptions& s);
  // The whole single-evaluation step of one group.
  void step_group(size_t group);
  // Orthogonalizes the `to_orth` inputs (batched, seeded per parameter) and applies every update.
  void apply_directions(const SharedOptions& s, const torch::optim::OptimizerOptions& o, std::vector<Item>& items,
                        std::vector<Direction>& dirs, const std::vector<int64_t>& seed_steps);
  at::Tensor evaluate(const LossClosure& closure);

  std::string kind_, name_;
  int64_t nonfinite_skips_ = 0;
  int64_t evaluations_ = 0;
};

// Muon's momentum (ALGORITHMS.md §2), the same operations as limuon::Muon so that a method whose
// only difference is elsewhere reproduces Muon bit for bit: B ← B + (1 − μ)(G − B);
// returns U = G + μ(B − G) (Nesterov) or B. The buffer is created (zeros) on first use.
at::Tensor muon_momentum(FamilyParamState& s, const at::Tensor& g, double momentum, bool nesterov);

// Sketch seed of parameter `index` at step `step`: stream 2·index + 1 orthogonalizes (as in Muon),
// stream 2·index draws SUMO's subspace.
uint64_t orth_seed(uint64_t seed, int64_t index, int64_t step);
uint64_t basis_seed(uint64_t seed, int64_t index, int64_t step);

}  // namespace limuon
