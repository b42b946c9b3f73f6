"""Quiet-machine step times for a comparison study (issue 19's equal-wall-clock reading).

The study's runs take hours and share the machine with builds and tests, so the clocks in their
metrics are not comparable between configs. This measures every config of a spec in one
invocation, on a machine it first checks is idle: each config trains --steps steps (the spec's
train flags, its first lr, seed 0) in a fresh process, twice, interleaved (A B C .. A B C), and the
median ms per step after --warmup steps is kept; the figure is the mean of the two passes. The
result goes to OUT/timing.json, which `limuon compare` then uses for every seconds figure and axis
of OUT's report (steps × ms/step), instead of the runs' own clocks.

Usage: .venv/bin/python bench/study_timing.py --spec experiments/study_lm.json --out docs/results/study_lm
       [--bin build/limuon] [--steps 40] [--warmup 8] [--threads 2] [--configs a,b] [--force]
With --configs, the other configs already in OUT/timing.json keep their figures (a config added to
a study is measured alone, on a quiet machine as the rest were).
Pause anything else running first (the study itself: kill -STOP its processes); without --force
it refuses to measure while the CPUs are more than 10 % busy.
"""
import argparse
import atexit
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--spec", required=True)
ap.add_argument("--out", required=True, help="the study's output folder; timing.json is written there")
ap.add_argument("--bin", default="build/limuon")
ap.add_argument("--steps", type=int, default=40)
ap.add_argument("--warmup", type=int, default=8)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--configs", default="", help="comma list (default: every config of the spec)")
ap.add_argument("--force", action="store_true", help="measure even on a busy machine (recorded in timing.json)")
a = ap.parse_args()
if a.warmup < 2 or a.steps < a.warmup + 5:
    sys.exit("study_timing: need --warmup >= 2 (LiMuon exact's first step evaluates once) and --steps >= warmup + 5")

scratch = tempfile.mkdtemp(prefix="limuon-study-timing-")
atexit.register(shutil.rmtree, scratch, ignore_errors=True)

# Every run's flags, as `limuon compare --dry-run` plans them: "  DIR: limuon train --k v --k v".
plan = subprocess.run([a.bin, "compare", "--spec", a.spec, "--out", os.path.join(scratch, "plan"), "--dry-run"],
                      capture_output=True, text=True)
if plan.returncode != 0:
    sys.exit(f"study_timing: limuon compare --dry-run failed:\n{plan.stderr}")
flags = {}
for line in plan.stdout.splitlines():
    if ": limuon train " not in line or line.lstrip().startswith("(at the chosen lr)"):
        continue
    run_dir, cmd = line.strip().split(": limuon train ", 1)
    config = os.path.basename(os.path.dirname(os.path.dirname(run_dir)))  # runs/CONFIG/lrX/seedS
    if config in flags:
        continue  # its first lr is enough: the lr does not change the work of a step
    pairs = {}
    for part in (" " + cmd).split(" --")[1:]:
        key, _, value = part.partition(" ")
        pairs[key] = value
    flags[config] = pairs
wanted = a.configs.split(",") if a.configs else list(flags)
for c in wanted:
    if c not in flags:
        sys.exit(f"study_timing: config '{c}' is not in {a.spec} (valid: {', '.join(flags)})")


def busy_fraction(seconds=2.0):
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = read()
    time.sleep(seconds)
    t1, i1 = read()
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def measure(config):
    busy = busy_fraction()
    if busy > 0.10 and not a.force:
        sys.exit(f"study_timing: the CPUs are {busy:.0%} busy before measuring {config}; stop or pause what runs "
                 "(or give --force, which timing.json records)")
    out = tempfile.mkdtemp(prefix="run-", dir=scratch)
    f = dict(flags[config])
    for k in ("max-samples", "max-grad-evals", "max-seconds", "epochs", "checkpoint-interval", "keep"):
        f.pop(k, None)
    f.update({"steps": str(a.steps), "eval-interval": str(a.steps), "eval-batches": "1", "progress": "none",
              "threads": str(a.threads)})
    cmd = [a.bin, "train", "--out", out]
    for k, v in f.items():
        cmd += [f"--{k}", v]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"study_timing: {config} failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    with open(os.path.join(out, "metrics.jsonl")) as m:
        ms = [json.loads(l)["ms_per_step"] for l in m if '"ms_per_step"' in l]
    shutil.rmtree(out, ignore_errors=True)
    return statistics.median(ms[a.warmup:]), busy


results = {c: {"passes_ms": [], "busy_before": []} for c in wanted}
for p in range(2):
    for c in wanted:
        ms, busy = measure(c)
        results[c]["passes_ms"].append(round(ms, 2))
        results[c]["busy_before"].append(round(busy, 3))
        print(f"pass {p + 1}: {c}: {ms:.1f} ms/step (CPUs {busy:.0%} busy before)", flush=True)

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
source = (f"bench/study_timing.py --steps {a.steps} --warmup {a.warmup} --threads {a.threads}"
          f"{' --force' if a.force else ''}: median of each run's steps after the warm-up, mean of 2 interleaved "
          f"passes; {cpu}, {os.cpu_count()} CPUs, {when}")
timing = {"ms_per_step": {c: round(statistics.mean(v["passes_ms"]), 2) for c, v in results.items()}, "source": source,
          "details": results}
path = os.path.join(a.out, "timing.json")
# --configs measures some configs again or adds new ones: the others keep their figures, and the
# source says which were measured when.
if a.configs and os.path.exists(path):
    with open(path) as f:
        old = json.load(f)
    kept = {c: v for c, v in old.get("ms_per_step", {}).items() if c not in results and c in flags}
    if kept:
        timing = {"ms_per_step": {**kept, **timing["ms_per_step"]},
                  "source": f"{old.get('source', '?')}; {', '.join(wanted)} measured again or added by {source}",
                  "details": {**{c: v for c, v in old.get("details", {}).items() if c in kept}, **results}}
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(timing, f, indent=1)
    f.write("\n")
os.replace(tmp, path)
print(f"wrote {path}")
for c in results:
    v = timing["ms_per_step"][c]
    spread = abs(results[c]["passes_ms"][0] - results[c]["passes_ms"][1]) / v
    print(f"| {c} | {v:.1f} | {spread:.1%} |")
