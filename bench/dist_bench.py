#!/usr/bin/env python3
"""Data-parallel scaling of `limuon train` on this machine: the same run (global batch fixed) on
1 and 2 local ranks (--nproc), for Muon and LiMuon. Reports, per rank:
  - orthogonalization time per step (rank 0's share; sharding should roughly halve it),
  - end-to-end steps/s (median ms/step after warm-up) and the 2-rank/1-rank ratio,
  - communication per step: all-reduce payload against the lower bound (every rank must
    contribute its whole gradient once per gradient evaluation; a ring all-reduce then moves
    2(N-1)/N of it per rank, which Gloo's ring achieves), plus the all-gathered orthogonalization
    results that sharding adds.
Writes a Markdown table to stdout and JSON lines to --json.

Usage: .venv/bin/python bench/dist_bench.py [--bin build/limuon] [--steps 30] [--model gpt2-byte-small]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="build/limuon")
ap.add_argument("--model", default="gpt2-byte-small")
ap.add_argument("--steps", type=int, default=30)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--block", type=int, default=128)
ap.add_argument("--warmup-steps", type=int, default=5)
ap.add_argument("--json", default="")
ap.add_argument("--threads-per-rank", type=int, default=0,
                help="intra-op threads of every rank (0: the launcher's default, cores / ranks)")
a = ap.parse_args()

corpus = os.path.join(tempfile.mkdtemp(prefix="limuon-dist-bench-"), "corpus.txt")
with open(corpus, "w") as f:
    f.write("".join(f"Sentence {i}: the five boxing wizards jump quickly over {i % 97} lazy dogs.\n" for i in range(20000)))

OPTS = [("muon", ["--optimizer", "muon"]),
        ("limuon none exact", ["--optimizer", "limuon", "--lowrank-state", "none", "--storm", "exact"]),
        ("limuon light approx r32", ["--optimizer", "limuon", "--lowrank-state", "light", "--storm", "approx", "--rank", "32"])]
rows = []
for name, opt in OPTS:
    for nproc in (1, 2):
        out = tempfile.mkdtemp(prefix="run-", dir=os.path.dirname(corpus))
        cmd = [a.bin, "train", "--task", "lm", "--model", a.model, "--data", corpus, "--steps", str(a.steps),
               "--batch-size", str(a.batch), "--block-size", str(a.block), "--eval-interval", str(a.steps), "--eval-batches", "1",
               "--progress", "none", "--seed", "1", "--out", out, "--nproc", str(nproc)] + opt
        if a.threads_per_rank:
            cmd += ["--threads", str(a.threads_per_rank)]
        print("+", " ".join(cmd), file=sys.stderr, flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
        s = json.load(open(os.path.join(out, "summary.json")))
        steps = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if '"loss"' in l]
        ms = statistics.median(x["ms_per_step"] for x in steps[a.warmup_steps:])
        dp = s["data_parallel"]
        with open(os.path.join(out, "model.safetensors"), "rb") as f:  # every parameter once (fp32)
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        grad_bytes = sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")
        evals = s["evaluations"]
        payload_per_step = dp["allreduce_bytes"] / s["steps"]
        bound_per_step = grad_bytes * evals / s["steps"]
        rows.append({"optimizer": name, "ranks": nproc, "ms_per_step": ms, "steps_per_s": 1000 / ms,
                     "orth_ms_per_step_rank0": 1000 * dp["orth_local_s"] / s["steps"],
                     "orth_matrices_rank0": dp["orth_local_matrices"], "orth_matrices_total": dp["orth_total_matrices"],
                     "allreduce_bytes_per_step": payload_per_step, "lower_bound_bytes_per_step": bound_per_step, "evaluations_per_step": evals / s["steps"],
                     "allgather_bytes_per_step": dp["allgather_bytes_received"] / s["steps"]})

print(f"model {a.model}, global batch {a.batch} x {a.block} tokens, {a.steps} steps (median after {a.warmup_steps}), "
      f"{os.cpu_count()} cores shared by the ranks, "
      f"{a.threads_per_rank or 'cores/ranks'} thread(s) per rank\n")
print("| optimizer | ranks | ms/step | steps/s vs 1 rank | orth ms/step (rank 0) | matrices orth. by rank 0 | "
      "all-reduce MB/step (lower bound) | gradient evals/step | all-gather MB/step received |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    base = next(x for x in rows if x["optimizer"] == r["optimizer"] and x["ranks"] == 1)
    print(f"| {r['optimizer']} | {r['ranks']} | {r['ms_per_step']:.0f} | {base['ms_per_step'] / r['ms_per_step']:.2f}x | "
          f"{r['orth_ms_per_step_rank0']:.1f} | {r['orth_matrices_rank0']}/{r['orth_matrices_total']} | "
          f"{r['allreduce_bytes_per_step'] / 1e6:.2f} ({r['lower_bound_bytes_per_step'] / 1e6:.2f}) | {r['evaluations_per_step']:.2f} | {r['allgather_bytes_per_step'] / 1e6:.2f} |")
if a.json:
    with open(a.json, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
