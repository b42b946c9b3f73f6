// Pieces shared by every Muon-family optimizer: learning-rate scaling conventions, the
// matrix view of N-D weights, the decoupled update, the non-finite check, seed derivation
// and option validation.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace limuon {

// ALGORITHMS.md §2. For a weight with m rows (fan-out) and n columns (fan-in):
//   original        max(1, m/n)^½        (Keller Jordan's Muon)
//   match_rms_adamw 0.2·√max(m, n)       (Moonlight: AdamW lr and weight decay carry over)
//   spectral        √(m/n)
//   none            1                    (the papers' theory)
enum class AdjustLr { original, match_rms_adamw, spectral, none };

std::string to_string(AdjustLr a);
AdjustLr parse_adjust_lr(const std::string& name);
double lr_scale(AdjustLr a, int64_t rows, int64_t cols);

// What an optimizer does when a parameter group's gradient holds NaN or Inf.
//   skip  (default) the group takes no step this call, its weights and state stay as they were,
//         and nonfinite_skips() counts it.
//   raise  throw std::runtime_error naming the parameter.
enum class NonFinitePolicy { skip, raise };
std::string to_string(NonFinitePolicy p);
NonFinitePolicy parse_nonfinite_policy(const std::string& name);

// A weight viewed as a matrix: [out, rest] for N-D weights (convolutions, patch embeddings).
at::Tensor as_matrix(const at::Tensor& t);
// Rows and columns of that view; throws naming `who` when the tensor has fewer than 2 dims.
std::pair<int64_t, int64_t> matrix_shape(const at::Tensor& t, const std::string& who);

// W ← W·(1 − lr·wd) − lr·scale·O, with O shaped like W's matrix view. Weight decay is
// decoupled and uses the unscaled lr.
void apply_update(at::Tensor& w, const at::Tensor& direction, double lr, double scale, double weight_decay);

// True when every tensor is free of NaN and Inf (one host synchronisation for the lot).
bool all_finite(const std::vector<at::Tensor>& tensors);

// splitmix64 (Steele, Lea, Flood 2014) finaliser, used to derive independent sketch seeds.
uint64_t splitmix64(uint64_t x);
// The sketch seed for parameter `param_index` at call `step`, masked to 63 bits so it is a
// valid seed in every API (Python's torch.Generator.manual_seed included):
//   splitmix64(splitmix64(splitmix64(seed) ^ param_index) ^ step) & (2^63 − 1)
uint64_t derive_seed(uint64_t seed, uint64_t param_index, uint64_t step);

// Option validation: throws std::invalid_argument("<who>: <option> must be in <range>, got <v>").
void check_range(const char* who, const char* option, double value, double lo, double hi,
                 bool lo_open, bool hi_open);
void check_at_least(const char* who, const char* option, int64_t value, int64_t lo);

// An optimizer whose step may evaluate the closure twice on one batch, at the old and the new
// weights (LiMuon storm=exact, Muon-MVR2), with its stages exposed so that a hybrid optimizer can
// step AdamW in between:
//   if needs_old_point_gradient(): closure(); after_old_point_gradient();
//   closure(); after_new_point_gradient();
class TwoPointStepper {
 public:
  virtual ~TwoPointStepper() = default;
  // False when every group takes one evaluation per call (then step() is all there is).
  virtual bool evaluates_twice() const = 0;
  virtual bool needs_old_point_gradient() const = 0;
  virtual void after_old_point_gradient() = 0;
  virtual void after_new_point_gradient() = 0;
  // Forgets whatever a call keeps between its two evaluations, for a call interrupted by an
  // exception (in the closure or a stage). two_point_step calls it before every call and when one
  // throws; the default keeps nothing.
  virtual void abandon_call() {}
};

}  // namespace limuon
