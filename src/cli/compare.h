// `limuon compare`: several optimizer configurations on one task, over seeds and learning rates,
// each run a `limuon train` subprocess; aggregates the runs into report.md, report.json and plots.
#pragma once

#include "args.h"

namespace limuon::cli {

int cmd_compare(Args& args);

}  // namespace limuon::cli
