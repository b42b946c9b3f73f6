#!/usr/bin/env bash
# The README's main command: set up, build, then train AdamW, Muon, LiMuon (exact STORM) and LiMuon
# light (rank-32 factors, exact STORM) side by side on the default language-modelling task (same
# initialisation, data order and sample budget; experiments/demo.json), with each run's progress;
# then a table, a plot and a short sample from the best run. About ten minutes on 2 cores.
# Rerunning reuses finished runs and resumes an interrupted one. OUT (default out/demo-compare) is
# where everything goes. The single-run demo is scripts/train_demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
source scripts/env.sh
OUT=${OUT:-out/demo-compare}
status=0
build/limuon compare --spec experiments/demo.json --out "$OUT" --live || status=$?
if [ ! -f "$OUT/report.json" ]; then
  echo "demo: the comparison wrote no report (exit $status); fix the error above and rerun: finished runs are kept" >&2
  exit 1
fi
"$LIMUON_PYTHON" scripts/demo_summary.py "$OUT"
if best=$("$LIMUON_PYTHON" scripts/demo_summary.py "$OUT" --best); then
  echo
  echo "--- sample from $(basename "$(dirname "$(dirname "$best")")") (temperature 0.8, top-k 40) ---"
  build/limuon generate --model gpt2-byte-small --weights "$best/model.safetensors" --prompt "The Congress" \
    --max-new-tokens 200 --seed 1
fi
if [ "$status" -ne 0 ]; then
  echo "demo: some runs failed (see above); rerun the same command to retry them" >&2
fi
exit "$status"
