#!/usr/bin/env bash
# The single-run training demo: set up, build, then train a small GPT-2 (gpt2-byte-small: 4 layers,
# width 256, byte vocabulary, context 256) on the default corpus with LiMuon on the CPU (~7 minutes
# on 2 cores), report validation perplexity (per byte), and sample from the trained model.
# Extra arguments go to `limuon train` and override the defaults below (e.g. --steps 100,
# --optimizer muon): the defaults travel as a --config file, which flags override.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
OUT=${OUT:-out/demo}
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
DEFAULTS="$(dirname "$OUT")/demo-defaults.json"
cat > "$DEFAULTS" <<'JSON'
{"task": "lm", "model": "gpt2-byte-small", "data": "default", "optimizer": "limuon", "lr": 0.02, "beta": 0.1,
 "adamw-lr": 0.003, "steps": 500, "warmup": 25, "batch-size": 8, "block-size": 256, "eval-interval": 100,
 "eval-batches": 20, "checkpoint-interval": 100, "seed": 0}
JSON
build/limuon train --config "$DEFAULTS" --out "$OUT" "$@"
echo "--- sample (temperature 0.8, top-k 40) ---"
build/limuon generate --model gpt2-byte-small --checkpoint "$OUT" --prompt "The Congress" --max-new-tokens 300 --seed 1
