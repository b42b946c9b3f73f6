// Per-process tally of what the reader under test made of the fuzz inputs: accepted, or rejected
// with a clean error (the "bad inputs tried"). libFuzzer's own statistics count executions but
// cannot tell the two apart, and a target that rejects every input (its seeds broken, say) would
// otherwise go unnoticed. Printed at normal exit (the end of a -runs=N run), where scripts/fuzz.sh
// picks the line up; a crashing run never gets there, and does not need to.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

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

// Puts the input where a reader that takes a path finds it. Failing to write means the harness is
// broken, not the reader: abort without calling it a finding.
inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

// A finding: say what went wrong, then abort so that libFuzzer keeps the input as a crash.
[[noreturn]] inline void report(const char* target, const std::string& detail) {
  std::fprintf(stderr, "%s: %s\n", target, detail.c_str());
  std::abort();
}

}  // namespace limuon_fuzz
