#!/usr/bin/env bash
# Builds the Python extension in BUILD_DIR (default build) and stages an importable package in
# BUILD_DIR/python/limuon (the sources of python/limuon plus the built _C), without installing:
#   PYTHONPATH=build/python .venv/bin/python -c "import limuon"
# For development and the sanitizer pass (BUILD_DIR=build-asan gives an instrumented extension).
# Users install with `pip install --no-build-isolation .` (pyproject.toml), which scripts/test_python.sh
# does. Environment: BUILD_DIR, JOBS, CMAKE_ARGS, PYTHON_PRELOAD (LD_PRELOAD for the import check).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  # shellcheck disable=SC2086  # CMAKE_ARGS is a list of options
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIMUON_PYTHON="$LIMUON_PYTHON" ${CMAKE_ARGS:-} \
    > "$BUILD_DIR.configure.log" 2>&1 || { cat "$BUILD_DIR.configure.log"; exit 1; }
fi
cmake --build "$BUILD_DIR" --target _C -j "${JOBS:-2}"
STAGE="$BUILD_DIR/python/limuon"
rm -rf "$STAGE"
mkdir -p "$STAGE"
cp python/limuon/*.py "$STAGE/"
cp "$BUILD_DIR"/_C*.so "$STAGE/"
PYTHONPATH="$PWD/$BUILD_DIR/python" LD_PRELOAD="${PYTHON_PRELOAD:-}" "$LIMUON_PYTHON" -c \
  "import limuon, torch; print('limuon', limuon.__version__, 'on torch', torch.__version__, '->', limuon._C.__file__)"
