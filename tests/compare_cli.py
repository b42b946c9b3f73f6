#!/usr/bin/env python3
"""End-to-end test of `limuon compare` on tiny configs: the runs share model initialisation and data
order, budgets in gradient evaluations and samples stop each run where they should, report.md /
report.json / PNG plots are written and every number in them equals what is recomputed here from
the runs' metrics.jsonl and summary.json, an interrupted comparison (stopped mid-run, or killed)
resumes without redoing finished runs, failed runs are reported, and bad specs fail clearly.

Usage: compare_cli.py path/to/limuon
"""
import fcntl
import gzip
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import script_checks
from script_checks import write

BIN = os.path.abspath(sys.argv[1])
TMP = tempfile.mkdtemp(prefix="limuon-compare-test-")
T0 = time.time()


def run(args, timeout=600, env=None):
    return subprocess.run([BIN] + args, capture_output=True, text=True, errors="replace", timeout=timeout, env=env)


def check(name, cond, detail=""):
    script_checks.check(name, cond, detail, keep=3000)




def run_set(d):
    """The (config, lr, seed) of every run directory under a comparison's runs/."""
    rd = os.path.join(d, "runs")
    return {(cfg, float(lr[2:]), int(sd[4:])) for cfg in os.listdir(rd)
            for lr in os.listdir(os.path.join(rd, cfg)) for sd in os.listdir(os.path.join(rd, cfg, lr))}


def check_resumed_search(label, spec_path, full_out, full_stdout, first):
    """Interrupt a fresh copy of a finished comparison inside the first run the search added beyond
    its starting plan (`first(config, lr)` picks it from the full run's progress lines), run it again,
    and check it resumes that run and ends with the same runs: an unfinished run must not steer the
    search (a restarted study once dropped its interrupted lr-walk run and tuned on without it)."""
    lines = [l for l in full_stdout.splitlines() if l.startswith("[")]
    k = next((i for i, l in enumerate(lines) if (m := re.match(r"\[\d+/\d+\] (\S+) lr (\S+) seed", l)) and
              first(m.group(1), float(m.group(2)))), None)
    check(f"{label}: the full run's progress names the search's first candidate", k is not None and k > 0, full_stdout)
    if not k:
        return
    d = full_out + "-resumed"
    r = run(["compare", "--spec", spec_path, "--out", d, "--stop-after-runs", str(k), "--stop-after-steps", "2"])
    check(f"{label}: interrupted inside the candidate", r.returncode == 0 and "stopped after step 2" in r.stdout,
          r.stdout[-3000:] + r.stderr)
    r = run(["compare", "--spec", spec_path, "--out", d])
    check(f"{label}: run again, the interrupted candidate resumes", r.returncode == 0 and "resuming from step 2" in r.stdout,
          r.stdout[-3000:] + r.stderr)
    check(f"{label}: run again, the search ends with the uninterrupted one's runs", run_set(d) == run_set(full_out),
          (sorted(run_set(d)), sorted(run_set(full_out))))


def is_png(path):
    if not os.path.isfile(path) or os.path.getsize(path) < 1000:
        return False
    with open(path, "rb") as f:
        head = f.read(24)
    # signature, then the IHDR chunk with width and height
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and int.from_bytes(head[16:20], "big") > 100


text = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i * 7 % 13} times.\n" for i in range(400))
corpus = write(os.path.join(TMP, "corpus.txt"), text)

# ---- 1. a tiny LM comparison: 2 configs (one with a 2-lr sweep) x 2 seeds = 6 runs, budget in
# gradient evaluations (4 samples per step: AdamW 8 steps, LiMuon storm=exact 5 steps).
spec = {
    "description": "tiny test comparison",
    "train": {"task": "lm", "model": "gpt2-tiny", "data": corpus, "batch_size": 4, "block-size": 32,
              "eval-interval": 2, "eval-batches": 2, "warmup": 1},
    "budget": {"grad_evals": 32},
    "seeds": [0, 1],
    "configs": [
        {"name": "adamw", "optimizer": "adamw", "lr": [0.001, 0.003]},
        {"name": "limuon-exact", "optimizer": "limuon", "storm": "exact", "adamw-lr": 0.003, "lr": 0.02},
    ],
}
spec_path = write(os.path.join(TMP, "spec.json"), spec)
out = os.path.join(TMP, "cmp")
RUNS = [("adamw", "0.001", 0), ("adamw", "0.001", 1), ("adamw", "0.003", 0), ("adamw", "0.003", 1),
        ("limuon-exact", "0.02", 0), ("limuon-exact", "0.02", 1)]


def run_dir(cfg, lr, seed):
    return os.path.join(out, "runs", cfg, "lr" + lr, f"seed{seed}")


# dry run: lists the 6 runs, writes nothing
r = run(["compare", "--spec", spec_path, "--out", out, "--dry-run"])
check("dry-run", r.returncode == 0 and r.stdout.count("limuon train") == 6 and not os.path.exists(out), r.stdout + r.stderr)

# interrupted mid-run: 2 runs finish, the third stops after 2 steps with a checkpoint
r = run(["compare", "--spec", spec_path, "--out", out, "--stop-after-runs", "2", "--stop-after-steps", "2"])
check("interrupted compare exit", r.returncode == 0 and "stopped after step 2" in r.stdout, r.stdout + r.stderr)
done1 = [x for x in RUNS if os.path.exists(os.path.join(run_dir(*x), "summary.json"))]
check("two runs finished before the interruption", done1 == RUNS[:2], done1)
third = run_dir(*RUNS[2])
check("interrupted run left a checkpoint", os.path.exists(os.path.join(third, "ckpt_00000002.pt")), os.listdir(third))
check("partial report written", os.path.exists(os.path.join(out, "report.md")), r.stdout)
mtimes = {x: os.stat(os.path.join(run_dir(*x), "summary.json")).st_mtime_ns for x in done1}

