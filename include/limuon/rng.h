// Moved to <limuon/optim/rng.h> (the include tree now mirrors the architecture: kernels, optim, dist, ...).
// This forwarding header is kept for one release so that existing #include lines still compile.
#pragma once

#include "limuon/optim/rng.h"
