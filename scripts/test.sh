#!/usr/bin/env bash
# The whole test suite from a fresh machine: system set-up, build, every C++/CLI test through
# CTest, the Python binding's pytest suite, then the C++ suite again under ASan + UBSan.
# LIMUON_SKIP_SANITIZE=1 skips the sanitizer pass (local iteration only; CI runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j 2
bash scripts/test_python.sh
if [ -z "${LIMUON_SKIP_SANITIZE:-}" ]; then
  bash scripts/test_sanitize.sh
fi
