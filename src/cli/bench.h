// Benchmarks of the CLI: orthogonalization kernels, one optimizer step on model shapes, and the
// peak memory of one full training step.
#pragma once

#include "args.h"

namespace limuon::cli {

int bench_orth(Args& args, bool json);
int bench_step(Args& args, bool json);
// `limuon bench memory`: peak RSS and peak live tensor bytes of one steady-state training step
// (forward, backward, optimizer; LiMuon exact: both evaluations) per optimizer configuration.
int bench_memory(Args& args, bool json);

}  // namespace limuon::cli