# killed: SIGKILL the comparison while a run is in progress; its train subprocess must die too
p = subprocess.Popen([BIN, "compare", "--spec", spec_path, "--out", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True)
target = os.path.join(run_dir(*RUNS[3]), "train.log")
deadline = time.time() + 120
while time.time() < deadline and not os.path.exists(target) and p.poll() is None:
    time.sleep(0.002)
p.send_signal(signal.SIGKILL)
killed_out = p.communicate()[0]
time.sleep(0.5)


def snapshot(d):
    return {f: os.stat(os.path.join(d, f)).st_mtime_ns for f in os.listdir(d)} if os.path.isdir(d) else {}


snap = snapshot(run_dir(*RUNS[3]))
time.sleep(1.0)
check("no run goes on after the comparison is killed", snap == snapshot(run_dir(*RUNS[3])), (snap, killed_out))
check("the interrupted run was resumed", "resuming from step 2" in killed_out, killed_out)
# The report follows every finished run: killed while RUNS[3] ran, it already shows RUNS[2] (the
# run resumed above) done; the earlier interrupted invocation had left it incomplete.
killed_rep = {(x["config"], x["lr"], x["seed"]): x["status"] for x in json.load(open(os.path.join(out, "report.json")))["runs"]}
check("the report was redrawn after the run that finished before the kill",
      killed_rep.get(("adamw", 0.003, 0)) == "done" and killed_rep.get(("adamw", 0.003, 1)) != "done", killed_rep)
before = {x for x in RUNS if os.path.exists(os.path.join(run_dir(*x), "summary.json"))}
before_mtimes = {x: os.stat(os.path.join(run_dir(*x), "summary.json")).st_mtime_ns for x in before}

# resumed: only the unfinished runs execute. gnuplot is a logging stand-in in front of the real one:
# the report is drawn once after each run and not again at the end (the last pass already shows it).
stub_bin = os.path.join(TMP, "stub-bin")
os.makedirs(stub_bin, exist_ok=True)
gnuplot_calls = os.path.join(TMP, "gnuplot-calls.log")
with open(os.path.join(stub_bin, "gnuplot"), "w") as f:
    f.write(f'#!/bin/sh\necho "$PWD" >> {gnuplot_calls}\nexec {shutil.which("gnuplot")} "$@"\n')
os.chmod(os.path.join(stub_bin, "gnuplot"), 0o755)
r = run(["compare", "--spec", spec_path, "--out", out], env=dict(os.environ, PATH=stub_bin + os.pathsep + os.environ["PATH"]))
check("resumed compare exit", r.returncode == 0, r.stdout + r.stderr)
draws = open(gnuplot_calls).read().splitlines() if os.path.exists(gnuplot_calls) else []
check("the report is drawn once per executed run, not again at the end", len(draws) == 6 - len(before) and
      r.stdout.count("report: ") == 1, (draws, r.stdout))
check("resume skips finished runs", r.stdout.count("done already, skipped") == len(before) and
      f"{6 - len(before)} runs executed, {len(before)} already done" in r.stdout, r.stdout)
for x in before:
    check(f"finished run {x} untouched", os.stat(os.path.join(run_dir(*x), "summary.json")).st_mtime_ns == before_mtimes[x])
for x in done1:
    check(f"first runs {x} untouched", os.stat(os.path.join(run_dir(*x), "summary.json")).st_mtime_ns == mtimes[x])
log3 = open(os.path.join(third, "train.log")).read()
check("interrupted run continued from its checkpoint", "resumed from" in log3 and "at step 2" in log3, log3[-2000:])
check("checkpoints removed after a run finishes", not [f for f in os.listdir(third) if f.startswith("ckpt_")], os.listdir(third))

# nothing left to do
r = run(["compare", "--spec", spec_path, "--out", out])
check("complete compare reruns nothing", r.returncode == 0 and "0 runs executed, 6 already done" in r.stdout, r.stdout + r.stderr)

# ---- the runs: budgets, and the same initialisation and data per seed
summaries, metrics = {}, {}
for x in RUNS:
    d = run_dir(*x)
    summaries[x] = json.load(open(os.path.join(d, "summary.json")))
    metrics[x] = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
for x in RUNS:
    s = summaries[x]
    if x[0] == "adamw":
        check(f"{x} grad_evals budget: 8 steps", s["steps"] == 8 and s["grad_evals"] == 32 and s["stopped_by"] == "grad_evals", s)
    else:  # 1 evaluation on the first step, 2 afterwards: 4 * (1 + 2 * 4) = 36 >= 32 after 5 steps
        check(f"{x} grad_evals budget: 5 exact-STORM steps", s["steps"] == 5 and s["grad_evals"] == 36 and
              s["samples"] == 20 and s["stopped_by"] == "grad_evals", s)
    evals = [m["step"] for m in metrics[x] if "val_loss" in m]
    check(f"{x} final evaluation at the budget's end", evals and evals[-1] == s["steps"], evals)
    # the lr schedule (warm-up 1, cosine to 0.1 x lr) ends with the budget: the last step's factor
    lrs = [m["lr"] for m in metrics[x] if "loss" in m]
    n = s["steps"]
    expect = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (n - 2) / (n - 1)))
    check(f"{x} schedule spans the budget", abs(lrs[-1] / s["config"]["lr"] - expect) < 1e-6, (lrs, expect))
    # no orthogonalizer in the spec: the trainer's default, gram_ns
    check(f"{x} default orthogonalizer", s["config"]["orthogonalizer"] == "gram_ns", s["config"])
for seed in (0, 1):
    first = {x: next(m["loss"] for m in metrics[x] if "loss" in m) for x in RUNS if x[2] == seed}
    check(f"seed {seed}: same initial weights and first batch in every run", len(set(first.values())) == 1, first)
check("seeds differ", next(m["loss"] for m in metrics[RUNS[0]] if "loss" in m) !=
      next(m["loss"] for m in metrics[RUNS[1]] if "loss" in m))

# same data order: with lr 0 every optimizer leaves the weights alone, so each step's loss depends
# only on the initialisation and the batch
lr0 = {}
for opt in ("adamw", "muon", "limuon"):
    d = os.path.join(TMP, "lr0-" + opt)
    r = run(["train", "--model", "gpt2-tiny", "--data", corpus, "--optimizer", opt, "--lr", "0", "--adamw-lr", "0",
             "--steps", "5", "--batch-size", "4", "--block-size", "32", "--seed", "7", "--progress", "none", "--out", d])
    check(f"lr0 {opt}", r.returncode == 0, r.stderr)
    if r.returncode == 0:
        lr0[opt] = [json.loads(l)["loss"] for l in open(os.path.join(d, "metrics.jsonl")) if '"loss"' in l]
check("same batches in the same order for every optimizer", len({tuple(v) for v in lr0.values()}) == 1 and
      len(set(lr0["adamw"])) > 1, lr0)

# ---- the report equals the metrics
rep = json.load(open(os.path.join(out, "report.json")))
md = open(os.path.join(out, "report.md")).read()


def median(v):
    return statistics.median([x for x in v if x is not None and math.isfinite(x)])


def run_numbers(x):
    s, ms = summaries[x], metrics[x]
    train_rows = [m for m in ms if "loss" in m]
    vals = {}
    for m in ms:
        if "val_loss" in m:
            vals[m["step"]] = m["val_loss"]
    return {
        "final_val_loss": s["final_val_loss"], "best_val_loss": min(vals.values()), "final_val_ppl": s["final_val_ppl"],
        "steps": s["steps"], "samples": s["samples"], "grad_evals": s["grad_evals"], "wall_s": s["wall_s"],
        "ms_per_step": median([m["ms_per_step"] for m in train_rows]),
        "throughput": median([m["tok_per_s"] for m in train_rows]),
        "optimizer_state_bytes": s["optimizer_state_bytes"],
        "peak_rss_mb": max([s["peak_rss_mb"]] + [m["peak_rss_mb"] for m in train_rows]),
    }


def mean_std(v):
    m = sum(v) / len(v)
    return m, (math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0)


def close(a, b):
    return a == b or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


nums = {x: run_numbers(x) for x in RUNS}
for row in rep["runs"]:
    x = (row["config"], "%g" % row["lr"], row["seed"])
    check(f"report.json run {x} done", row["status"] == "done", row)
    for k, v in nums[x].items():
        check(f"report.json run {x} {k}", close(row[k], v), (row[k], v))

# lr selection: the lower mean final loss over seeds
adamw_means = {lr: mean_std([nums[("adamw", lr, s)]["final_val_loss"] for s in (0, 1)])[0] for lr in ("0.001", "0.003")}
best_lr = min(adamw_means, key=adamw_means.get)
sel = {c["config"]: c for c in rep["configs"]}
check("best lr selected", "%g" % sel["adamw"]["lr"] == best_lr, (sel["adamw"]["lr"], adamw_means))
# the final loss's 95 % confidence interval over the 2 seeds: t(0.975; 1) = 12.706 (tables) · std / √2
m, s = mean_std([nums[("adamw", best_lr, sd)]["final_val_loss"] for sd in (0, 1)])
ci = sel["adamw"]["metrics"]["final_val_loss"].get("ci95", math.nan)
check("final loss 95% CI in report.json", close(ci, 12.706 * s / math.sqrt(2)), (ci, s))
check("final loss 95% CI in report.md", f"[{m - ci:.4f}, {m + ci:.4f}]" in md, md[:3000])
for row in rep["sweep"]:
    m, s = mean_std([nums[(row["config"], "%g" % row["lr"], sd)]["final_val_loss"] for sd in (0, 1)])
    check(f"sweep {row['config']} {row['lr']}", close(row["final_val_loss"]["mean"], m) and close(row["final_val_loss"]["std"], s),
          (row, m, s))
    line = f"| {row['config']} | {'%g' % row['lr']} | 2/2 | {m:.4f} ± {s:.4f} |"
    check(f"report.md sweep row {row['config']} {row['lr']}", line in md, (line, md))

# equal gradient evaluations: the fewest any selected run spent (AdamW 32, LiMuon exact 36), each
# run's validation loss read there, linearly between its two evaluations around it
G = min(nums[(c, lr, sd)]["grad_evals"] for c, lr in (("adamw", best_lr), ("limuon-exact", "0.02")) for sd in (0, 1))
check("equal gradient evaluations", rep.get("equal_grad_evals") == G == 32, (rep.get("equal_grad_evals"), G))


