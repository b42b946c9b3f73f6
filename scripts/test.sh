#!/usr/bin/env bash
# The whole test suite from a fresh machine: system set-up, build, every C++/CLI test through
# CTest, then the Python binding's pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j 2
bash scripts/test_python.sh
