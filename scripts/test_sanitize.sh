#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer, in build-asan: the C++
# suite (GoogleTest cases, CLI contract, training CLI end to end), then the Python binding's pytest
# suite with an instrumented extension (staged in build-asan/python, the sanitizer runtimes
# preloaded into the interpreter). Any report fails the run. LibTorch itself is not instrumented:
# leaks reported inside it are suppressed (tests/lsan.supp), and leak checking is off for the
# Python interpreter, which keeps its objects at exit by design.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${ASAN_BUILD_DIR:-build-asan}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLIMUON_SANITIZE=ON -DLIMUON_PYTHON="$LIMUON_PYTHON" \
  > "$BUILD_DIR.configure.log" 2>&1 || { cat "$BUILD_DIR.configure.log"; exit 1; }
cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target limuon limuon_tests limuon_quickstart limuon_train_custom _C
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_odr_violation=0"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# The GoogleTest cases in one process (CTest would start one instrumented process per case, ~3 s
# of start-up each under ASan), then every other CTest entry (the CLI and end-to-end suites, whose
# names are plain words), two at a time.
"$BUILD_DIR/tests/limuon_tests" --gtest_brief=1
ctest --test-dir "$BUILD_DIR" --output-on-failure -j 2 --timeout 1500 -R '^[a-z_]+$'

PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=0" BUILD_DIR="$BUILD_DIR" PYTHON_PRELOAD="$PRELOAD" \
  bash scripts/build_python.sh
nm -D "$BUILD_DIR"/python/limuon/_C*.so | grep __asan_report > /dev/null || {  # (not grep -q: its early exit would SIGPIPE nm under pipefail)
 echo "test_sanitize.sh: extension is not instrumented" >&2; exit 1; }
ROOT=$PWD
cd "$(mktemp -d)"
ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=0" LD_PRELOAD="$PRELOAD" PYTHONPATH="$ROOT/$BUILD_DIR/python" \
  "$LIMUON_PYTHON" -m pytest -q -p no:cacheprovider "$ROOT/python/tests"