def loss_at(x, g, axis="grad_evals"):
    pts = sorted((m[axis], m["val_loss"]) for m in metrics[x] if "val_loss" in m)
    for (e0, l0), (e1, l1) in zip(pts, pts[1:]):
        if e0 <= g <= e1:
            return l0 + (g - e0) / (e1 - e0) * (l1 - l0)
    return math.nan


for x in RUNS:
    nums[x]["val_loss_at_equal_grad_evals"] = loss_at(x, G)
check("LiMuon exact is read between two evaluations", all(
    any(m["grad_evals"] < G for m in metrics[x] if "val_loss" in m) and nums[x]["val_loss_at_equal_grad_evals"] != summaries[x]["final_val_loss"]
    for x in RUNS if x[0] == "limuon-exact"))
check("report.md names the equal-evaluations column", f"val loss at {G} grad evals" in md, md[:2000])
# equal seconds likewise: the shortest training time of a selected run (its last evaluation's clock)
S = min(max(m["wall_s"] for m in metrics[(c, lr, sd)] if "val_loss" in m)
        for c, lr in (("adamw", best_lr), ("limuon-exact", "0.02")) for sd in (0, 1))
check("equal seconds", close(rep.get("equal_seconds"), S), (rep.get("equal_seconds"), S))
for x in RUNS:
    nums[x]["val_loss_at_equal_seconds"] = loss_at(x, S, "wall_s")
check("report.md names the equal-seconds column", f"val loss at {S:.1f} s" in md, md[:2000])

FORMATS = [("final_val_loss", "%.4f", 1), ("best_val_loss", "%.4f", 1), ("val_loss_at_equal_grad_evals", "%.4f", 1),
           ("val_loss_at_equal_seconds", "%.4f", 1),
           ("final_val_ppl", "%.2f", 1), ("steps", "%.0f", 1),
           ("samples", "%.0f", 1), ("grad_evals", "%.0f", 1), ("wall_s", "%.1f", 1), ("ms_per_step", "%.1f", 1),
           ("throughput", "%.0f", 1), ("optimizer_state_bytes", "%.3f", 1 / 2**20), ("peak_rss_mb", "%.0f", 1)]
for cfg, lr in (("adamw", best_lr), ("limuon-exact", "0.02")):
    cells = []
    for key, f, scale in FORMATS:
        # the readings at equal seconds are missing for a seed whose first evaluation came after
        # the shortest run ended (these runs take a fraction of a second): the report skips them
        fin = [v for v in (nums[(cfg, lr, sd)][key] for sd in (0, 1)) if math.isfinite(v)]
        if not fin:
            check(f"report.json {cfg} {key} (no finite value)", sel[cfg]["metrics"][key]["n"] == 0, sel[cfg]["metrics"][key])
            cells.append("–")
            continue
        m, s = mean_std(fin)
        check(f"report.json {cfg} {key}", close(sel[cfg]["metrics"][key]["mean"], m) and close(sel[cfg]["metrics"][key]["std"], s),
              (sel[cfg]["metrics"][key], m, s))
        cells.append(f % (m * scale) + (" ± " + f % (s * scale) if len(fin) > 1 else ""))
        if key == "final_val_loss":  # its 95 % confidence interval, t(0.975; 1) = 12.706
            h = 12.706 * s / math.sqrt(2)
            cells.append(f"[{f % (m - h)}, {f % (m + h)}]")
    row = next((l for l in md.splitlines() if l.startswith(f"| {cfg} | ")), "")
    got = [c.strip() for c in row.strip("|").split("|")][4:]
    check(f"report.md results row {cfg}", got == cells, (got, cells))
state = {c: sel[c]["metrics"]["optimizer_state_bytes"]["mean"] for c in sel}
check("optimizer state bytes reported", all(v > 0 for v in state.values()), state)

# "reference": every other config against it, paired by seed (difference per seed, mean and 95 % CI)
r = run(["compare", "--spec", write(os.path.join(TMP, "spec_ref.json"), dict(spec, reference="adamw")), "--out", out, "--report-only"])
rep_ref = json.load(open(os.path.join(out, "report.json")))
md_ref = open(os.path.join(out, "report.md")).read()
pairs = {p["metric"]: p for p in rep_ref.get("paired", []) if p["config"] == "limuon-exact" and p["reference"] == "adamw"}
check("paired comparison written", r.returncode == 0 and set(pairs) == {"final_val_loss", "val_loss_at_equal_grad_evals",
      "val_loss_at_equal_seconds"} and "## Against adamw (lr " + best_lr + "), paired by seed" in md_ref, (r.stderr, rep_ref.get("paired")))
for key, p in pairs.items():
    d = [nums[("limuon-exact", "0.02", sd)][key] - nums[("adamw", best_lr, sd)][key] for sd in (0, 1)]
    d = [x for x in d if math.isfinite(x)]  # see the equal-seconds note above
    if len(d) < 2:
        check(f"paired {key} (fewer than 2 finite)", p["difference"]["n"] == len(d) and "ci95" not in p["difference"] and
              p["verdict"] == ("1 seed: no interval" if d else "no paired seeds"), p)
        continue
    m, s_ = mean_std(d)
    h = 12.706 * s_ / math.sqrt(2)
    check(f"paired {key}", p["difference"]["n"] == 2 and close(p["difference"]["mean"], m) and close(p["difference"]["ci95"], h) and
          p["verdict"] == ("lower" if m + h < 0 else "higher" if m - h > 0 else "not distinguishable"), (p, m, h))
    check(f"paired {key} in report.md", f"[{m - h:+.4f}, {m + h:+.4f}]" in md_ref, md_ref[:4000])
for bad, needle in (("nope", "names no config: 'nope'"), (3, "must be the name of a config")):
    r = run(["compare", "--spec", write(os.path.join(TMP, "spec_badref.json"), dict(spec, reference=bad)), "--out", out, "--dry-run"])
    check(f"bad reference refused ({needle})", r.returncode == 2 and needle in r.stderr, r.stderr)
r = run(["compare", "--spec", spec_path, "--out", out, "--report-only"])
check("report without reference again", r.returncode == 0 and "paired by seed" not in open(os.path.join(out, "report.md")).read())

# plots
for name in ("val_loss_vs_samples.png", "val_loss_vs_grad_evals.png", "val_loss_vs_seconds.png", "val_loss_overview.png",
             "memory.png", "lr_sweep.png"):
    check(f"plot {name}", is_png(os.path.join(out, "plots", name)), os.listdir(os.path.join(out, "plots")))
    check(f"report links {name}", f"(plots/{name})" in md)
check("report.json lists plots", len(rep["plots"]) == 6 and "plots_skipped" not in rep, rep.get("plots_skipped"))
curves = open(os.path.join(out, "plots", "curves.dat")).read()
check("plotted curve is the mean over seeds at the best lr", f"# adamw lr {best_lr}" in curves, curves[:300])

# without gnuplot: the report is still written and says why there are no plots
shutil.rmtree(os.path.join(out, "plots"))
r = run(["compare", "--spec", spec_path, "--out", out, "--report-only"], env={"PATH": "/nonexistent"})
check("report without gnuplot", r.returncode == 0 and "plots skipped" in r.stdout and "gnuplot" in r.stdout, r.stdout + r.stderr)
check("report.md says plots were skipped", "Plots skipped: gnuplot is not installed" in open(os.path.join(out, "report.md")).read())
with open(os.path.join(out, ".compare.lock"), "a+") as held:  # as a comparison working there holds it
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    r = run(["compare", "--spec", spec_path, "--out", out])
    check("a second comparison in the same directory is refused", r.returncode != 0 and
          "another limuon compare is working in" in r.stderr and "runs executed" not in r.stdout, r.stdout + r.stderr)
    r = run(["compare", "--spec", spec_path, "--out", out, "--report-only"])
    check("report-only redraws while a comparison holds the directory", r.returncode == 0, r.stdout + r.stderr)
r = run(["compare", "--spec", spec_path, "--out", out, "--report-only"])
check("report-only redraws", r.returncode == 0 and is_png(os.path.join(out, "plots", "memory.png")), r.stdout + r.stderr)

