// The key LibTorch's optimizers use for per-parameter state, and how to form it from a parameter.
// Since LibTorch 2.2 Optimizer::state() is keyed by the parameter's TensorImpl address (void*);
// 1.13 printed that address as text. The type is taken from LibTorch's own map, so every map
// limuon keeps beside it (pending directions, old gradients, parameter names) uses the same key.
#pragma once

#include <torch/optim/optimizer.h>

#include <type_traits>
#include <utility>

namespace limuon {

using StateKey = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>::key_type;
static_assert(std::is_same_v<StateKey, void*>,
              "limuon needs LibTorch >= 2.2, whose optimizer state is keyed by the parameter's TensorImpl address");

inline StateKey state_key(const at::Tensor& p) { return p.unsafeGetTensorImpl(); }

}  // namespace limuon
