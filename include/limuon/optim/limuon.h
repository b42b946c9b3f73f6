// LiMuon (Huang, Luo, Chen, arXiv 2509.14562): a STORM variance-reduced momentum, orthogonalized,
// optionally kept as randomized-SVD low-rank factors. Spec: ALGORITHMS.md §3.
//
// Convention: (1 − beta) multiplies the OLD estimate. beta = 1 is momentum-free Muon on the fresh
// gradient; Muon's momentum 0.95 corresponds to beta ≈ 0.05.
//
// storm = exact (default) spends TWO gradient evaluations per step, both on the same minibatch,
// at the old point W_t and the new point W_{t+1}. step(closure) realises the recursion with no
// copy of W by lagging the update one call:
//   g̃ = closure()                     (at W_t)
//   W ← W_t − lr·scale·orth(M_t)         (plus decoupled weight decay)
//   g = closure()                      (at W_{t+1}); returned
//   M_{t+1} = g + (1 − beta)·(M_t − g̃)   (lowrank_state paper/light: M_t replaced by its rsvd M̂_t)
// The very first call evaluates once and only sets M_0; parameters do not move.
//
// storm = approx (Muon-MVR1 / MARS style) evaluates once per call:
//   c_t = g_t + gamma·((1 − beta)/beta)·(g_t − g_{t−1});  M_t = (1 − beta)·M_{t−1} + beta·c_t
//   W ← W − lr·scale·orth(M_t);  M_0 = g_0. With gamma = 1 this collapses to M_t = g_t.
//
// Presets: LiMuonOptions(lr) are the practical defaults (Gram Newton–Schulz, Keller Jordan's shape
// scale); LiMuonOptions::paper(lr) is the paper's algorithm as analysed: exact SVD polar factor, no
// shape scale (adjust_lr none), no weight decay, two gradients per step (storm exact), constant lr
// and beta. The optimizer never schedules lr or beta itself; the theory's η_t ∝ t^−1/3,
// β_t ∝ η_t² is a scheduler's job. Option #1 vs #2 stays lowrank_state's (none by default).
//
// accumulate_second_gradient (opt-in, default false; lowrank_state paper/light with storm exact,
// no effect elsewhere) removes the dense mn transient per matrix that paper/light otherwise hold
// through the second evaluation (the old-point gradient g̃, kept until M_{t+1} is formed), i.e. at
// the activation peak. After evaluation 1 the gradient is scaled in place, .grad ← −(1 − beta)·g̃,
// and left there; evaluation 2's backward accumulates into it, so afterwards .grad = g − (1 − beta)·g̃
// and M_{t+1} = .grad + (1 − beta)·M̂_t is compressed straight from it and the factors.
// PROTOCOL: the closure must clear gradients only through this optimizer's zero_grad() (or
// HybridOptimizer::zero_grad()), which leaves the seeded gradients alone between the two
// evaluations and clears everything else as usual. model->zero_grad() or p.grad().zero_() in the
// closure would silently drop the −(1 − beta)·g̃ term: LiMuon throws when its zero_grad() was not
// called between the evaluations, or when a seeded gradient was dropped or reallocated. The
// gradient must enter the step linearly: summing micro-batches and a data-parallel all-reduce
// (mean over ranks; the seed is the same on every rank) are fine, gradient clipping inside the
// closure is not (it would clip g − (1 − beta)·g̃). After the step .grad of the seeded matrices is
// scratch, not the gradient. Gradients in half precision, or not contiguous, keep the stored copy.
#pragma once

#include "limuon/optim/common.h"
#include "limuon/optim/muon.h"
#include "limuon/kernels/orth.h"
#include "limuon/libtorch_compat.h"

#include "limuon/optim/options.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <unordered_map>
#include <vector>

namespace limuon {

// none = Option #1 (dense M, mn); paper = Option #2 as in the paper (dense direction + factors,
// mn + (m+n)r + r); light = factors only, direction Û V̂ᵀ straight from them ((m+n)r + r).
enum class LowRankState { none, paper, light };
enum class Storm { exact, approx };

std::string to_string(LowRankState s);
LowRankState parse_lowrank_state(const std::string& name);
std::string to_string(Storm s);
Storm parse_storm(const std::string& name);

struct LiMuonOptions : public torch::optim::OptimizerCloneableOptions<LiMuonOptions> {
  LiMuonOptions(double lr = 0.02);
  TORCH_ARG(double, lr) = 0.02;
  // In (0, 1]; (1 − beta) multiplies the old estimate.
  TORCH_ARG(double, beta) = 0.1;
  TORCH_ARG(LowRankState, lowrank_state) = LowRankState::none;
  TORCH_ARG(Storm, storm) = Storm::exact;
  // Damping of the approx correction, in [0, 1].
  TORCH_ARG(double, gamma) = 0.025;
  // See the header comment: seed .grad with −(1 − beta)·g̃ instead of keeping a copy of g̃.
  TORCH_ARG(bool, accumulate_second_gradient) = false;

  // rank/oversample/power_iters: the randomized SVD of the low-rank state and of the rsvd
  // orthogonalizer. Default gram_ns (ns5 on the Gram matrix; the same map as ns5 up to rounding).
  LIMUON_MATRIX_OPTIONS(AdjustLr::original, Orthogonalizer::gram_ns);

