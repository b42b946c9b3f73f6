#!/usr/bin/env bash
# Configures and builds limuon (library, CLI at build/limuon, tests) in Release mode, against the
# torch of the project's Python environment (scripts/env.sh; scripts/setup.sh makes it).
# BUILD_DIR (default build) and JOBS (default 2) can be overridden; CMAKE_ARGS adds options.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${BUILD_DIR:-build}
# shellcheck disable=SC2086  # CMAKE_ARGS is a list of options
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIMUON_PYTHON="$LIMUON_PYTHON" ${CMAKE_ARGS:-} \
  > "$BUILD_DIR.configure.log" 2>&1 || { cat "$BUILD_DIR.configure.log"; exit 1; }
cmake --build "$BUILD_DIR" -j "${JOBS:-2}"
