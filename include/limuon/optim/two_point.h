// One call of the two-evaluation protocol (LiMuon storm=exact, Muon-MVR2), shared by the optimizers'
// own step() and HybridOptimizer::step():
//   first call:   evaluate (new point only), after_new_point_gradient()
//   later calls:  evaluate at W_t, after_old_point_gradient() (W moves to W_{t+1}), between(),
//                 evaluate at W_{t+1}, after_new_point_gradient()
// STORM's correction needs both gradients of a call on the same sample ξ: the same batch (the
// closure's job) and the same random draws (dropout masks, torch::rand in the closure). Every
// default ATen generator (CPU, and each CUDA device's) is captured before the first evaluation and
// restored before the second, so the second evaluation draws exactly what the first drew; after the
// call the generators stand where the second evaluation left them. Generators the closure owns
// itself (an std::mt19937, an at::Generator it created) are not covered. The stepper's
// abandon_call() runs before the call and, when anything in it throws, before the exception leaves.
#pragma once

#include "limuon/optim/common.h"

#include <ATen/core/Tensor.h>

#include <functional>

namespace limuon {

at::Tensor two_point_step(TwoPointStepper& stepper, const std::function<at::Tensor()>& evaluate,
                          const std::function<void()>& between = {});

}  // namespace limuon
