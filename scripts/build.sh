#!/usr/bin/env bash
# Configures and builds limuon (library, CLI at build/limuon, tests) in Release mode.
# BUILD_DIR (default build) and JOBS (default 2) can be overridden.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release > "$BUILD_DIR.configure.log" 2>&1 || {
  cat "$BUILD_DIR.configure.log"; exit 1; }
cmake --build "$BUILD_DIR" -j "${JOBS:-2}"
