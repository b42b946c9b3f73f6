#!/usr/bin/env bash
# The main job (until the training CLI lands): set up, build, then run the benchmark suite
# (orthogonalization kernels, optimizer steps on DistilGPT2 shapes, our Muon against a plain
# PyTorch Muon). Results: out/bench/results.jsonl and out/bench/results.md. About 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
source scripts/env.sh
"$LIMUON_PYTHON" bench/suite.py --bin "${BUILD_DIR:-build}/limuon" --out out/bench "$@"
