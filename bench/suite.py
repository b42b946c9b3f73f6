#!/usr/bin/env python3
"""The benchmark suite behind scripts/bench.sh: runs `limuon bench` and the plain PyTorch Muon in
one run, checks the targets of the foundation issue, and writes results.jsonl + results.md.

Targets checked: ns5 fp32 on 768x3072 >= 85% of the same-run matmul GFLOP/s; batched same-shape
orthogonalization faster than a loop; LiMuon light (r=32) step <= 0.05x the Muon ns5 step;
persistent state bytes == the ALGORITHMS.md §6 formula; our Muon >= 1.2x a plain PyTorch Muon.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"benchmark command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/limuon")
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny shapes, for smoke tests")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    thr = ["--threads", str(a.threads)] if a.threads else []
    shape = "64x256" if a.quick else "768x3072"
    model = "tiny" if a.quick else "distilgpt2"
    rows = []
    rows += run([a.bin, "bench", "orth", "--shape", shape, "--method", "all", "--json"] + thr)
    rows += run([a.bin, "bench", "orth", "--shape", shape, "--method", "rsvd", "--rank", "32", "--power-iters", "1", "--json"] + thr)
    # Batching: overhead-bound small matrices (74 of them, as in the public report) and a
    # compute-bound case (DistilGPT2's six 768x768 attention projections) for comparison.
    rows += run([a.bin, "bench", "orth", "--shape", "64x64", "--batch", "74", "--method", "ns5", "--json",
                 "--repeats", "21"] + thr)
    rows += run([a.bin, "bench", "orth", "--shape", "32x32", "--batch", "74", "--method", "ns5", "--json",
                 "--repeats", "21"] + thr)
    rows += run([a.bin, "bench", "orth", "--shape", "768x768" if not a.quick else "64x64", "--batch", "6",
                 "--method", "ns5", "--json", "--repeats", "5"] + thr)
    steps = [["--optimizer", "adamw"], ["--optimizer", "muon"], ["--optimizer", "muon", "--orthogonalizer", "polar_express"],
             ["--optimizer", "limuon"], ["--optimizer", "limuon", "--lowrank-state", "paper", "--rank", "32"],
             ["--optimizer", "limuon", "--lowrank-state", "light", "--rank", "32"],
             ["--optimizer", "limuon", "--lowrank-state", "light", "--rank", "64"],
             ["--optimizer", "limuon", "--storm", "approx"],
             ["--optimizer", "limuon", "--storm", "approx", "--lowrank-state", "light", "--rank", "32"]]
    for s in steps:
        rows += run([a.bin, "bench", "step", "--model", model, "--json"] + s + thr)
    py = [sys.executable, os.path.join(HERE, "muon_pytorch.py"), "--model", model] + thr
    rows += run(py)
    rows += run([a.bin, "bench", "step", "--model", model, "--optimizer", "muon", "--json"] + thr)

    with open(os.path.join(a.out, "results.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")

    orth = [r for r in rows if r["bench"] == "orth"]
    step = [r for r in rows if r["bench"] == "step"]
    md = ["# limuon benchmark results", "",
          f"threads: {orth[0]['threads']}; command: `scripts/bench.sh`", "",
          "## Orthogonalization (fp32, Gaussian input; errors vs exact float64 SVD)", "",
          "| method | shape | batch | median ms | GFLOP/s | same-run matmul GFLOP/s | ratio | ortho err | polar rel err | loop ms |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in orth:
        name = r["method"] + (f" r={r['rank']} q={r['power_iters']}" if r["method"] == "rsvd" else "")
        md.append(f"| {name} | {r['shape']} | {r['batch']} | {r['median_ms']:.2f} | {r['gflops']:.1f} | "
                  f"{r['matmul_gflops']:.1f} | {r['gflops_vs_matmul']:.2f} | {r['ortho_err']:.3g} | "
                  f"{r['polar_rel_err']:.3g} | {r.get('loop_median_ms', float('nan')):.2f} |")
    md += ["", f"## One optimizer step over the 24 hidden matrices of {model} (fp32, random gradients)", "",
           "| optimizer | median ms | gradient evals / step | state bytes | §6 formula bytes |", "|---|---|---|---|---|"]
    for r in step:
        md.append(f"| {r.get('config', r['optimizer'])} | {r['median_ms']:.1f} | {r.get('grad_evals_per_step', '')} | "
                  f"{r.get('state_bytes', '')} | {r.get('formula_state_bytes', '')} |")

    checks = []
    ns5 = next(r for r in orth if r["method"] == "ns5" and r["batch"] == 1)
    checks.append(("ns5 fp32 >= 85% of same-run matmul GFLOP/s", ns5["gflops_vs_matmul"] >= 0.85,
                   f"{ns5['gflops_vs_matmul']:.2f}x"))
    for r in orth:
        if r["batch"] == 74:
            checks.append((f"batched {r['shape']} x{r['batch']} faster than a loop", r["batch_speedup"] > 1.0,
                           f"{r['batch_speedup']:.2f}x"))
        elif r["batch"] > 1:
            checks.append((f"(info) batched {r['shape']} x{r['batch']} vs loop, compute-bound on CPU", True,
                           f"{r['batch_speedup']:.2f}x"))
    muon = [r for r in step if r.get("config") == "muon/ns5"]
    light = next(r for r in step if r.get("config") == "limuon/light/exact/ns5/r32")
    muon_ms = muon[0]["median_ms"]
    checks.append(("LiMuon light r=32 step <= 0.05x Muon ns5 step", light["median_ms"] <= 0.05 * muon_ms,
                   f"{light['median_ms'] / muon_ms:.3f}x"))
    ok_bytes = all(r["state_bytes"] == r["formula_state_bytes"] for r in step if "state_bytes" in r)
    checks.append(("state bytes == §6 formula for every optimizer", ok_bytes, ""))
    pyt = next(r for r in step if r["optimizer"] == "pytorch_muon")
    ours = muon[-1]["median_ms"]
    checks.append(("our Muon >= 1.2x faster than plain PyTorch Muon", pyt["median_ms"] / ours >= 1.2,
                   f"{pyt['median_ms'] / ours:.2f}x ({pyt['median_ms']:.0f} vs {ours:.0f} ms, torch {pyt['torch']})"))
    md += ["", "## Targets", "", "| target | met | measured |", "|---|---|---|"]
    for name, ok, detail in checks:
        md.append(f"| {name} | {'yes' if ok else 'NO'} | {detail} |")
    text = "\n".join(md) + "\n"
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
