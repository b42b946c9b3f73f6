#!/usr/bin/env bash
# The whole test suite from a fresh machine: system set-up, build, then every test (GoogleTest
# cases and the CLI contract) through CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j 2
