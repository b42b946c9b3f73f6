// The two-evaluation protocol with shared randomness (see limuon/two_point.h).
#include "limuon/two_point.h"

#include "limuon/rng.h"

namespace limuon {

at::Tensor two_point_step(TwoPointStepper& stepper, const std::function<at::Tensor()>& evaluate,
                          const std::function<void()>& between) {
  if (!stepper.needs_old_point_gradient()) {
    at::Tensor loss = evaluate();  // first call: the estimate only, nothing moves
    stepper.after_new_point_gradient();
    return loss;
  }
  const GeneratorStates before = capture_generators();
  evaluate();
  stepper.after_old_point_gradient();
  if (between) between();
  restore_generators(before);
  at::Tensor loss = evaluate();
  stepper.after_new_point_gradient();
  return loss;
}

}  // namespace limuon
