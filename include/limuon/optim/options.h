// What every orthogonalizing method's options struct shares, declared once. The structs keep
// LibTorch's TORCH_ARG builder style (`MuonOptions(0.02).momentum(0.9).weight_decay(0.01)`); these
// macros only write the common part of each struct for it.
#pragma once

#include "limuon/kernels/orth.h"
#include "limuon/optim/common.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

// The options every method that orthogonalizes has, with this method's default lr adjustment and
// orthogonalizer:
//   weight_decay   decoupled, applied as W ← W·(1 − lr·weight_decay), >= 0
//   adjust_lr      how the step is scaled by the matrix's shape (AdjustLr, common.h)
//   orthogonalizer how the direction is orthogonalized (Orthogonalizer, kernels/orth.h)
//   rank, oversample, power_iters  the randomized SVD's settings (the rsvd orthogonalizer, and the
//                  methods that keep low-rank state or a subspace basis)
//   seed           of every random draw the method makes (sketches), per parameter and step
//   nonfinite      what a NaN/Inf gradient does: skip the step (counted) or raise
#define LIMUON_MATRIX_OPTIONS(ADJUST_LR_DEFAULT, ORTHOGONALIZER_DEFAULT)  \
  TORCH_ARG(double, weight_decay) = 0.0;                                 \
  TORCH_ARG(AdjustLr, adjust_lr) = ADJUST_LR_DEFAULT;                    \
  TORCH_ARG(Orthogonalizer, orthogonalizer) = ORTHOGONALIZER_DEFAULT;    \
  TORCH_ARG(int64_t, rank) = 32;                                         \
  TORCH_ARG(int64_t, oversample) = 8;                                    \
  TORCH_ARG(int64_t, power_iters) = 0;                                   \
  TORCH_ARG(uint64_t, seed) = 0;                                         \
  TORCH_ARG(NonFinitePolicy, nonfinite) = NonFinitePolicy::skip

// The members every options struct declares: archive I/O, the lr as LibTorch's schedulers see it,
// validate() (std::invalid_argument naming the option and its valid range) and equality.
#define LIMUON_OPTIONS_MEMBERS(SELF)                                           \
 public:                                                                       \
  void serialize(torch::serialize::InputArchive& archive) override;           \
  void serialize(torch::serialize::OutputArchive& archive) const override;    \
  double get_lr() const override;                                              \
  void set_lr(const double lr) override;                                       \
  void validate() const;                                                       \
  friend bool operator==(const SELF& lhs, const SELF& rhs)
