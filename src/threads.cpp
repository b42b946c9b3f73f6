// Thread-count configuration (see threads.h).
#include "limuon/threads.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdexcept>
#include <string>
#include <thread>

namespace limuon {

int configure_threads(int requested) {
  int n = requested;
  if (n <= 0) {
    if (const char* env = std::getenv("LIMUON_THREADS"); env && *env) {
      char* end = nullptr;
      long v = std::strtol(env, &end, 10);
      if (*end != '\0' || v < 1 || v > 4096)
        throw std::invalid_argument(std::string("LIMUON_THREADS must be a positive integer, got '") + env + "'");
      n = static_cast<int>(v);
    } else {
      n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    }
  }
  at::set_num_threads(n);
  return at::get_num_threads();
}

bool configure_reproducible_blas() {
  if (const char* env = std::getenv("MKL_CBWR"); env && *env) return true;
  return setenv("MKL_CBWR", "AUTO", 0) == 0;
}

bool configure_allocator() {
#if defined(__GLIBC__)
  // 32 MiB is glibc's upper limit for the mmap threshold on 64-bit systems.
  const bool a = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  const bool b = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  return a && b;
#else
  return false;
#endif
}

}  // namespace limuon