# timing.json: quiet-machine ms/step per config replace the runs' own clocks in every seconds figure
# (train s = steps × ms / 1000; the seconds column of curves.dat = step × ms / 1000); a config it
# lacks shows none; a malformed file is refused by name, and removing it restores the runs' clocks
timing_path = os.path.join(out, "timing.json")
write(timing_path, {"ms_per_step": {"adamw": 250.0}, "source": "test figures"})
r = run(["compare", "--spec", spec_path, "--out", out, "--report-only"])
rep_t = json.load(open(os.path.join(out, "report.json")))
sel_t = {c["config"]: c for c in rep_t["configs"]}
want = nums[("adamw", best_lr, 0)]["steps"] * 0.25
check("timing.json sets train s", r.returncode == 0 and close(sel_t["adamw"]["metrics"]["wall_s"]["mean"], want),
      (r.stderr, sel_t["adamw"]["metrics"]["wall_s"], want))
check("timing.json sets ms/step", close(sel_t["adamw"]["metrics"]["ms_per_step"]["mean"], 250.0), sel_t["adamw"]["metrics"]["ms_per_step"])
check("a config without timing has no seconds", sel_t["limuon-exact"]["metrics"]["wall_s"].get("n", 0) == 0,
      sel_t["limuon-exact"]["metrics"]["wall_s"])
md_t = open(os.path.join(out, "report.md")).read()
check("report.md names the timing source", "measured on a quiet machine (test figures)" in md_t, md_t[-3000:])
curve_rows, block = [], ""
for l in open(os.path.join(out, "plots", "curves.dat")).read().splitlines():
    if l.startswith("# ") and not l.startswith("# step"):
        block = l  # "# CONFIG lr LR"
    elif l and not l.startswith("#") and block.startswith("# adamw "):
        curve_rows.append(l.split())
check("seconds axis is step × quiet ms", curve_rows and all(close(float(c[3]), int(c[0]) * 0.25) for c in curve_rows), curve_rows)
for bad, why in (({"ms_per_step": {"nope": 1.0}, "source": "x"}, "'nope' is not in the spec"),
                 ({"ms_per_step": {"adamw": -1}, "source": "x"}, "must be a positive number"),
                 ({"ms_per_step": {"adamw": 1.0}}, "expected")):
    write(timing_path, bad)
    r = run(["compare", "--spec", spec_path, "--out", out, "--report-only"])
    check(f"bad timing.json refused ({why})", r.returncode != 0 and "timing.json" in r.stderr and why in r.stderr, r.stderr)
os.remove(timing_path)
r = run(["compare", "--spec", spec_path, "--out", out, "--report-only"])
rep_t = json.load(open(os.path.join(out, "report.json")))
check("without timing.json the runs' clocks again", close({c["config"]: c for c in rep_t["configs"]}["adamw"]["metrics"]["wall_s"]["mean"],
                                                          mean_std([nums[("adamw", best_lr, sd)]["wall_s"] for sd in (0, 1)])[0]))

# the committed results regenerate byte-identical wherever the comparison lies: report-only on a
# copy in another directory writes the same report and plot data (no absolute path in any of them)
out_moved = os.path.join(TMP, "elsewhere", "cmp")
shutil.copytree(out, out_moved)
r = run(["compare", "--spec", spec_path, "--out", out_moved, "--report-only"])
texts = ["report.md", "report.json"] + sorted(os.path.join("plots", f) for f in os.listdir(os.path.join(out, "plots"))
                                                if f.endswith((".gp", ".dat")))
differ = [f for f in texts if open(os.path.join(out, f), "rb").read() != open(os.path.join(out_moved, f), "rb").read()]
check("report-only elsewhere regenerates the same files", r.returncode == 0 and len(texts) > 4 and not differ,
      (differ, r.stdout + r.stderr))

# compress_metrics: finished runs' metrics.jsonl become metrics.jsonl.gz (here: runs done already,
# compressed when the comparison passes over them), holding the same bytes, and the report read
# from them equals the one read from the plain files
out_gz = os.path.join(TMP, "cmp_gz")
shutil.copytree(out, out_gz)
spec_gz = dict(spec, compress_metrics=True)
r = run(["compare", "--spec", write(os.path.join(TMP, "spec_gz.json"), spec_gz), "--out", out_gz])
gz_dirs = [os.path.join(out_gz, os.path.relpath(run_dir(*x), out)) for x in RUNS]
check("compress_metrics compresses finished runs", r.returncode == 0 and all(
    os.path.exists(os.path.join(d, "metrics.jsonl.gz")) and not os.path.exists(os.path.join(d, "metrics.jsonl")) for d in gz_dirs),
    r.stdout + r.stderr)
check("compressed metrics hold the same bytes", all(
    gzip.open(os.path.join(d, "metrics.jsonl.gz")).read() == open(os.path.join(run_dir(*x), "metrics.jsonl"), "rb").read()
    for d, x in zip(gz_dirs, RUNS)))
rep_gz = json.load(open(os.path.join(out_gz, "report.json")))
rep_plain = json.load(open(os.path.join(out, "report.json")))
check("report from compressed metrics equals the plain one", rep_gz["configs"] == rep_plain["configs"] and rep_gz["sweep"] == rep_plain["sweep"],
      (rep_gz["configs"], rep_plain["configs"]))
with open(os.path.join(gz_dirs[0], "metrics.jsonl.gz"), "wb") as f:
    f.write(b"not gzip")
r = run(["compare", "--spec", os.path.join(TMP, "spec_gz.json"), "--out", out_gz, "--report-only"])
check("corrupt metrics.jsonl.gz named", r.returncode != 0 and "metrics.jsonl.gz: cannot decompress" in r.stderr, r.stderr)
r = run(["compare", "--spec", write(os.path.join(TMP, "spec_bad_gz.json"), dict(spec, compress_metrics="yes")), "--out", out_gz, "--dry-run"])
check("compress_metrics must be a boolean", r.returncode == 2 and "'compress_metrics' must be true or false" in r.stderr, r.stderr)

# a changed spec must not mix with the runs already there
spec2 = json.loads(json.dumps(spec))
spec2["train"]["batch_size"] = 8
r = run(["compare", "--spec", write(os.path.join(TMP, "spec2.json"), spec2), "--out", out])
check("changed settings refused", r.returncode == 2 and "other settings" in r.stderr and "batch-size" in r.stderr, r.stderr)

# ---- 2. image task, samples budget, a failing run
img_spec = {
    "train": {"task": "image", "model": "vit-test", "data": "fashion-mnist", "batch-size": 16, "eval-batches": 2,
              "eval-interval": 2},
    "budget": "samples:64", "seeds": 1,
    "configs": [{"name": "muon", "optimizer": "muon", "lr": 0.02},
                {"name": "sgd-ish", "optimizer": "adamw", "lr": 0.001},
                {"name": "broken", "optimizer": "adamw", "lr": 0.001, "inject-nonfinite": "loss:3", "max-nonfinite": 1}],
}
img_out = os.path.join(TMP, "img")
r = run(["compare", "--spec", write(os.path.join(TMP, "img.json"), img_spec), "--out", img_out])
check("a failed run makes compare exit 1", r.returncode == 1 and "FAILED" in r.stdout and "1 run(s) failed" in r.stderr,
      r.stdout + r.stderr)
img_rep = json.load(open(os.path.join(img_out, "report.json")))
st = {x["config"]: x for x in img_rep["runs"]}
check("failed run reported", st.get("broken", {}).get("status") == "failed" and "non-finite" in st["broken"].get("note", ""), st)
for c in ("muon", "sgd-ish"):
    check(f"image {c} samples budget", st[c]["status"] == "done" and st[c]["steps"] == 4 and st[c]["samples"] == 64 and
          st[c]["stopped_by"] == "samples", st[c])
    s = json.load(open(os.path.join(img_out, "runs", c, "lr" + "%g" % st[c]["lr"], "seed0", "summary.json")))
    check(f"image {c} accuracy", close(st[c]["final_val_accuracy"], s["final_val_accuracy"]), (st[c], s))
