#!/usr/bin/env bash
# Installs the Python package into the project's environment (pip install --no-build-isolation .,
# which reuses the build directory, so after scripts/build.sh only the install runs) and runs its
# pytest suite from outside the source tree, so the tests import the installed limuon.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
"$LIMUON_PYTHON" -m pip install -q --no-build-isolation . > /tmp/limuon-pip-install.log 2>&1 || {
  tail -n 40 /tmp/limuon-pip-install.log; echo "test_python.sh: pip install . failed" >&2; exit 1; }
ROOT=$PWD
cd "$(mktemp -d)"
"$LIMUON_PYTHON" -m pytest -q -p no:cacheprovider "$ROOT/python/tests" "$@"
