#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/fuzz_*.cpp, clang + ASan/UBSan) and runs each for a fixed
# number of executions from its committed seed corpus (fuzz/seeds/<target>), then reports what was
# done: a table on stdout and FUZZ_BUILD_DIR/fuzz_summary.json. Exits non-zero when any target
# found something (crash, sanitizer report, out-of-memory, timeout, leak) or did not finish.
#
#   FUZZ_RUNS=200000        executions per target
#   FUZZ_TARGETS="shard idx" a subset (names with or without the fuzz_ prefix; default: all)
#   FUZZ_JOBS=1             targets run side by side (each is single-threaded)
#   FUZZ_TIMEOUT=10         seconds one input may take before it counts as a finding
#   FUZZ_RSS_LIMIT_MB=2048  process memory limit
#   FUZZ_MALLOC_LIMIT_MB=256 largest single allocation: every input is at most tens of KB, so a
#                           reader that allocates this much believed a header it should have checked
#   FUZZ_BUILD_DIR=build-fuzz, FUZZ_SEED=1 (libFuzzer -seed, so a run can be repeated)
#   ASAN_OPTIONS (default malloc_context_size=2, see below)
#
# Findings are left in FUZZ_BUILD_DIR/fuzz-work/<target>/artifacts/ (crash-*, oom-*, timeout-*,
# leak-*); reproduce one with FUZZ_BUILD_DIR/fuzz/fuzz_<target> <file>, then make it a test in
# tests/test_fuzz_regressions.cpp. The committed seeds are copied to a scratch corpus first, so
# fuzzing never changes them (fuzz/make_seeds.py regenerates them).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${FUZZ_RUNS:-200000}
JOBS=${FUZZ_JOBS:-1}
TIMEOUT=${FUZZ_TIMEOUT:-10}
RSS_MB=${FUZZ_RSS_LIMIT_MB:-2048}
MALLOC_MB=${FUZZ_MALLOC_LIMIT_MB:-256}
SEED=${FUZZ_SEED:-1}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
# The slowest first, so that with FUZZ_JOBS=2 the others run beside it.
ALL="checkpoint safetensors shard idx cifar bpe_files encoder config"
TARGETS=${FUZZ_TARGETS:-$ALL}

for t in $TARGETS; do
  case " $ALL " in *" ${t#fuzz_} "*) ;; *) echo "fuzz.sh: unknown target '$t' (known: $ALL)" >&2; exit 2 ;; esac
done

# ---- build (configure only once; ninja makes a repeated build a no-op) ----
source scripts/env.sh
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=${CC:-clang-14} CXX=${CXX:-clang++-14} cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DLIMUON_FUZZ=ON -DLIMUON_BUILD_TESTS=OFF -DLIMUON_PYTHON_EXTENSION=OFF -DLIMUON_PYTHON="$LIMUON_PYTHON" \
    > "$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log"; exit 1; }
fi
build_targets=()
for t in $TARGETS; do build_targets+=("fuzz_${t#fuzz_}"); done
cmake --build "$BUILD" -j "${JOBS_BUILD:-2}" --target "${build_targets[@]}"

# ASan records the call stack of every allocation for its reports; fuzz_checkpoint (TorchScript
# compiling each archive) makes so many distinct ones that the stack depot came to take 60% of its
# time, slowing it 7x over a run. Two frames keep that bounded; a finding reproduced by running
# the target on the artifact by hand gets full allocation stacks again.
export ASAN_OPTIONS=${ASAN_OPTIONS:-malloc_context_size=2}

WORK="$BUILD/fuzz-work"
mkdir -p "$WORK"

