#!/usr/bin/env bash
# Builds the Python binding (scripts/build_python.sh) and runs its pytest suite with the system
# python3 (Debian's python3-torch and python3-pytest). BUILD_DIR and PYTHON as in build_python.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
bash scripts/build_python.sh
PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m pytest -q -p no:cacheprovider python/tests "$@"
