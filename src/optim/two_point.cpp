// The two-evaluation protocol with shared randomness (see limuon/two_point.h).
#include "limuon/optim/two_point.h"

#include "limuon/optim/rng.h"

namespace limuon {

at::Tensor two_point_step(TwoPointStepper& stepper, const std::function<at::Tensor()>& evaluate,
                          const std::function<void()>& between) {
  stepper.abandon_call();  // nothing of an earlier, interrupted call may leak into this one
  try {
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
  } catch (...) {
    stepper.abandon_call();
    throw;
  }
}

}  // namespace limuon
