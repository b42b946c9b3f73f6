// What limuon's optimizers need from torch::optim::Optimizer that changed in LibTorch 2.x, in one
// place (PORTING notes: shared/docs/PORTING-PYTORCH2.md §1).
//  - State keys: since 2.2 Optimizer::state() is keyed by the parameter's TensorImpl address (void*);
//    1.13 printed that address as text. StateKey is taken from LibTorch's own map, so every map
//    limuon keeps beside it (pending directions, old gradients, parameter names) uses the same key.
//  - Parameter groups: since 2.x Optimizer::add_param_group (which the constructor also calls)
//    merges a group's options into the defaults only for LibTorch's own option types; for any
//    other optimizer it silently replaces the group's options by the defaults. add_param_group and
//    keep_group_options below keep what the caller asked for.
//  - zero_grad: 2.x's Optimizer::zero_grad() sets gradients to none by default (1.13 zeroed them);
//    limuon never relies on the default and always passes set_to_none.
#pragma once

#include <torch/optim/optimizer.h>

#include <type_traits>
#include <utility>
#include <vector>

namespace limuon {

using StateKey = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>::key_type;
static_assert(std::is_same_v<StateKey, void*>,
              "limuon needs LibTorch >= 2.2, whose optimizer state is keyed by the parameter's TensorImpl address");

inline StateKey state_key(const at::Tensor& p) { return p.unsafeGetTensorImpl(); }

// Adds `group` to `opt` with the group's own options (or the optimizer's defaults if it has none).
inline void add_param_group(torch::optim::Optimizer& opt, const torch::optim::OptimizerParamGroup& group) {
  opt.add_param_group(torch::optim::OptimizerParamGroup(group.params()));
  if (group.has_options()) opt.param_groups().back().set_options(group.options().clone());
}

// After torch::optim::Optimizer's constructor ran on `requested`: gives each group of `groups` the
// options it was constructed with (see above: the base constructor replaced them by the defaults).
inline void keep_group_options(std::vector<torch::optim::OptimizerParamGroup>& groups,
                               const std::vector<torch::optim::OptimizerParamGroup>& requested) {
  for (size_t i = 0; i < groups.size() && i < requested.size(); ++i)
    if (requested[i].has_options()) groups[i].set_options(requested[i].options().clone());
}

}  // namespace limuon
