#!/usr/bin/env bash
# The C++ test suite (GoogleTest cases, CLI contract, training CLI end to end) under
# AddressSanitizer + UndefinedBehaviorSanitizer, in build-asan. Any report fails the run.
# LibTorch itself is not instrumented; leaks reported inside it are suppressed (tests/lsan.supp).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${ASAN_BUILD_DIR:-build-asan}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLIMUON_SANITIZE=ON > "$BUILD_DIR.configure.log" 2>&1 || {
  cat "$BUILD_DIR.configure.log"; exit 1; }
cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target limuon limuon_tests limuon_quickstart
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_odr_violation=0"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j 2 --timeout 1200
