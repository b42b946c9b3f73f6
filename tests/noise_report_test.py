#!/usr/bin/env python3
"""Test of experiments/study_noise_report.py: (1) on a real, tiny `limuon compare` (2 optimizer
families x 2 batch sizes x 3 seeds) every number in noise.json and noise.md is recomputed here
from the runs' summary.json files; (2) on a hand-written report, a sign change of the paired
difference is reported as a crossing with the right readings, and none when there is none;
(3) bad input fails with a message naming the problem.

Usage: noise_report_test.py path/to/limuon
"""
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from script_checks import check, finish, write

BIN = os.path.abspath(sys.argv[1])
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SCRIPT = os.path.join(ROOT, "experiments", "study_noise_report.py")
TMP = tempfile.mkdtemp(prefix="limuon-noise-test-")


def report(out, *extra):
    return subprocess.run([sys.executable, SCRIPT, out, *extra], capture_output=True, text=True, timeout=120)


def ci95(v):  # t(0.975; 2) = 4.303 for 3 seeds (tables)
    return {3: 4.303, 2: 12.706}[len(v)] * statistics.stdev(v) / math.sqrt(len(v))


try:
    # ---- 1. a real comparison
    corpus = write(os.path.join(TMP, "corpus.txt"),
                   "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i * 7 % 13} times.\n" for i in range(300)))
    spec = {"train": {"task": "lm", "model": "gpt2-tiny", "data": corpus, "block-size": 32, "eval-interval": 4,
                      "eval-batches": 2, "warmup": 1},
            "budget": {"samples": 16}, "seeds": [0, 1, 2],
            "configs": [{"name": f"{fam}-b{b}", "optimizer": opt, "batch-size": b, "lr": 0.02}
                        for fam, opt in (("muon", "muon"), ("adamw", "adamw")) for b in (2, 4)]}
    out = os.path.join(TMP, "noise")
    r = subprocess.run([BIN, "compare", "--spec", write(os.path.join(TMP, "spec.json"), spec), "--out", out],
                       capture_output=True, text=True, timeout=900)
    check("compare ran", r.returncode == 0, r.stdout[-2000:] + r.stderr)
    r = report(out)
    check("report written", r.returncode == 0 and os.path.exists(os.path.join(out, "noise.md")), r.stdout + r.stderr)
    nz = json.load(open(os.path.join(out, "noise.json")))
    md = open(os.path.join(out, "noise.md")).read()

    def loss(cfg, seed):
        return json.load(open(os.path.join(out, "runs", cfg, "lr0.02", f"seed{seed}", "summary.json")))["final_val_loss"]

    check("batches", nz["batches"] == [2, 4], nz["batches"])
    for fam in ("muon", "adamw"):
        for b in (2, 4):
            v = [loss(f"{fam}-b{b}", s) for s in (0, 1, 2)]
            row = next(x for x in nz["rows"] if x["family"] == fam and x["batch"] == b)
            st = row["final_val_loss"]
            check(f"{fam} b{b} mean and CI", st["n"] == 3 and math.isclose(st["mean"], statistics.mean(v), rel_tol=1e-12) and
                  math.isclose(st["ci95"], ci95(v), rel_tol=1e-9), (st, v))
            m, h = statistics.mean(v), ci95(v)
            check(f"{fam} b{b} in noise.md", f"{m:.4f} [{m - h:.4f}, {m + h:.4f}] (n=3), lr 0.02" in md, md)
        if fam == "muon":
            continue
        for b in (2, 4):
            d = [loss(f"adamw-b{b}", s) - loss(f"muon-b{b}", s) for s in (0, 1, 2)]
            p = next(x for x in nz["paired"] if x["family"] == fam and x["batch"] == b)
            m, h = statistics.mean(d), ci95(d)
            want = "higher" if m - h > 0 else "lower" if m + h < 0 else "not distinguishable"
            check(f"paired adamw b{b}", math.isclose(p["difference"]["mean"], m, rel_tol=1e-9, abs_tol=1e-12) and
                  math.isclose(p["difference"]["ci95"], h, rel_tol=1e-9) and p["reading"] == want, (p, m, h))
            check(f"paired adamw b{b} in noise.md", f"{m:+.4f} [{m - h:+.4f}, {m + h:+.4f}] (n=3): {want}" in md, md)
    png = os.path.join(out, "plots", "noise_vs_batch.png")
    if shutil.which("gnuplot"):
        check("plot drawn", os.path.exists(png) and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and
              "![noise_vs_batch.png]" in md, md[-500:])

    # ---- 2. crossings, from a hand-written report: limuon lower than muon at batch 4 (by 0.1 with
    # little spread), higher at 16 and 64; a second family always higher: one crossing only.
    fake = os.path.join(TMP, "fake")
    os.makedirs(fake)
    names = [f"{f}-b{b}" for f in ("muon", "limuon", "other") for b in (4, 16, 64)]
    write(os.path.join(fake, "spec.json"), {"spec": {"train": {"batch-size": 8}, "budget": {"samples": 100},
                                                     "configs": [{"name": n, "batch-size": int(n.split("-b")[1])} for n in names]}})
    base = {4: 2.0, 16: 1.5, 64: 1.8}
    shift = {"muon": {4: 0.0, 16: 0.0, 64: 0.0}, "limuon": {4: -0.1, 16: 0.1, 64: 0.3}, "other": {4: 0.5, 16: 0.5, 64: 0.5}}
    runs, configs = [], []
    for n in names:
        fam, b = n.split("-b")[0], int(n.split("-b")[1])
        chosen = n + "-beta0.3" if n == "limuon-b16" else n  # a tuned group whose variant won
        configs.append({"config": chosen, "group": n, "lr": 0.01})
        for s in (0, 1, 2):
            runs.append({"config": chosen, "lr": 0.01, "seed": s, "status": "done",
                         "final_val_loss": base[b] + s * 0.05 + shift[fam][b] + (0.001 * s if fam != "muon" else 0)})
    runs.append({"config": "muon-b4", "lr": 0.02, "seed": 0, "status": "done", "final_val_loss": 9.0})  # another lr: ignored
    write(os.path.join(fake, "report.json"), {"configs": configs, "runs": runs})
    r = report(fake)
    nz = json.load(open(os.path.join(fake, "noise.json")))
    cross = nz["crossings"]
    check("one crossing, limuon between 4 and 16", r.returncode == 0 and len(cross) == 1 and cross[0]["family"] == "limuon" and
          cross[0]["between"] == [4, 16] and cross[0]["readings"] == ["lower", "higher"], (r.stderr, cross))
    fmd = open(os.path.join(fake, "noise.md")).read()
    check("crossing in noise.md", "limuon crosses muon between batch 4 and 16" in fmd, fmd)
    p = next(x for x in nz["paired"] if x["family"] == "limuon" and x["batch"] == 16)
    check("a group's chosen variant is read and named", p["difference"]["n"] == 3 and
          math.isclose(p["difference"]["mean"], 0.1 + 0.001, rel_tol=1e-9) and "lr 0.01 (limuon-b16-beta0.3)" in fmd and
          "lr 0.01 (limuon-b4" not in fmd, (p, fmd))
    p = next(x for x in nz["paired"] if x["family"] == "limuon" and x["batch"] == 4)
    check("paired difference ignores other lrs", math.isclose(p["difference"]["mean"], -0.1 + 0.001, rel_tol=1e-9), p)
    shift["limuon"] = {4: 0.1, 16: 0.2, 64: 0.3}
    for x in runs:
        if x["config"].startswith("limuon-"):
            b = int(x["config"].split("-b")[1])
            x["final_val_loss"] = base[b] + x["seed"] * 0.05 + shift["limuon"][b] + 0.001 * x["seed"]
    write(os.path.join(fake, "report.json"), {"configs": configs, "runs": runs})
    r = report(fake)
    check("no crossing reported when none", r.returncode == 0 and json.load(open(os.path.join(fake, "noise.json")))["crossings"] == []
          and "No optimizer's mean paired difference" in open(os.path.join(fake, "noise.md")).read(), r.stderr)

    # ---- 3. bad input
    r = report(os.path.join(TMP, "nowhere"))
    check("missing directory named", r.returncode != 0 and "cannot read" in r.stderr and "Traceback" not in r.stderr, r.stderr)
    write(os.path.join(fake, "spec.json"), {"spec": {"train": {}, "configs": [{"name": "muon-large", "batch-size": 4}]}})
    r = report(fake)
    check("badly named config named", r.returncode != 0 and "'muon-large' is not named FAMILY-bN" in r.stderr, r.stderr)
    write(os.path.join(fake, "spec.json"), {"spec": {"train": {}, "configs": [{"name": "sgd-b4", "batch-size": 4}]}})
    r = report(fake)
    check("missing reference family named", r.returncode != 0 and "no family 'muon'" in r.stderr, r.stderr)
finally:
    shutil.rmtree(TMP, ignore_errors=True)

finish("noise_report_test: ")
