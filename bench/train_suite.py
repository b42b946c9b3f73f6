#!/usr/bin/env python3
"""Training-step throughput of limuon's C++ GPT-2 and ViT against the same models in PyTorch
Python (bench/train_step_pytorch.py): same shapes, threads and optimizer (AdamW), one run,
alternating implementations. Also the GPT-2 tokenizer's throughput. Writes results.md.

Usage: .venv/bin/python bench/train_suite.py [--bin build/limuon] [--out out/bench-train]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [("lm", "gpt2-byte-small", 8, 128), ("lm", "gpt2-mini", 8, 128), ("image", "vit-tiny", 64, 0)]


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/limuon")
    ap.add_argument("--out", default="out/bench-train")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows, lines = [], ["| task | model | batch | C++ ms/step | PyTorch ms/step | C++/PyTorch throughput |", "|---|---|---|---|---|---|"]
    for task, model, batch, block in CASES:
        ours, theirs = [], []
        for _ in range(a.rounds):  # alternate, so drift in machine load hits both
            common = ["--task", task, "--model", model, "--batch-size", str(batch)] + (["--block-size", str(block)] if block else [])
            ours += run([a.bin, "bench", "train-step", "--json"] + common)
            theirs += run([sys.executable, os.path.join(HERE, "train_step_pytorch.py")] + common)
        o = statistics.median(r["median_ms"] for r in ours)
        t = statistics.median(r["median_ms"] for r in theirs)
        rows += ours + theirs
        lines.append(f"| {task} | {model} | {batch}{'×' + str(block) if block else ''} | {o:.1f} | {t:.1f} | {t / o:.2f}x |")
    with open(os.path.join(a.out, "results.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    text = "# Training-step throughput: limuon C++ vs PyTorch Python (AdamW, fp32, same threads)\n\n" + "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
