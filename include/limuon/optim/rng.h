// The state of every random generator a training closure can draw from through ATen: the default
// CPU generator and the default generator of each CUDA device (when torch sees any). Dropout masks,
// torch::rand/randn/randint and the like all come from these. A user's own generators
// (std::mt19937, an at::Generator they created) are not covered.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace limuon {

struct GeneratorStates {
  at::Tensor cpu;
  std::vector<at::Tensor> cuda;  // one per device, in device order
};

// A copy of every default generator's state (each read under that generator's lock).
GeneratorStates capture_generators();
// Puts the states back; a state for a device this process does not see is an error.
void restore_generators(const GeneratorStates& states);

}  // namespace limuon
