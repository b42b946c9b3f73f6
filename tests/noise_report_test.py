#!/usr/bin/env python3
"""Test of experiments/study_noise_report.py: (1) on a real, tiny `limuon compare` (2 optimizer
families x 2 batch sizes x 3 seeds) every number in noise.json and noise.md is recomputed here
from the runs' summary.json files; (2) on a hand-written report, a sign change of the paired
difference is reported as a crossing with the right readings, and none when there is none; a
lead held only part of the way is found along training; with
--with, another comparison's groups join at their batch size, and one that trained something else
is refused; (3) bad input fails with a message naming the problem.

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


def close_enough(a, b):
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def reading_of(m, h):
    return "higher" if m - h > 0 else "lower" if m + h < 0 else "not distinguishable"


def ci95(v):  # t(0.975; 2) = 4.303 for 3 seeds (tables)
    return {3: 4.303, 2: 12.706}[len(v)] * statistics.stdev(v) / math.sqrt(len(v))


try:
    # ---- 1. a real comparison
    corpus = write(os.path.join(TMP, "corpus.txt"),
                   "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i * 7 % 13} times.\n" for i in range(300)))
    spec = {"train": {"task": "lm", "model": "gpt2-tiny", "data": corpus, "block-size": 32, "eval-interval": 1,
                      "eval-batches": 2, "warmup": 1},
            "budget": {"samples": 16}, "seeds": [0, 1, 2],
            "configs": [{"name": f"{fam}-b{b}", "optimizer": opt, "batch-size": b, "lr": 0.02}
                        for fam, opt in (("muon", "muon"), ("adamw", "adamw")) for b in (2, 4)] +
                       [{"name": f"lx-b{b}", "optimizer": "limuon", "storm": "exact", "beta": 0.5, "batch-size": b, "lr": 0.02}
                        for b in (2, 4)]}
    out = os.path.join(TMP, "noise")
    r = subprocess.run([BIN, "compare", "--spec", write(os.path.join(TMP, "spec.json"), spec), "--out", out],
                       capture_output=True, text=True, timeout=900)
    check("compare ran", r.returncode == 0, r.stdout[-2000:] + r.stderr)
    # Quiet step times (as a study's timing.json gives them), so the seconds axis is deterministic.
    quiet = {"muon": 10.0, "adamw": 8.0, "lx": 20.0}
    write(os.path.join(out, "timing.json"), {"ms_per_step": {f"{f}-b{b}": v for f, v in quiet.items() for b in (2, 4)},
                                             "source": "test figures"})
    r = subprocess.run([BIN, "compare", "--spec", os.path.join(TMP, "spec.json"), "--out", out, "--report-only"],
                       capture_output=True, text=True, timeout=300)
    check("report with timing.json", r.returncode == 0, r.stdout[-2000:] + r.stderr)
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
    # The other two readings, restated: per batch, the fewest gradient evaluations (shortest steps x
    # ms/step) any chosen run reached at its last evaluation; each run's loss interpolated there.
    # LiMuon exact spends 2 evaluations per sample after its first step, so its reading at equal
    # evaluations lies between two of its evaluations, not at its end.
    rj = json.load(open(os.path.join(out, "report.json")))
    ms_of = {(x["config"], x["seed"]): x["ms_per_step"] for x in rj["runs"]}
    check("runs carry the quiet ms/step", all(v == quiet[k[0].split("-b")[0]] for k, v in ms_of.items()), ms_of)
    check("noise.md names the seconds' source", "timing.json's quiet ms/step (test figures)" in md)

    def evals(cfg, seed):
        with open(os.path.join(out, "runs", cfg, "lr0.02", f"seed{seed}", "metrics.jsonl")) as f:
            return [(j["step"], j["grad_evals"], j["val_loss"]) for j in map(json.loads, f) if "val_loss" in j]

    def interp(pts, x):
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if x0 <= x <= x1:
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y0
        return pts[-1][1] if pts and pts[-1][0] == x else None

    fams = ("muon", "adamw", "lx")
    for b in (2, 4):
        ev = {(f, sd): evals(f"{f}-b{b}", sd) for f in fams for sd in (0, 1, 2)}
        e_pt = min(e[-1][1] for e in ev.values())
        s_pt = min(e[-1][0] * ms_of[(f"{f}-b{b}", sd)] / 1000 for (f, sd), e in ev.items())
        check(f"b{b}: the equal-evaluations point and LiMuon exact past it", nz["equal_grad_evals"][str(b)] == e_pt and
              close_enough(nz["equal_seconds"][str(b)], s_pt) and all(ev[("lx", sd)][-1][1] > e_pt for sd in (0, 1, 2)),
              (nz["equal_grad_evals"], e_pt, nz["equal_seconds"], s_pt))
        for fam in ("adamw", "lx"):
            for axis, x_pt, col in (("grad_evals", e_pt, 1), ("seconds", s_pt, None)):
                d = []
                for sd in (0, 1, 2):
                    def pts(f):
                        return [((p[1] if col else p[0] * ms_of[(f"{f}-b{b}", sd)] / 1000), p[2]) for p in ev[(f, sd)]]
                    d.append(interp(pts(fam), x_pt) - interp(pts("muon"), x_pt))
                p = next(x for x in nz["paired"] if x["family"] == fam and x["batch"] == b)
                got = p[f"difference_at_equal_{axis}"]
                m, h = statistics.mean(d), ci95(d)
                check(f"paired {fam} b{b} at equal {axis}", got["n"] == 3 and close_enough(got["mean"], m) and
                      close_enough(got["ci95"], h) and p[f"reading_at_equal_{axis}"] == reading_of(m, h), (got, d))
                check(f"paired {fam} b{b} at equal {axis} in noise.md", f"{m:+.4f} [{m - h:+.4f}, {m + h:+.4f}] (n=3)" in md)
    lx2 = next(x for x in nz["paired"] if x["family"] == "lx" and x["batch"] == 2)
    check("LiMuon exact: equal evaluations is not the final reading",
          abs(lx2["difference_at_equal_grad_evals"]["mean"] - lx2["difference"]["mean"]) > 1e-6, lx2)
    # Along training: the paired difference at every evaluation step both runs of each seed have.
    for b in (2, 4):
        for fam in ("adamw", "lx"):
            g = next((x for x in nz["along_training"] if x["family"] == fam and x["batch"] == b), None)
            cur = {sd: ({st: v for st, _, v in evals(f"{fam}-b{b}", sd)}, {st: v for st, _, v in evals(f"muon-b{b}", sd)})
                   for sd in (0, 1, 2)}
            steps = sorted(set.intersection(*[set(x) & set(y) for x, y in cur.values()]))
            want = []
            for st in steps:
                d = [x[st] - y[st] for x, y in cur.values()]
                want.append((st * b, statistics.mean(d), ci95(d)))
            ok = g is not None and g["seeds"] == [0, 1, 2] and len(g["points"]) == len(want) > 2 and all(
                q["samples"] == x and close_enough(q["difference"]["mean"], m) and close_enough(q["difference"]["ci95"], h)
                and q["reading"] == reading_of(m, h) for q, (x, m, h) in zip(g["points"], want))
            check(f"along training {fam} b{b}", ok, (g, want))
            if not ok:
                continue
            check(f"along training {fam} b{b}: its final point is the final paired difference",
                  close_enough(want[-1][1], next(x for x in nz["paired"] if x["family"] == fam and x["batch"] == b)
                               ["difference"]["mean"]), (want[-1], g["points"][-1]))
            ahead = [x for x, m, h in want if m + h < 0]
            behind = None
            for x, m, h in reversed(want):
                if m - h <= 0:
                    break
                behind = x
            check(f"along training {fam} b{b}: ahead / behind-from", g["ahead_at"] == ahead and g["behind_from"] == behind,
                  (g["ahead_at"], ahead, g["behind_from"], behind))
    check("along training in noise.md", "## Along training, at equal samples, paired with muon" in md and
          "| lx | 2 | " in md and "| adamw | 4 | " in md, md[-1500:])
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
    # Evaluations along training for limuon-b4 and muon-b4: limuon ahead at steps 1 and 2 (samples 4
    # and 8; the larger lead at 8), not distinguishable at step 3 (its seeds spread), behind from step
    # 4 on; muon's extra evaluation at step 6 has no partner and is not read.
    mu = [2.4, 2.3, 2.0, 1.9, 1.8]
    li = [2.35, 2.1, 2.05, 2.0, 1.9]
    for x in runs:
        if x["config"] in ("limuon-b4", "muon-b4") and x["lr"] == 0.01:
            x["dir"] = f"runs/{x['config']}/seed{x['seed']}"
            curve = [v + 0.01 * x["seed"] + (0.001 * x["seed"] + (0.1 * (x["seed"] - 1) if i == 2 else 0)
                                             if x["config"] == "limuon-b4" else 0)
                     for i, v in enumerate(li if x["config"] == "limuon-b4" else mu)]
            lines = [{"step": i + 1, "grad_evals": 4 * (i + 1), "val_loss": v} for i, v in enumerate(curve)]
            if x["config"] == "muon-b4":
                lines.append({"step": 6, "grad_evals": 24, "val_loss": 1.7})
            os.makedirs(os.path.join(fake, x["dir"]), exist_ok=True)
            with open(os.path.join(fake, x["dir"], "metrics.jsonl"), "w") as f:
                f.write("".join(json.dumps(j) + "\n" for j in [{"step": 1, "loss": 3.0}] + lines))
    write(os.path.join(fake, "report.json"), {"configs": configs, "runs": runs})
    r = report(fake)
    nz = json.load(open(os.path.join(fake, "noise.json")))
    g = [x for x in nz["along_training"] if x["family"] == "limuon"]
    check("along training: a lead part of the way", r.returncode == 0 and len(g) == 1 and g[0]["batch"] == 4 and
          [q["samples"] for q in g[0]["points"]] == [4, 8, 12, 16, 20] and g[0]["ahead_at"] == [4, 8] and
          g[0]["behind_from"] == 16 and g[0]["largest_lead"]["samples"] == 8 and
          math.isclose(g[0]["largest_lead"]["difference"]["mean"], -0.2 + 0.001, rel_tol=1e-9) and
          [q["reading"] for q in g[0]["points"]] == ["lower", "lower", "not distinguishable", "higher", "higher"],
          (r.stderr, g))
    fmd = open(os.path.join(fake, "noise.md")).read()
    check("along training: the lead in noise.md", "| limuon | 4 | 5 (3) | -0.0490 / +0.0510 / +0.1010 | 4, 8 | -0.1990 [" in fmd and "(n=3) (8) | 16 |" in fmd,
          fmd[fmd.find("## Along"):])
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

    # ---- 2b. --with: another comparison's groups named FAMILY join at its own batch (8 here), read
    # from its own report; limuon lower than muon there, so the (all higher) curve now crosses twice.
    main = os.path.join(TMP, "main")
    os.makedirs(main)
    mspec = {"train": {"batch-size": 8, "warmup": 3}, "budget": {"samples": 100},
             "configs": [{"name": "muon"}, {"name": "limuon", "beta": 0.1, "tune": {"beta": [0.6]}}, {"name": "adamw"}]}
    write(os.path.join(main, "spec.json"), {"spec": mspec})
    mruns = [{"config": c, "lr": 0.02, "seed": s, "status": "done", "final_val_loss": 1.9 + s * 0.05 + d}
             for c, d in (("muon", 0.0), ("limuon-beta0.6", -0.05 + 0.002), ("adamw", 0.4)) for s in (0, 1, 2)]
    write(os.path.join(main, "report.json"), {"configs": [{"config": "muon", "lr": 0.02},
                                                          {"config": "limuon-beta0.6", "group": "limuon", "lr": 0.02},
                                                          {"config": "adamw", "lr": 0.02}], "runs": mruns})
    r = report(fake, "--with", main)
    nz = json.load(open(os.path.join(fake, "noise.json")))
    fmd = open(os.path.join(fake, "noise.md")).read()
    check("--with: batch 8 joins", r.returncode == 0 and nz["batches"] == [4, 8, 16, 64] and
          nz["with"] == [{"dir": main, "batches": [8], "groups": ["limuon", "muon"], "timing": None}], (r.stderr, nz.get("with")))
    row = next(x for x in nz["rows"] if x["family"] == "limuon" and x["batch"] == 8)
    check("--with: its chosen variant's runs", row["config"] == "limuon-beta0.6" and row["final_val_loss"]["n"] == 3 and
          math.isclose(row["final_val_loss"]["mean"], 1.95 - 0.048, rel_tol=1e-12), row)
    check("--with: a family it lacks stays empty, a group of no family is left out",
          next(x for x in nz["rows"] if x["family"] == "other" and x["batch"] == 8)["final_val_loss"]["n"] == 0 and
          not any(x["family"] == "adamw" for x in nz["rows"]), nz["rows"])
    p = next(x for x in nz["paired"] if x["family"] == "limuon" and x["batch"] == 8)
    check("--with: paired within batch 8", p["difference"]["n"] == 3 and
          math.isclose(p["difference"]["mean"], -0.048, rel_tol=1e-9) and p["reading"] == "lower", p)
    cross = [(c["between"], c["readings"]) for c in nz["crossings"] if c["axis"] == "samples"]
    check("--with: crossings on both sides of batch 8",
          cross == [([4, 8], ["higher", "lower"]), ([8, 16], ["lower", "higher"])], nz["crossings"])
    check("--with: named in noise.md", f"Batch 8 comes from the comparison in `{main}`" in fmd and
          "| batch 4 | batch 8 | batch 16 | batch 64 |" in fmd and "lr 0.02 (limuon-beta0.6)" in fmd, fmd[:1500])
    for what, change, message in (
            ("another dropout", {"train": {"batch-size": 8, "dropout": 0.2}}, "group 'muon' trained with dropout = 0.2"),
            ("another optimizer flag", {"configs": [{"name": "limuon", "rank": 8}]}, "group 'limuon' trained with rank = 8"),
            ("another budget", {"budget": {"samples": 200}}, 'its budget {"samples": 200} is not'),
            ("a batch already in the table", {"train": {"batch-size": 16}}, "batch 16 is already in the table"),
            ("no family's group", {"configs": [{"name": "sgd"}]}, "no group named like a family")):
        write(os.path.join(main, "spec.json"), {"spec": dict(mspec, **change)})
        r = report(fake, "--with", main)
        check(f"--with refuses {what}", r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr)
    # every batch of a family is checked against the joined group, not only the first one listed
    write(os.path.join(main, "spec.json"), {"spec": mspec})
    fspec = json.load(open(os.path.join(fake, "spec.json")))
    write(os.path.join(fake, "spec.json"), {"spec": dict(fspec["spec"], configs=[
        dict(c, rank=8) if c["name"] == "limuon-b64" else c for c in fspec["spec"]["configs"]])})
    r = report(fake, "--with", main)
    check("--with refuses a flag only a later batch of the family sets", r.returncode != 0 and
          "group 'limuon' trained with rank = null, this study's limuon-b64 with 8" in r.stderr, r.stderr)
    write(os.path.join(fake, "spec.json"), fspec)
    check("--with: a refused comparison leaves the last noise.md as it was", open(os.path.join(fake, "noise.md")).read() == fmd)

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
