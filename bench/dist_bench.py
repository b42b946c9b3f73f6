#!/usr/bin/env python3
"""Data-parallel training on this machine, unsharded and with sharded optimizer state (--shard-state):
the same run (global batch fixed) on 1, 2 and 4 local ranks (--nproc, 1 thread per rank), for Muon,
LiMuon exact (no low-rank state) and LiMuon light exact (r = 32). One process per configuration, all
in one invocation. Per configuration:
  - ms/step: median over the steps after --warmup-steps (the ranks agree on each step's time);
  - optimizer state per rank (largest rank, and the largest over the ideal total/N);
  - bytes written to the sockets per step by the busiest rank (measured: /proc/self/io around each
    collective), against the lower bound of the ring all-reduce, 2(N-1)/N of the parameter bytes per
    gradient evaluation;
  - rank 0's orthogonalization time per step;
  - peak RSS of rank 0 (which, with sharded state, briefly holds the whole state while it writes the
    final checkpoint) and of the largest other rank.
Checkpoint traffic (the state gathered to rank 0) is reported apart and not in the wire column.
With more ranks than cores (4 ranks on 2 cores) the ranks share cores, so ms/step measures the
protocol's overhead, not a speed-up. Writes a Markdown table to stdout and JSON lines to --json.

Usage: .venv/bin/python bench/dist_bench.py [--bin build/limuon] [--model gpt2-byte-small] [--steps 12]
"""
import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="build/limuon")
ap.add_argument("--model", default="gpt2-byte-small")
ap.add_argument("--tokenizer", default="", help="e.g. gpt2 with --model distilgpt2")
ap.add_argument("--steps", type=int, default=12)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--block", type=int, default=128)
ap.add_argument("--warmup-steps", type=int, default=4)
ap.add_argument("--ranks", default="1,2,4")
ap.add_argument("--optimizers", default="muon,limuon-exact,limuon-light-exact")
ap.add_argument("--json", default="")
a = ap.parse_args()

# Every run writes DistilGPT2-sized checkpoints (hundreds of MB each): each run's folder goes as soon as its
# summary is read, and the whole scratch folder on any exit, so a long invocation cannot fill the disk.
scratch = tempfile.mkdtemp(prefix="limuon-dist-bench-")
atexit.register(shutil.rmtree, scratch, ignore_errors=True)
corpus = os.path.join(scratch, "corpus.txt")
with open(corpus, "w") as f:
    f.write("".join(f"Sentence {i}: the five boxing wizards jump quickly over {i % 97} lazy dogs.\n" for i in range(20000)))

OPTS = {"muon": ["--optimizer", "muon"],
        "limuon-exact": ["--optimizer", "limuon", "--lowrank-state", "none", "--storm", "exact"],
        "limuon-light-exact": ["--optimizer", "limuon", "--lowrank-state", "light", "--storm", "exact", "--rank", "32"]}
rows = []
for name in a.optimizers.split(","):
    for nproc in (int(x) for x in a.ranks.split(",")):
        for sharded in ([False] if nproc == 1 else [False, True]):
            out = tempfile.mkdtemp(prefix="run-", dir=os.path.dirname(corpus))
            cmd = [a.bin, "train", "--task", "lm", "--model", a.model, "--data", corpus, "--steps", str(a.steps),
                   "--batch-size", str(a.batch), "--block-size", str(a.block), "--eval-interval", str(a.steps),
                   "--eval-batches", "1", "--progress", "none", "--seed", "1", "--out", out, "--threads", "1",
                   "--nproc", str(nproc)] + OPTS[name] + (["--tokenizer", a.tokenizer] if a.tokenizer else [])
            cmd.append("--shard-state" if sharded else "--no-shard-state")
            print("+", " ".join(cmd), file=sys.stderr, flush=True)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
            s = json.load(open(os.path.join(out, "summary.json")))
            steps = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if '"loss"' in l]
            ms = statistics.median(x["ms_per_step"] for x in steps[a.warmup_steps:])
            shutil.rmtree(out, ignore_errors=True)
            dp = s["data_parallel"]
            ranks = dp["ranks"]
            states = [x["optimizer_state_bytes"] for x in ranks]
            evals_per_step = s["evaluations"] / s["steps"]
            lower = dp["allreduce_lower_bound_bytes_per_evaluation"] * evals_per_step
            wire = max(x["wire_bytes_sent_per_step"] for x in ranks)
            row = {"optimizer": name, "ranks": nproc, "sharded": sharded, "ms_per_step": ms,
                   "state_bytes_max_rank": max(states), "state_bytes_total": sum(states),
                   # the whole state once (sharded: the ranks' shares add up to it; replicated: each holds it)
                   "state_max_over_ideal": max(states) / ((sum(states) if sharded else states[0]) / nproc),
                   "wire_bytes_per_step_max_rank": wire, "allreduce_lower_bound_per_step": lower,
                   "wire_over_lower_bound": wire / lower if lower else None,
                   "orth_ms_per_step_rank0": 1000 * dp["orth_local_s"] / s["steps"],
                   "peak_rss_mb_rank0": ranks[0]["peak_rss_mb"],
                   "peak_rss_mb_other_ranks": max((x["peak_rss_mb"] for x in ranks[1:]), default=None),
                   "identical_weights": len({x["weights_checksum"] for x in ranks}) == 1,
                   "final_val_loss": s["final_val_loss"], "model": a.model, "steps": a.steps}
            rows.append(row)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(row) + "\n")

print(f"model {a.model}, batch {a.batch} x {a.block}, {a.steps} steps (median of the last {a.steps - a.warmup_steps}), 1 thread per rank\n")
print("| optimizer | ranks | state | ms/step | state/rank (MB) | max/ideal | wire/step/rank (MB) | lower bound (MB) | ratio | orth ms/step r0 | peak RSS r0 / others (MB) | same weights |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['optimizer']} | {r['ranks']} | {'sharded' if r['sharded'] else 'replicated'} | {r['ms_per_step']:.0f} | "
          f"{r['state_bytes_max_rank'] / 1e6:.2f} | {r['state_max_over_ideal']:.2f} | {r['wire_bytes_per_step_max_rank'] / 1e6:.2f} | "
          f"{r['allreduce_lower_bound_per_step'] / 1e6:.2f} | {(r['wire_over_lower_bound'] or 0):.2f} | {r['orth_ms_per_step_rank0']:.1f} | "
          f"{r['peak_rss_mb_rank0']:.0f} / {'-' if r['peak_rss_mb_other_ranks'] is None else format(r['peak_rss_mb_other_ranks'], '.0f')} | "
          f"{'yes' if r['identical_weights'] else 'NO'} |")