img_md = open(os.path.join(img_out, "report.md")).read()
check("image report has accuracy and img/s", "final val acc" in img_md and "img/s" in img_md and "| broken | " in img_md, img_md)
check("image accuracy plot", is_png(os.path.join(img_out, "plots", "val_accuracy_vs_samples.png")))

# ---- 2b. tuning groups ("tune"): variants run on the sweep seed only, at their base's chosen lr,
# then at the grid's neighbouring lrs while a variant leads its group; the other seeds run only at
# the group's choice (config and lr). The expected runs are recomputed here from the summaries by a
# plain re-statement of that rule. Group "aw": AdamW whose base warms up over 1000 steps (so its lr
# barely rises in 8 steps) and a variant warming up over 1 step, which should lead and walk the grid.
tune_spec = {
    "train": {"task": "lm", "model": "gpt2-tiny", "data": corpus, "batch-size": 4, "block-size": 32,
              "eval-interval": 4, "eval-batches": 2, "warmup": 1},
    "budget": {"steps": 8}, "seeds": [0, 1], "sweep_seeds": 1,
    "configs": [
        {"name": "aw", "optimizer": "adamw", "warmup": 1000, "lr": [0.0003, 0.001, 0.003, 0.01], "tune": {"warmup": [1]}},
        {"name": "lx", "optimizer": "limuon", "storm": "exact", "beta": 0.1, "lr": 0.02, "tune": {"beta": [0.5, 0.9]}},
        {"name": "mu", "optimizer": "muon", "lr": 0.02},
    ],
}
tune_path = write(os.path.join(TMP, "tune.json"), tune_spec)
tune_out = os.path.join(TMP, "tune")
r = run(["compare", "--spec", tune_path, "--out", tune_out, "--dry-run"])
check("tune dry-run lists each variant once at its base's lr", r.returncode == 0 and
      sum("(at aw's chosen lr) " in l and "/runs/aw-warmup1/" in l for l in r.stdout.splitlines()) == 1 and
      sum("(at lx's chosen lr) " in l for l in r.stdout.splitlines()) == 2, r.stdout + r.stderr)
r = run(["compare", "--spec", tune_path, "--out", tune_out])
check("tune comparison runs", r.returncode == 0, r.stdout[-3000:] + r.stderr)
order = [l.split("] ", 1)[1].split(" ", 1)[0] for l in r.stdout.splitlines() if l.startswith("[") and "] " in l]
groups = [{"aw": 0, "aw-warmup1": 0, "lx": 1, "lx-beta0.5": 1, "lx-beta0.9": 1, "mu": 2}.get(c, -1) for c in order]
check("runs go group by group in the spec's order", len(order) >= 11 and groups == sorted(groups) and -1 not in groups, order)


def counters(stdout):
    """The progress counters "[k/N]" of a compare run's output, in order."""
    return [tuple(int(x) for x in l[1:l.index("]")].split("/")) for l in stdout.splitlines()
            if l.startswith("[") and "/" in l.split("]", 1)[0]]


def counters_ok(stdout):
    """k counts the runs 1, 2, ... and never passes N, the runs planned so far (which grows as the
    tuning's results come in)."""
    c = counters(stdout)
    return bool(c) and [k for k, _ in c] == list(range(1, len(c) + 1)) and all(k <= n for k, n in c)


check("tune: the progress counter never passes the runs planned", counters_ok(r.stdout), counters(r.stdout))


def lr_walk(tried, base, grid, loss, values, base_lr):
    """The rule's local search, restated: while a variant leads (config, lr) -> seed-0 loss in
    `tried`, add its grid neighbours not yet tried; once it has them all, and its lr is not the
    base's, add the configs whose flag value (`values`: config -> value, base included) is next
    below and above the lead's, among those run at the base's lr, at the lead's lr. Returns the lead."""
    while True:
        lead = min(tried, key=lambda k: tried[k] if tried[k] is not None else math.inf)
        if lead[0] == base:
            return lead
        i = grid.index(lead[1])
        new = [(lead[0], grid[j]) for j in (i - 1, i + 1) if 0 <= j < len(grid) and (lead[0], grid[j]) not in tried]
        if not new and lead[1] != base_lr:
            own = values[lead[0]]
            ran = [c for c in values if c != lead[0] and (c, base_lr) in tried]
            below = max((c for c in ran if values[c] < own), key=values.get, default=None)
            above = min((c for c in ran if values[c] > own), key=values.get, default=None)
            new = [(c, lead[1]) for c in (below, above) if c is not None and (c, lead[1]) not in tried]
        if not new:
            return lead
        for k in new:
            tried[k] = loss(k[0], k[1], 0)


def final_loss(cfg, lr, seed):
    p = os.path.join(tune_out, "runs", cfg, "lr" + "%g" % lr, f"seed{seed}", "summary.json")
    return json.load(open(p))["final_val_loss"] if os.path.exists(p) else None


expect = set()
choice = {}
for base, values, grid in (("aw", {"aw": 1000, "aw-warmup1": 1}, [0.0003, 0.001, 0.003, 0.01]),
                           ("lx", {"lx": 0.1, "lx-beta0.5": 0.5, "lx-beta0.9": 0.9}, [0.02])):
    tried = {(base, lr): final_loss(base, lr, 0) for lr in grid}
    base_lr = min(grid, key=lambda lr: tried[(base, lr)])
    for v in values:
        if v != base:
            tried[(v, base_lr)] = final_loss(v, base_lr, 0)
    lead = lr_walk(tried, base, grid, final_loss, values, base_lr)
    expect |= {(c, lr, 0) for c, lr in tried}
    expect.add((lead[0], lead[1], 1))
    choice[base] = lead
expect |= {("mu", 0.02, 0), ("mu", 0.02, 1)}
found = run_set(tune_out)
check("tune runs exactly the planned runs", found == expect and all(final_loss(*x) is not None for x in expect),
      (sorted(found - expect), sorted(expect - found)))
check("the warm-up variant leads and walks the grid", choice["aw"][0] == "aw-warmup1" and
      sum(1 for x in found if x[0] == "aw-warmup1") >= 2, (choice, sorted(found)))
tune_rep = json.load(open(os.path.join(tune_out, "report.json")))
rows = {c["group"]: c for c in tune_rep["configs"]}
check("report: a row per group, at its choice", sorted(rows) == ["aw", "lx", "mu"] and
      all((rows[g]["config"], rows[g]["lr"]) == choice[g] and rows[g]["seeds_done"] == 2 for g in choice), rows)
for g, (cfg, lr) in choice.items():
    m, s_ = mean_std([final_loss(cfg, lr, 0), final_loss(cfg, lr, 1)])
    check(f"report: {g}'s choice over its seeds", close(rows[g]["metrics"]["final_val_loss"]["mean"], m), (rows[g]["metrics"]["final_val_loss"], m))
tuned = {(t["config"], t["flag"]): t for t in tune_rep["tuned"]}
lx_lr = 0.02
check("report: tuned flags at the base's lr", set(tuned) == {("aw", "warmup"), ("aw-warmup1", "warmup"), ("lx", "beta"),
      ("lx-beta0.5", "beta"), ("lx-beta0.9", "beta")} and tuned[("lx-beta0.9", "beta")]["value"] == 0.9 and
      close(tuned[("lx-beta0.9", "beta")]["final_val_loss"]["mean"], final_loss("lx-beta0.9", lx_lr, 0)), tune_rep["tuned"])
sel_rows = [x for x in tune_rep["sweep"] if x["selected"]]
check("report: the sweep marks one choice per tuned group", sorted((x["config"], x["lr"]) for x in sel_rows) ==
      sorted([choice["aw"], choice["lx"], ("mu", 0.02)]), sel_rows)
tune_md = open(os.path.join(tune_out, "report.md")).read()
check("report.md has the tuned-flags table and plots", "## Tuned flags" in tune_md and "| lx | lx-beta0.9 | beta | 0.9 | 0.02 | 1/1 |" in tune_md
      and is_png(os.path.join(tune_out, "plots", "tune_beta.png")) and is_png(os.path.join(tune_out, "plots", "tune_warmup.png")),
      tune_md[-4000:])
