// Per-process tally of what the reader under test made of the fuzz inputs: accepted, or rejected
// with a clean error (the "bad inputs tried"). libFuzzer's own statistics count executions but
// cannot tell the two apart, and a target that rejects every input (its seeds broken, say) would
// otherwise go unnoticed. Printed at normal exit (the end of a -runs=N run), where scripts/fuzz.sh
// picks the line up; a crashing run never gets there, and does not need to.
#pragma once

#include <cstdint>
#include <cstdio>

namespace limuon_fuzz {

struct Tally {
  uint64_t accepted = 0, rejected = 0;
  ~Tally() {
    std::fprintf(stderr, "limuon_fuzz_stats: accepted=%llu rejected=%llu\n", static_cast<unsigned long long>(accepted),
                 static_cast<unsigned long long>(rejected));
  }
};

inline Tally& tally() {
  static Tally t;  // destroyed at exit, after the fuzzing loop
  return t;
}

inline void accepted() { ++tally().accepted; }
inline void rejected() { ++tally().rejected; }

}  // namespace limuon_fuzz
