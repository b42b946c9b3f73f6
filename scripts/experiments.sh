#!/usr/bin/env bash
# Runs the optimizer experiments defined in experiments/*.json with `limuon compare` (docs/compare.md).
#
# Usage: scripts/experiments.sh [NAME ...] [-- extra compare flags]
#   NAME: lm | vit | orth_ablation | memory_distilgpt2 (default: these, in that order)
#         | lm_family (the rest of the Muon family, lr sweep) | lm_family_quick (the same at lr 0.02)
#         | vit_family (the rest of the family on ViT, lr sweep)
#   LIMUON (default build/limuon), OUT (default out/experiments), THREADS (default: all cores)
# Interrupted? Run the same command again: finished runs are skipped, the others resume.
#
# Budgets are sized for a 2-core CPU, the whole set in about an hour (estimates from the models'
# FLOPs at ~40 GFLOP/s with OpenBLAS on 2 cores, plus process start, data and evaluation):
#   lm                 gpt2-mini + GPT-2 tokenizer, 8 configs, 2-lr sweep on seed 0 + seed 1 at the
#                      chosen lr = 24 runs of 448 gradient evaluations (112 steps of 4 x 64 tokens,
#                      ~0.6 s/step)                                                       ~30 min
#   vit                ViT-tiny patch 4 on Fashion-MNIST, 4 configs, 12 runs of 1536 images
#                      (48 steps of 32, ~1.3 s/step)                                      ~15 min
#   orth_ablation      gpt2-byte-small, 5 orthogonalizers, 5 runs of 80 steps (~0.5 s/step)  ~4 min
#   memory_distilgpt2  DistilGPT2 (82M), 8 optimizers, 3 steps each: state bytes, peak RSS ~4 min
#   lm_family          lm's task for 7 family methods + Muon and LiMuon anchors, 4-7-lr sweep on
#                      seed 0 + seed 1 at the chosen lr = 51 runs                          ~55 min
#   vit_family         vit's task for the same 9 configs, 4-6-lr sweep + seed 1 = 49 runs ~35 min
#   study_lm           issue 19's LM study: gpt2-byte-small, dropout 0.1, 2,000 steps of 8 x 128
#                      bytes, 10 configs, 4-6-lr sweeps on seed 0, beta tuned at the chosen lr
#                      for the 5 exact-STORM ones ("tune"), then seeds 1-3 at each group's
#                      choice = 84 runs or a few more, about 15 hours of this 2-core machine
#                      (13.8 h of training steps at timing.json's quiet ms/step); its results are
#                      committed: run it as
#                      OUT=docs/results scripts/experiments.sh study_lm   (resumable; the weights
#                      and checkpoints stay out of git, docs/results/study_lm/.gitignore)
#   study_vit          issue 19's vision study: vit-mini, Fashion-MNIST, 3 epochs, full test set, the
#                      same configs and tuning = 80 runs or a few more; committed like study_lm
#   study_noise        issue 19's batch-size sweep (4, 16, 64 sequences at 16,000 sequences) for Muon,
#                      LiMuon exact, LiMuon light r32 exact: 3-lr sweeps (+ beta for exact STORM)
#                      + 3 seeds; then experiments/study_noise_report.py: loss vs batch, paired vs
#                      Muon at equal samples, gradient evaluations and seconds, crossings, the
#                      paired gap along training (with batch 8 from $OUT/study_lm when that study
#                      has a report)
#   study_memory       issue 19's memory reading: the LM study's configs at DistilGPT2 size, 3 steps
# After each comparison whose spec names a reference (study_lm, study_vit),
# experiments/along_report.py writes OUT/NAME/along.md: each group minus the reference, paired by
# seed, at every evaluation along training.
# Use `limuon compare --spec experiments/NAME.json --out DIR --dry-run` to see every run.
# Tables and plots again from the committed runs, without training (each study stopped first):
#   OUT=docs/results scripts/experiments.sh study_lm study_vit study_noise study_memory -- --report-only
# Everything runs inside main(), called on the script's last line together with exit: bash reads a
# script as it executes it, so this way the whole file is parsed before anything runs, and editing
# it while a study runs (hours) cannot change what the running copy does next.
main() {
  set -euo pipefail
  cd "$(dirname "$0")/.."
  LIMUON=${LIMUON:-build/limuon}
  OUT=${OUT:-out/experiments}
  names=()
  extra=()
  while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then shift; extra=("$@"); break; fi
    names+=("$1"); shift
  done
  [ ${#names[@]} -gt 0 ] || names=(lm vit orth_ablation memory_distilgpt2)
  [ -x "$LIMUON" ] || { echo "experiments: $LIMUON not built (scripts/build.sh)" >&2; exit 1; }
  threads=()
  [ -z "${THREADS:-}" ] || threads=(--threads "$THREADS")
  status=0
  for name in "${names[@]}"; do
    spec="experiments/$name.json"
    [ -f "$spec" ] || { echo "experiments: no $spec (valid: lm vit orth_ablation memory_distilgpt2 lm_family lm_family_quick vit_family study_lm study_vit study_noise study_memory)" >&2; exit 2; }
    echo "== $name: $spec -> $OUT/$name"
    start=$(date +%s)
    "$LIMUON" compare --spec "$spec" --out "$OUT/$name" "${threads[@]}" "${extra[@]}" || status=$?
    # A study's own reading on top of compare's report (study_noise: loss against batch size).
    # study_noise also reads batch 8 from the main LM study when it has a report (same budget and model).
    if [ -f "experiments/${name}_report.py" ] && [ -f "$OUT/$name/report.json" ]; then
      joined=()
      [ "$name" != study_noise ] || [ ! -f "$OUT/study_lm/report.json" ] || joined=(--with "$OUT/study_lm")
      python3 "experiments/${name}_report.py" "$OUT/$name" "${joined[@]}" || status=$?
    fi
    # A comparison with a reference (its report pairs groups with it): the paired gap along training
    # (along.md); one without says so and writes nothing.
    if [ -f "$OUT/$name/report.json" ]; then
      python3 experiments/along_report.py "$OUT/$name" || status=$?
    fi
    echo "== $name: $(( $(date +%s) - start )) s; report $OUT/$name/report.md"
  done
  return $status
}
main "$@"; exit $?