check("tune plot without a reference has no reference level", "(reference, same seeds)" not in
      open(os.path.join(tune_out, "plots", "plots.gp")).read())
# With "reference": each tune plot also draws the reference at its chosen lr over the sweep seeds
# (here mu's seed 0) as a dashed level.
r2 = run(["compare", "--spec", write(os.path.join(TMP, "tune_ref.json"), dict(tune_spec, reference="mu")), "--out", tune_out,
          "--report-only"])
tgp = open(os.path.join(tune_out, "plots", "plots.gp")).read()
level = "%.17g with lines dt 2 lw 2 lc rgb 'gray30' title 'mu at lr 0.02 (reference, same seeds)'" % final_loss("mu", 0.02, 0)
check("tune plots draw the reference's level", r2.returncode == 0 and tgp.count(level) == 2 and
      is_png(os.path.join(tune_out, "plots", "tune_beta.png")), (r2.stderr, level, tgp.count(level), tgp[-300:]))


def plot_styles(gp):
    """Per plot command of a plots.gp: [(legend title, line style)] of its yerrorlines series."""
    pat = re.compile(r"with yerrorlines lw 2 (lc rgb '#[0-9a-f]{6}' pt \d+ dt \d+)(?: ps [0-9.]+)? title '((?:[^']|'')*)'")
    return [pat.findall(cmd) for cmd in gp.split("\nplot ")[1:] if "yerrorlines" in cmd]


# Line styles: in each plot every series has its own (colour, point type, dash), and a config keeps
# its style from plot to plot.
tune_plots = plot_styles(tgp)
check("every series of every plot has an explicit style", len(tune_plots) >= 5 and all(tune_plots) and
      sum(len(p) for p in tune_plots) == tgp.count("with yerrorlines"), (tune_plots, tgp[-1500:]))
style_of = {}
for p in tune_plots:
    check("series of one plot are styled apart", len({st for st, _ in p}) == len(p), p)
    for st, title in p:
        style_of.setdefault(title.split(" (lr ")[0], set()).add(st)
check("a config keeps its style in every plot", all(len(v) == 1 for v in style_of.values()) and
      {"aw", "lx", "mu"} <= set(style_of), style_of)
# Twelve configs, more than gnuplot's 8-colour default cycle: twelve styles (the runs are copies of
# mu's; the configs differ only in name, so each copy matches its config's settings).
many_out = os.path.join(TMP, "many")
many_spec = dict(tune_spec, configs=[{"name": f"m{k}", "optimizer": "muon", "lr": 0.02} for k in range(12)])
for k in range(12):
    shutil.copytree(os.path.join(tune_out, "runs", "mu", "lr0.02"), os.path.join(many_out, "runs", f"m{k}", "lr0.02"))
r2 = run(["compare", "--spec", write(os.path.join(TMP, "many.json"), many_spec), "--out", many_out, "--report-only"])
many_plots = plot_styles(open(os.path.join(many_out, "plots", "plots.gp")).read()) if r2.returncode == 0 else []
check("twelve configs get twelve styles in each plot", len(many_plots) >= 3 and
      all(len(p) == 12 and len({st for st, _ in p}) == 12 for p in many_plots), (r2.stdout[-1500:] + r2.stderr, many_plots))


def key_placements(gp):
    """The key setting each plot command of a plots.gp draws under (the last `set key` before it)."""
    key, out = "default (inside)", []
    for line in gp.splitlines():
        if line.startswith("set key"):
            key = line
        elif line.startswith("plot "):
            out.append(key)
    return out


# The key stands outside the axes, never over a curve: a study's dozen configs filled the corner a
# key inside takes (issue 19's LM plot hid part of a curve). In the overview only the last panel has one.
many_gp = open(os.path.join(many_out, "plots", "plots.gp")).read() if r2.returncode == 0 else ""
keys = [k for k in key_placements(many_gp) if k != "set key off"]
check("plot keys stand outside the axes", len(keys) >= 4 and all(" outside " in k or " at screen " in k for k in keys) and
      sum(" at screen " in k for k in keys) == 1, key_placements(many_gp))
r2 = run(["compare", "--spec", tune_path, "--out", tune_out])
check("a finished tuning reruns nothing", r2.returncode == 0 and "0 runs executed" in r2.stdout, r2.stdout[-2000:] + r2.stderr)
# timing.json without a figure for a variant: one whose tuned flag leaves the arithmetic alone (beta,
# warm-up) takes its base's, and says so; a variant with its own figure keeps it; mu has none.
write(os.path.join(tune_out, "timing.json"), {"ms_per_step": {"aw": 100.0, "lx": 400.0, "lx-beta0.5": 420.0}, "source": "test figures"})
r2 = run(["compare", "--spec", tune_path, "--out", tune_out, "--report-only"])
tq = json.load(open(os.path.join(tune_out, "report.json")))
run_ms = {(x["config"], x["lr"], x["seed"]): (x.get("ms_per_step"), x.get("wall_s"), x.get("steps")) for x in tq["runs"]}
check("timing: beta and warm-up variants take their base's figure", r2.returncode == 0 and
      tq["timing"]["ms_per_step"] == {"aw": 100.0, "lx": 400.0, "lx-beta0.5": 420.0} and
      tq.get("timing", {}).get("from_base") == {"aw-warmup1": "aw", "lx-beta0.9": "lx"} and
      all(v[0] == {"aw": 100.0, "aw-warmup1": 100.0, "lx": 400.0, "lx-beta0.9": 400.0, "lx-beta0.5": 420.0}[k[0]] and
          close(v[1], v[2] * v[0] / 1000.0) for k, v in run_ms.items() if k[0] != "mu"), (r2.stderr, tq.get("timing"), run_ms))
check("timing: a config without a figure or a base's still has no seconds",
      all(v[0] is None or (isinstance(v[0], float) and math.isnan(v[0])) for k, v in run_ms.items() if k[0] == "mu"),
      {k: v for k, v in run_ms.items() if k[0] == "mu"})
check("report.md names the borrowed figures", "takes its base config's figure (aw-warmup1 from aw, lx-beta0.9 from lx)" in
      open(os.path.join(tune_out, "report.md")).read())
# The study's cost: the finished runs' own clocks (summary wall_s) whatever timing.json says, and the
# runs left at its ms/step: here mu's seed 1 made unfinished with no evaluation yet, so its 8 steps
# (the budget) at 200 ms are left.
walls = [json.load(open(os.path.join(tune_out, "runs", c, "lr%g" % lr, f"seed{sd}", "summary.json")))["wall_s"] for c, lr, sd in found]
cost = tq.get("cost", {})
check("cost: the finished runs' own clocks", cost.get("runs_done") == len(found) and cost.get("runs_left") == 0 and
      close(cost.get("clock_s_done", -1), sum(walls)) and f"Cost: {len(found)} of the {len(found)} runs" in
      open(os.path.join(tune_out, "report.md")).read(), (cost, sum(walls)))
mu1 = os.path.join(tune_out, "runs", "mu", "lr0.02", "seed1")
aside = os.path.join(TMP, "mu1-aside")
os.makedirs(aside)
for f in os.listdir(mu1):
    if f != "run.json":
        shutil.move(os.path.join(mu1, f), aside)
write(os.path.join(tune_out, "timing.json"), {"ms_per_step": {"mu": 200.0}, "source": "test figures"})
r2 = run(["compare", "--spec", tune_path, "--out", tune_out, "--report-only"])
cost = json.load(open(os.path.join(tune_out, "report.json"))).get("cost", {})
check("cost: a run left counts its budget's steps at the quiet ms/step", r2.returncode == 0 and cost.get("runs_left") == 1 and
      cost.get("runs_done") == len(found) - 1 and close(cost.get("quiet_s_left", -1), 8 * 0.2) and
      close(cost.get("clock_s_done", -1), sum(walls) - json.load(open(os.path.join(aside, "summary.json")))["wall_s"]), (r2.stderr, cost))
for f in os.listdir(aside):
    shutil.move(os.path.join(aside, f), mu1)
