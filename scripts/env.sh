# Sourced by the other scripts: where the project's Python environment lives.
#   LIMUON_VENV    the virtual environment scripts/setup.sh makes (default: one per machine and
#                  user, shared by every clone, so a fresh clone does not download torch again)
#   LIMUON_PYTHON  its interpreter; CMake builds against the torch it imports
# A clone also gets a .venv link to it, for `.venv/bin/python`.
LIMUON_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LIMUON_VENV="${LIMUON_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/limuon/venv}"
export LIMUON_PYTHON="${LIMUON_PYTHON:-$LIMUON_VENV/bin/python}"
