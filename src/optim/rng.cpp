// Capture and restore of ATen's default generators (see limuon/rng.h).
#include "limuon/optim/rng.h"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>

#include <mutex>
#include <stdexcept>
#include <string>

namespace limuon {

namespace {
at::Tensor get_state(at::Generator gen) {  // a handle sharing the global generator
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}
void set_state(at::Generator gen, const at::Tensor& state) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}
at::Generator cuda_generator(size_t i) {
  return at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
}
}  // namespace

GeneratorStates capture_generators() {
  GeneratorStates s;
  s.cpu = get_state(at::globalContext().defaultGenerator(at::kCPU));
  if (at::hasCUDA())
    for (size_t i = 0; i < at::getNumGPUs(); ++i) s.cuda.push_back(get_state(cuda_generator(i)));
  return s;
}

void restore_generators(const GeneratorStates& states) {
  const size_t devices = at::hasCUDA() ? at::getNumGPUs() : 0;
  if (states.cuda.size() > devices)
    throw std::runtime_error("random generator state holds " + std::to_string(states.cuda.size()) +
                             " CUDA device(s), this process sees " + std::to_string(devices));
  if (states.cpu.defined()) set_state(at::globalContext().defaultGenerator(at::kCPU), states.cpu);
  for (size_t i = 0; i < states.cuda.size(); ++i) set_state(cuda_generator(i), states.cuda[i]);
}

}  // namespace limuon