os.remove(os.path.join(tune_out, "timing.json"))
for bad, needle in (({"lr": [0.1, 0.2]}, "cannot vary 'lr'"), ({"beta": [0.1]}, "the config's own value"),
                    ({"rank": [4]}, "needs the config's own value of 'rank'"), ({"beta": []}, "non-empty list"),
                    ({"beta": [0.5, 0.5]}, "twice"), ("beta", "must be an object")):
    bs = json.loads(json.dumps(tune_spec))
    bs["configs"][1]["tune"] = bad
    r = run(["compare", "--spec", write(os.path.join(TMP, "bad_tune.json"), bs), "--out", os.path.join(TMP, "bad-tune"), "--dry-run"])
    check(f"bad tune refused ({needle})", r.returncode == 2 and needle in r.stderr, r.stderr)
bs = json.loads(json.dumps(tune_spec))
bs["configs"].append({"name": "lx-beta0.5", "optimizer": "muon", "lr": 0.01})
r = run(["compare", "--spec", write(os.path.join(TMP, "bad_tune.json"), bs), "--out", os.path.join(TMP, "bad-tune"), "--dry-run"])
check("a variant named like another config is refused", r.returncode == 2 and "has the name of another config" in r.stderr, r.stderr)
r = run(["compare", "--spec", write(os.path.join(TMP, "bad_tune.json"), dict(tune_spec, reference="lx-beta0.5")), "--out",
         os.path.join(TMP, "bad-tune"), "--dry-run"])
check("a variant as the reference is refused", r.returncode == 2 and "not the 'tune' variant 'lx-beta0.5'" in r.stderr, r.stderr)

# ---- 2b'. "tune_extend": values beyond a tuned flag's range run at the base's chosen lr, nearest
# first, one at a time, while the best value there is the lowest (highest) tried. AdamW warming up
# over 1000 steps barely moves in 8; shorter warm-ups should win, so the low end keeps extending.
te_spec = {
    "train": tune_spec["train"], "budget": {"steps": 8}, "seeds": [0, 1], "sweep_seeds": 1,
    "configs": [{"name": "aw", "optimizer": "adamw", "warmup": 1000, "lr": [0.001, 0.003], "tune": {"warmup": [300]},
                 "tune_extend": {"warmup": [3000, 100, 30]}}],
}
te_out = os.path.join(TMP, "tune_ext")
te_path = write(os.path.join(TMP, "tune_ext.json"), te_spec)
r = run(["compare", "--spec", te_path, "--out", te_out, "--dry-run"])
check("tune_extend: dry-run counts the tuning without the candidates and labels them",
      r.returncode == 0 and "limuon compare: 4 runs" in r.stdout and
      sum("if its best warmup is at that end" in l for l in r.stdout.splitlines()) == 3, r.stdout + r.stderr)
r = run(["compare", "--spec", te_path, "--out", te_out])
check("tune_extend comparison runs", r.returncode == 0, r.stdout[-3000:] + r.stderr)
te_loss = lambda cfg, lr, sd: (json.load(open(p))["final_val_loss"] if os.path.exists(
    p := os.path.join(te_out, "runs", cfg, "lr%g" % lr, f"seed{sd}", "summary.json")) else None)
grid = [0.001, 0.003]
name = {1000: "aw", 300: "aw-warmup300", 3000: "aw-warmup3000", 100: "aw-warmup100", 30: "aw-warmup30"}
base_lr = min(grid, key=lambda lr: te_loss("aw", lr, 0))
at_base = {v: te_loss(name[v], base_lr, 0) for v in (1000, 300)}
while True:
    best = min(at_base, key=at_base.get)
    cands = [v for v in (3000, 100, 30) if v not in at_base and
             ((best == min(at_base) and v < best) or (best == max(at_base) and v > best))]
    if not cands:
        break
    nxt = min(cands, key=lambda v: abs(v - best))
    at_base[nxt] = te_loss(name[nxt], base_lr, 0)
tried = {("aw", lr): te_loss("aw", lr, 0) for lr in grid}
tried.update({(name[v], base_lr): x for v, x in at_base.items()})
lead = lr_walk(tried, "aw", grid, te_loss, {name[v]: v for v in name}, base_lr)  # as in 2b
found = run_set(te_out)
check("tune_extend runs exactly the candidates the rule asks for, then the seeds at the choice",
      found == {(c, lr, 0) for c, lr in tried} | {(lead[0], lead[1], 1)} and None not in tried.values(), (sorted(found), tried))
check("tune_extend went beyond the tuned range, and only on the winning side",
      ("aw-warmup100", base_lr, 0) in found and not any(c == "aw-warmup3000" for c, _, _ in found), sorted(found))
check_resumed_search("tune_extend", te_path, te_out, r.stdout, lambda cfg, lr: cfg in ("aw-warmup100", "aw-warmup30", "aw-warmup3000"))
te_rep = json.load(open(os.path.join(te_out, "report.json")))
check("report: the tuned-flags rows are the values run", sorted(t["value"] for t in te_rep["tuned"]) == sorted(at_base) and
      all(close(t["final_val_loss"]["mean"], at_base[t["value"]]) for t in te_rep["tuned"]), te_rep["tuned"])
for bad, needle in (({"tune_extend": {"warmup": [100]}, "tune": None}, "has none"),
                    ({"tune_extend": {"beta1": [0.5]}}, "'beta1' is not tuned"),
                    ({"tune_extend": {"warmup": [500]}}, "not beyond the tuned range [300, 1000]"),
                    ({"tune_extend": {"warmup": ["x"]}}, "finite numbers"),
                    ({"tune_extend": {"warmup": [100, 100]}}, "twice"),
                    ({"tune_extend": {"warmup": [300]}}, "not beyond")):
    c = dict(te_spec["configs"][0], **bad)
    c = {k: v for k, v in c.items() if v is not None}
    r = run(["compare", "--spec", write(os.path.join(TMP, "bad_te.json"), dict(te_spec, configs=[c])), "--out",
             os.path.join(TMP, "bad-te"), "--dry-run"])
    check(f"bad tune_extend refused ({needle})", r.returncode == 2 and needle in r.stderr, r.stderr)

# ---- 2b''. The second round of the coordinate-wise tuning: once a leading variant's lr walk
# settles on an lr other than the base's, the values of its flag next to its own run there too
# (a value tuned at the base's lr may not be the best at the lead's). AdamW warming up over 1000
# steps barely moves in 8, so it is best at the grid's top, 0.3; warming up over 1 or 2 steps, it
# beats that there and is best lower down, so the lead walks away from 0.3 and the other short
# warm-up must then run at the lead's lr.
rc_spec = {
    "train": tune_spec["train"], "budget": {"steps": 8}, "seeds": [0], "sweep_seeds": 1,
    "configs": [{"name": "aw", "optimizer": "adamw", "warmup": 1000, "lr": [0.01, 0.03, 0.1, 0.3], "tune": {"warmup": [1, 2]}}],
}
rc_out = os.path.join(TMP, "recheck")
r = run(["compare", "--spec", write(os.path.join(TMP, "recheck.json"), rc_spec), "--out", rc_out])
check("recheck comparison runs", r.returncode == 0, r.stdout[-3000:] + r.stderr)
check("recheck: the progress counter never passes the runs planned", counters_ok(r.stdout), counters(r.stdout))
rc_loss = lambda cfg, lr, sd: (json.load(open(p))["final_val_loss"] if os.path.exists(
    p := os.path.join(rc_out, "runs", cfg, "lr%g" % lr, f"seed{sd}", "summary.json")) else None)
grid = rc_spec["configs"][0]["lr"]
values = {"aw": 1000, "aw-warmup1": 1, "aw-warmup2": 2}
tried = {("aw", lr): rc_loss("aw", lr, 0) for lr in grid}
base_lr = min(grid, key=lambda lr: tried[("aw", lr)])
tried.update({(v, base_lr): rc_loss(v, base_lr, 0) for v in ("aw-warmup1", "aw-warmup2")})
lead = lr_walk(tried, "aw", grid, rc_loss, values, base_lr)
found = run_set(rc_out)
check("recheck runs exactly what the restated rule asks for", found == {(c, lr, 0) for c, lr in tried} and
      None not in tried.values(), (sorted(found), tried))
