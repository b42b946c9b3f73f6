// Intra-op thread count: LibTorch starts with 1 thread here; limuon defaults to all cores.
#pragma once

namespace limuon {

// requested > 0: use it; otherwise the LIMUON_THREADS environment variable if set, else every
// core. Applies it to LibTorch (and through OpenMP to OpenBLAS); returns the count in force.
int configure_threads(int requested = 0);

}  // namespace limuon
