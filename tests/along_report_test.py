#!/usr/bin/env python3
"""Test of experiments/along_report.py on a hand-written comparison (spec.json, report.json and the
runs' metrics.jsonl): every paired difference along training is recomputed here from the curves the
test wrote, with the readings, the leads and "behind from" that follow; runs at another lr and
groups without evaluations are not read; a report that pairs nothing writes nothing; bad input fails
with a message naming the problem.

Usage: along_report_test.py [path/to/limuon]   (the binary is not used; CTest passes it to every script test)
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

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SCRIPT = os.path.join(ROOT, "experiments", "along_report.py")
TMP = tempfile.mkdtemp(prefix="limuon-along-test-")
T975 = {2: 12.706, 3: 4.303}  # t(0.975; n - 1), tables


def run(out):
    return subprocess.run([sys.executable, SCRIPT, out], capture_output=True, text=True, timeout=120)


def ci95(v):
    return T975[len(v)] * statistics.stdev(v) / math.sqrt(len(v))


try:
    out = os.path.join(TMP, "cmp")
    batch = 8
    spec = {"train": {"batch-size": batch}, "reference": "muon",
            "configs": [{"name": "muon"}, {"name": "lx", "beta": 0.1, "tune": {"beta": [0.6]}}, {"name": "ad"},
                        {"name": "empty"}]}
    os.makedirs(out)
    write(os.path.join(out, "spec.json"), {"spec": spec})
    # Curves at steps 1..5 (step 6 only in muon's runs: no partner, not read). lx: ahead at step 1,
    # its seeds spread at step 2 (not distinguishable), behind from step 3; its largest lead is step 1.
    # ad: behind everywhere. Seeds shift every curve alike, plus a little per-config noise.
    mu = [2.4, 2.3, 2.0, 1.9, 1.8, 1.7]
    curves = {"muon": lambda s, i: mu[i] + 0.01 * s,
              "lx-beta0.6": lambda s, i: mu[i] + 0.01 * s + [-0.2, 0.05 + 0.1 * (s - 1), 0.1, 0.12, 0.15][i] + 0.001 * s,
              "ad": lambda s, i: mu[i] + 0.01 * s + 0.3 + 0.002 * s * s}
    runs = []
    for cfg, f in curves.items():
        for s in (0, 1, 2):
            d = f"runs/{cfg}/lr0.01/seed{s}"
            steps = range(6) if cfg == "muon" else range(5)
            os.makedirs(os.path.join(out, d))
            write(os.path.join(out, d, "metrics.jsonl"), "".join(
                json.dumps(j) + "\n" for j in [{"step": 1, "loss": 3.0}] +
                [{"step": i + 1, "grad_evals": batch * (i + 1), "val_loss": f(s, i)} for i in steps]))
            runs.append({"config": cfg, "lr": 0.01, "seed": s, "status": "done", "dir": d})
    # Another lr of lx's variant, listed last: a reader that ignored the lr would take it for seed 0.
    d = "runs/lx-beta0.6/lr0.02/seed0"
    os.makedirs(os.path.join(out, d))
    write(os.path.join(out, d, "metrics.jsonl"), "".join(json.dumps({"step": i + 1, "grad_evals": 8 * (i + 1),
                                                                     "val_loss": 9.0}) + "\n" for i in range(5)))
    runs.append({"config": "lx-beta0.6", "lr": 0.02, "seed": 0, "status": "done", "dir": d})
    runs += [{"config": "empty", "lr": 0.01, "seed": s, "status": "done"} for s in (0, 1, 2)]  # no metrics
    report = {"configs": [{"config": "muon", "lr": 0.01}, {"config": "lx-beta0.6", "group": "lx", "lr": 0.01},
                          {"config": "ad", "lr": 0.01}, {"config": "empty", "lr": 0.01}],
              "runs": runs,
              "paired": [{"config": c, "reference": "muon", "metric": "final_val_loss"} for c in ("lx-beta0.6", "ad", "empty")]}
    write(os.path.join(out, "report.json"), report)
    r = run(out)
    check("written", r.returncode == 0 and os.path.exists(os.path.join(out, "along.md")), r.stdout + r.stderr)
    aj = json.load(open(os.path.join(out, "along.json")))
    md = open(os.path.join(out, "along.md")).read()
    check("reference and batch", aj["reference"] == "muon" and aj["batch"] == batch, aj)
    got = {g["config"]: g for g in aj["along_training"]}
    check("groups with evaluations, in report order", list(got) == ["lx-beta0.6", "ad"] and aj["no_evaluations"] == ["empty"],
          (list(got), aj["no_evaluations"]))
    for cfg in ("lx-beta0.6", "ad"):
        g = got.get(cfg, {"points": []})
        want = []
        for i in range(5):
            d = [curves[cfg](s, i) - curves["muon"](s, i) for s in (0, 1, 2)]
            m, h = statistics.mean(d), ci95(d)
            want.append(((i + 1) * batch, m, h, "higher" if m - h > 0 else "lower" if m + h < 0 else "not distinguishable"))
        pts = g["points"]
        check(f"{cfg}: every shared evaluation, recomputed", len(pts) == 5 and all(
            q["samples"] == x and math.isclose(q["difference"]["mean"], m, rel_tol=1e-9, abs_tol=1e-12) and
            math.isclose(q["difference"]["ci95"], h, rel_tol=1e-9) and q["reading"] == rd
            for q, (x, m, h, rd) in zip(pts, want)), (pts, want))
        trend = " / ".join(f"{want[i][1]:+.4f}" for i in (0, 2, 4))
        check(f"{cfg}: first / middle / last in along.md", f"| {cfg} | 5 (3) | {trend} |" in md, md)
    lx = got.get("lx-beta0.6", {})
    check("lx: ahead at the first evaluation only, behind from the third",
          [q["reading"] for q in lx.get("points", [])] == ["lower", "not distinguishable", "higher", "higher", "higher"] and
          lx.get("ahead_at") == [8] and lx.get("behind_from") == 24 and lx.get("largest_lead", {}).get("samples") == 8, lx)
    ad = got.get("ad", {})
    check("ad: behind from the start, no lead", ad.get("ahead_at") == [] and ad.get("behind_from") == 8 and
          ad.get("largest_lead") is None and "| ad | 5 (3) |" in md and "| none | none | 8 |" in md, (ad, md))
    check("groups without evaluations named", "No evaluations paired with the reference's yet: empty." in md, md)
    if shutil.which("gnuplot"):
        png = os.path.join(out, "plots", "gap_vs_samples.png")
        check("plot drawn", os.path.exists(png) and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and
              "![gap_vs_samples.png](plots/gap_vs_samples.png)" in md, md[-300:])

    # A report that pairs nothing: says so, exits 0, writes nothing.
    bare = os.path.join(TMP, "bare")
    os.makedirs(bare)
    write(os.path.join(bare, "spec.json"), {"spec": {"train": {"batch-size": 2}, "configs": [{"name": "a"}]}})
    write(os.path.join(bare, "report.json"), {"configs": [{"config": "a", "lr": 0.1}], "runs": []})
    r = run(bare)
    check("nothing paired: exit 0, nothing written", r.returncode == 0 and "pairs nothing" in r.stdout and
          not os.path.exists(os.path.join(bare, "along.md")), r.stdout + r.stderr)

    # Bad input: a message naming the problem, no traceback, the last along.md kept.
    r = run(os.path.join(TMP, "nowhere"))
    check("missing directory named", r.returncode != 0 and "cannot read" in r.stderr and "Traceback" not in r.stderr, r.stderr)
    write(os.path.join(out, "spec.json"), {"spec": dict(spec, configs=[dict(c, **{"batch-size": 16}) if c["name"] == "ad" else c
                                                                       for c in spec["configs"]])})
    r = run(out)
    check("another batch size refused", r.returncode != 0 and "'ad' trains at batch 16, muon at 8" in r.stderr and
          "Traceback" not in r.stderr, r.stderr)
    check("a refused report leaves along.md as it was", open(os.path.join(out, "along.md")).read() == md)
    write(os.path.join(out, "spec.json"), {"spec": spec})
    write(os.path.join(out, "report.json"), dict(report, paired=report["paired"] + [
        {"config": "ghost", "reference": "muon", "metric": "final_val_loss"}]))
    r = run(out)
    check("a paired config the report does not list is named", r.returncode != 0 and "'ghost'" in r.stderr and
          "Traceback" not in r.stderr, r.stderr)
finally:
    shutil.rmtree(TMP, ignore_errors=True)

finish("along_report_test: ")