# Runs one target; leaves its numbers in $WORK/<target>/result (one "key value" a line).
run_one() {
  local t=$1 dir="$WORK/$1" exe="$BUILD/fuzz/fuzz_$1"
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp fuzz/seeds/"$t"/* "$dir/corpus/"
  local start end rc pid
  start=$(date +%s.%N)
  # The fuzzers write their scratch files under /dev/shm, named after their pid.
  set +e
  "$exe" -runs="$RUNS" -seed="$SEED" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" -malloc_limit_mb="$MALLOC_MB" \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$dir/corpus" > "$dir/log" 2>&1 &
  pid=$!
  wait "$pid"
  rc=$?
  set -e
  end=$(date +%s.%N)
  rm -rf /dev/shm/limuon_fuzz_*_"$pid" /dev/shm/limuon_fuzz_*_"$pid"_* /dev/shm/limuon_fuzz_*_"$pid".*
  local execs accepted rejected findings cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  accepted=$(sed -n 's/^limuon_fuzz_stats: accepted=\([0-9]*\) rejected=\([0-9]*\)$/\1/p' "$dir/log" | tail -1)
  rejected=$(sed -n 's/^limuon_fuzz_stats: accepted=\([0-9]*\) rejected=\([0-9]*\)$/\2/p' "$dir/log" | tail -1)
  cov=$({ grep -o 'cov: [0-9]*' "$dir/log" || true; } | tail -1 | cut -d' ' -f2)
  findings=$(find "$dir/artifacts" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
  # A run that stopped early without leaving an artifact (killed, harness exit) is a failure too.
  if [ "$rc" -ne 0 ] && [ "$findings" -eq 0 ]; then findings=1; fi
  {
    echo "target fuzz_$t"
    echo "executions ${execs:-0}"
    echo "accepted ${accepted:-0}"
    echo "rejected ${rejected:-0}"
    echo "corpus $(find "$dir/corpus" -type f | wc -l)"
    echo "coverage ${cov:-0}"
    echo "findings $findings"
    echo "exit $rc"
    echo "seconds $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')"
  } > "$dir/result"
}

total_start=$(date +%s)
running=0
for t in $TARGETS; do
  t=${t#fuzz_}
  echo "fuzz.sh: fuzz_$t for $RUNS executions (log: $WORK/$t/log)"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true
total_seconds=$(($(date +%s) - total_start))

# ---- report ----
get() { sed -n "s/^$2 //p" "$WORK/$1/result"; }
failed=0
json="$BUILD/fuzz_summary.json"
{
  echo "{"
  echo "  \"runs_requested\": $RUNS, \"timeout_s\": $TIMEOUT, \"rss_limit_mb\": $RSS_MB, \"malloc_limit_mb\": $MALLOC_MB,"
  echo "  \"seed\": $SEED, \"wall_seconds\": $total_seconds,"
  echo "  \"targets\": ["
  sep=""
  for t in $TARGETS; do
    t=${t#fuzz_}
    [ -f "$WORK/$t/result" ] || { echo "fuzz.sh: fuzz_$t left no result" >&2; failed=1; continue; }
    printf '%s    {"target": "fuzz_%s", "executions": %s, "accepted": %s, "rejected": %s, "corpus": %s, "coverage": %s, "findings": %s, "exit": %s, "seconds": %s}' \
      "$sep" "$t" "$(get "$t" executions)" "$(get "$t" accepted)" "$(get "$t" rejected)" "$(get "$t" corpus)" \
      "$(get "$t" coverage)" "$(get "$t" findings)" "$(get "$t" exit)" "$(get "$t" seconds)"
    sep=$',\n'
  done
  echo
  echo "  ]"
  echo "}"
} > "$json"

printf '\n%-18s %11s %10s %10s %7s %6s %9s %8s\n' target executions accepted rejected corpus cov findings seconds
for t in $TARGETS; do
  t=${t#fuzz_}
  [ -f "$WORK/$t/result" ] || continue
  printf '%-18s %11s %10s %10s %7s %6s %9s %8s\n' "fuzz_$t" "$(get "$t" executions)" "$(get "$t" accepted)" \
    "$(get "$t" rejected)" "$(get "$t" corpus)" "$(get "$t" coverage)" "$(get "$t" findings)" "$(get "$t" seconds)"
  if [ "$(get "$t" findings)" != 0 ]; then
    failed=1
    echo "  FINDING in fuzz_$t (exit $(get "$t" exit)): $(ls "$WORK/$t/artifacts" | tr '\n' ' ')" >&2
    grep -m3 -E 'ERROR|SUMMARY|fuzz_[a-z_]+: ' "$WORK/$t/log" | sed 's/^/    /' >&2 || true
  elif [ "$(get "$t" executions)" -lt "$RUNS" ]; then
    failed=1
    echo "  fuzz_$t ran $(get "$t" executions) of $RUNS executions" >&2
  fi
done
echo "wall time ${total_seconds}s; summary: $json"
exit "$failed"