 public:
  // The paper's algorithm (arXiv 2509.14562, Algorithm 1): svd, adjust_lr none, weight_decay 0,
  // storm exact; everything else as LiMuonOptions(lr).
  static LiMuonOptions paper(double lr = 0.02);
  // By name: "practical" (LiMuonOptions(lr), the defaults) or "paper"; std::invalid_argument otherwise.
  static LiMuonOptions preset(const std::string& name, double lr = 0.02);
  static const std::vector<std::string>& preset_names();

  LIMUON_OPTIONS_MEMBERS(LiMuonOptions);
};

struct LiMuonParamState : public torch::optim::OptimizerCloneableParamState<LiMuonParamState> {
  // Calls that updated this parameter's estimate (drives the sketch seeds).
  TORCH_ARG(int64_t, step) = 0;
  // False until the first gradient arrives, and again after a non-finite reset.
  TORCH_ARG(bool, has_estimate) = false;
  TORCH_ARG(at::Tensor, momentum);   // lowrank_state none: dense M [rows, cols]
  TORCH_ARG(at::Tensor, direction);  // paper + exact: orth(M_t) pending for the next call
  TORCH_ARG(at::Tensor, factor_u);   // paper/light: U [rows, r]
  TORCH_ARG(at::Tensor, factor_s);   // paper/light: σ [r]
  TORCH_ARG(at::Tensor, factor_v);   // paper/light: V [cols, r]
  TORCH_ARG(at::Tensor, prev_grad);  // approx: g_{t−1}

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  friend bool operator==(const LiMuonParamState& lhs, const LiMuonParamState& rhs);
  int64_t bytes() const;
};

class LiMuon : public torch::optim::Optimizer, public TwoPointStepper {
 public:
  explicit LiMuon(std::vector<torch::optim::OptimizerParamGroup> param_groups, LiMuonOptions defaults = {});
  explicit LiMuon(std::vector<at::Tensor> params, LiMuonOptions defaults = {});

  // storm = exact: the closure is required (zero grads, forward, backward, return loss) and is
  // evaluated twice per call (once on the first call); returns the loss at the new point.
  // storm = approx: one evaluation; without a closure the gradients already in .grad() are used.
  at::Tensor step(LossClosure closure = nullptr) override;

  // The stages step() runs, exposed so a hybrid optimizer can step AdamW in between:
  //   exact:  if needs_old_point_gradient(): closure(); after_old_point_gradient();
  //           closure(); after_new_point_gradient();
  //   approx: closure(); after_new_point_gradient();
  bool evaluates_twice() const override;
  bool needs_old_point_gradient() const override;
  void after_old_point_gradient() override;
  void after_new_point_gradient() override;

  // Hides torch::optim::Optimizer::zero_grad (not virtual there): the same, except that between
  // the two evaluations of a call with accumulate_second_gradient it leaves the gradients seeded
  // with −(1 − beta)·g̃ in place. Call it through a LiMuon (or HybridOptimizer), not a base pointer.
  void zero_grad(bool set_to_none = true);
  // Forgets a call interrupted between its two evaluations (an exception in the closure or in a
  // stage): the next zero_grad() clears everything. two_point_step (behind step() and
  // HybridOptimizer::step()) does this.
  void abandon_call() override;

  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  int64_t nonfinite_skips() const { return nonfinite_skips_; }
  int64_t state_bytes() const;
  // Closure evaluations made by step() so far.
  int64_t evaluations() const { return evaluations_; }

 private:
  struct Item {
    at::Tensor param;
    LiMuonParamState* state;
    int64_t index;  // position in the whole optimizer
  };
  std::vector<Item> group_items(size_t group, bool create_state);
  void check_params() const;
  bool group_finite_or_raise(const std::vector<Item>& items, const LiMuonOptions& o);
  void approx_group(size_t group);
  void new_point_group(size_t group);

 public:
  // accumulate_second_gradient: whether `param`'s .grad holds its −(1 − beta)·g̃ seed now (between
  // the two evaluations of a call). Sharded data parallelism (limuon/dist/sharding.h) needs it: only
  // the owner holds the seed, so the reduce must not average it over the ranks.
  bool holds_seed(const at::Tensor& param) const { return seeded_.count(state_key(param)) > 0; }

 private:
  int64_t nonfinite_skips_ = 0;
  int64_t evaluations_ = 0;
  // Transient, between the two evaluations of one call: (1 − beta)·(M̂_t − g̃) per parameter,
  // and which groups skipped this call.
  std::unordered_map<StateKey, at::Tensor> pending_;
  std::vector<bool> group_skipped_;
  // accumulate_second_gradient: the gradients seeded with −(1 − beta)·g̃ (their storage, to detect
  // a gradient dropped or reallocated by the closure), and whether zero_grad() ran since seeding.
  struct Seed {
    at::Tensor param;
    const void* data = nullptr;
  };
  std::unordered_map<StateKey, Seed> seeded_;
  bool seed_zero_grad_seen_ = false;
  void check_seeds(const char* when) const;
};

}  // namespace limuon