other = ({"aw-warmup1", "aw-warmup2"} - {lead[0]}).pop() if lead[0] != "aw" else None
check("the lead walked off the base's lr and the other short warm-up ran at the lead's lr",
      base_lr == 0.3 and lead[1] != base_lr and (other, lead[1], 0) in found, (base_lr, lead, sorted(found)))

# ---- 2c. "extend_lrs": while a base's best lr is the lowest or highest tried, the next candidate
# beyond (continuing the grid's end ratio) runs, up to K per side. AdamW warming up over 1000 steps
# barely moves in 8, so the higher lrs should keep winning until the candidates run out.
ext_spec = {
    "train": {"task": "lm", "model": "gpt2-tiny", "data": corpus, "batch-size": 4, "block-size": 32,
              "eval-interval": 4, "eval-batches": 2, "warmup": 1000},
    "budget": {"steps": 8}, "seeds": [0, 1], "sweep_seeds": 1, "extend_lrs": 2,
    "configs": [{"name": "aw", "optimizer": "adamw", "lr": [0.001, 0.002]}],
}
ext_out = os.path.join(TMP, "ext")
ext_path = write(os.path.join(TMP, "ext.json"), ext_spec)
r = run(["compare", "--spec", ext_path, "--out", ext_out, "--dry-run"])
check("extend_lrs: dry-run lists the grid only", r.returncode == 0 and "/runs/aw/lr0.004/" not in r.stdout and
      "/runs/aw/lr0.0005/" not in r.stdout and "/runs/aw/lr0.002/seed0" in r.stdout, r.stdout)
r = run(["compare", "--spec", ext_path, "--out", ext_out])
check("extend_lrs comparison runs", r.returncode == 0, r.stdout[-3000:] + r.stderr)
check("extend_lrs: the progress counter never passes the runs planned", counters_ok(r.stdout), counters(r.stdout))
ext_loss = lambda lr, sd: (json.load(open(p))["final_val_loss"] if os.path.exists(
    p := os.path.join(ext_out, "runs", "aw", "lr%g" % lr, f"seed{sd}", "summary.json")) else None)
below, above = [0.0005, 0.00025], [0.004, 0.008]  # the grid's end ratio (2) continued, twice per side
tried = {lr: ext_loss(lr, 0) for lr in (0.001, 0.002)}
while True:
    best = min(tried, key=tried.get)
    nxt = next((c for c in below if c < min(tried) and c not in tried), None) if best == min(tried) else \
        next((c for c in above if c > max(tried) and c not in tried), None) if best == max(tried) else None
    if nxt is None:
        break
    tried[nxt] = ext_loss(nxt, 0)
found = {(lr, sd) for cfg, lr, sd in run_set(ext_out) if cfg == "aw"}
check("extend_lrs runs the candidates the rule asks for, then the seeds at the best",
      found == {(lr, 0) for lr in tried} | {(best, 1)} and None not in tried.values(), (sorted(found), tried))
check("extend_lrs went beyond the grid", len(tried) > 2, tried)
check_resumed_search("extend_lrs", ext_path, ext_out, r.stdout, lambda cfg, lr: lr not in (0.001, 0.002))
ext_rep = json.load(open(os.path.join(ext_out, "report.json")))
edge = best in (min(tried), max(tried))
sel_row = [x for x in ext_rep["sweep"] if x["selected"]]
check("the choice is flagged when at an end of the lrs tried", len(sel_row) == 1 and sel_row[0]["lr"] == best and
      sel_row[0]["at_edge"] == edge and ("✔ (at an end of the lrs tried)" in open(os.path.join(ext_out, "report.md")).read()) == edge,
      (sel_row, tried))
check("report lists the lrs tried", ext_rep["configs"][0]["lrs_tried"] == sorted(tried), ext_rep["configs"][0])
r = run(["compare", "--spec", write(os.path.join(TMP, "bad_ext.json"), dict(ext_spec, extend_lrs=-1)), "--out", ext_out, "--dry-run"])
check("bad extend_lrs refused", r.returncode == 2 and "'extend_lrs' must be an integer in [0, 10]" in r.stderr, r.stderr)

# ---- 3. bad specs: a clear message, exit 2, nothing run
bad_cases = [
    ("{not json", "not valid JSON"),
    ({"configs": [{"name": "a", "lr": 0.1}], "budget": {"steps": 2}, "trian": {}}, "unknown key 'trian'"),
    ({"configs": [{"name": "a", "optimizer": "adamw"}], "budget": {"steps": 2}}, "no learning rate"),
    ({"configs": [{"name": "a", "optimizer": "adamx", "lr": 0.1}], "budget": {"steps": 2}}, "adamx"),
    ({"configs": [{"name": "a", "lr": 0.1, "frobnicate": 1}], "budget": {"steps": 2}}, "frobnicate"),
    ({"configs": [{"name": "a", "lr": 0.1}], "budget": {"steps": 2}, "train": {"seed": 3}}, "use \"seeds\""),
    ({"configs": [{"name": "a", "lr": 0.1}], "budget": {"tokens": 2}}, "unknown budget kind 'tokens'"),
    ({"configs": [{"name": "a", "lr": 0.1}]}, "no budget"),
    ({"configs": [{"name": "a", "lr": 0.1}], "budget": {"seconds": 2}}, "needs \"steps\""),
    ({"configs": [{"name": "a", "lr": 0.1}, {"name": "a", "lr": 0.2}], "budget": {"steps": 2}}, "two configs are named 'a'"),
    ({"configs": [{"name": "../x", "lr": 0.1}], "budget": {"steps": 2}}, "names a directory"),
    ({"configs": [{"name": "a", "lr": [0.1, -1]}], "budget": {"steps": 2}}, "positive number"),
    ({"configs": [{"name": "a", "lr": 0.1, "batch-size": "many"}], "budget": {"steps": 2}}, "batch-size"),
    ({"configs": [], "budget": {"steps": 2}}, "non-empty list"),
]
for i, (bad, needle) in enumerate(bad_cases):
    path = write(os.path.join(TMP, f"bad{i}.json"), bad)
    bad_out = os.path.join(TMP, f"bad-out{i}")
    r = run(["compare", "--spec", path, "--out", bad_out])
    check(f"bad spec {i} ({needle})", r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr and
          not os.path.exists(bad_out), (r.returncode, r.stderr))
r = run(["compare", "--out", os.path.join(TMP, "x")])
check("--spec required", r.returncode == 2 and "--spec" in r.stderr, r.stderr)
r = run(["compare", "--spec", os.path.join(TMP, "missing.json"), "--out", os.path.join(TMP, "x")])
check("missing spec file", r.returncode == 2 and "missing.json" in r.stderr, r.stderr)
r = run(["compare", "--spec", spec_path, "--out", os.path.join(TMP, "x"), "--budget", "steps:zero"])
check("bad --budget", r.returncode == 2 and "--budget" in r.stderr, r.stderr)

# ---- 4. the committed experiment specs (experiments/*.json) are valid for this binary: every
# config's optimizer and flags pass the same checks a real run makes, each config plans its runs
EXPERIMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments")
specs = sorted(f for f in os.listdir(EXPERIMENTS) if f.endswith(".json"))
check("experiment specs found", len(specs) >= 8, specs)
for name in specs:
    spec_file = os.path.join(EXPERIMENTS, name)
    names = [c["name"] for c in json.load(open(spec_file))["configs"]]
    dry_out = os.path.join(TMP, "dry-" + name)
    r = run(["compare", "--spec", spec_file, "--out", dry_out, "--dry-run"])
    planned = [line for line in r.stdout.splitlines() if ": limuon train" in line]
    check(f"experiments/{name} plans its runs", r.returncode == 0 and not r.stderr and not os.path.exists(dry_out) and
          all(any(f"/runs/{n}/" in line for line in planned) for n in names), (r.returncode, r.stdout[-2000:], r.stderr))

elapsed = time.time() - T0
shutil.rmtree(TMP, ignore_errors=True)
script_checks.finish(f"compare_cli ({elapsed:.0f} s): ")
