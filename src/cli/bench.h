// Benchmarks of the CLI: orthogonalization kernels and one optimizer step on model shapes.
#pragma once

#include "args.h"

namespace limuon::cli {

int bench_orth(Args& args, bool json);
int bench_step(Args& args, bool json);

}  // namespace limuon::cli
