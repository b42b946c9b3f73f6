#!/usr/bin/env python3
"""Test of bench/study_timing.py on a tiny spec (--force: the machine running the tests is busy):
timing.json gets every config's ms/step as the mean of its two passes, each pass a median of the
steps after the warm-up; with --configs the configs already in the file keep their figures and the
source names what was measured again; a config not in the spec is refused.

Usage: study_timing_test.py path/to/limuon
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from script_checks import check, finish, write

BIN = os.path.abspath(sys.argv[1])
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SCRIPT = os.path.join(ROOT, "bench", "study_timing.py")
TMP = tempfile.mkdtemp(prefix="limuon-timing-test-")
try:
    corpus = write(os.path.join(TMP, "corpus.txt"), "".join(f"Line {i}: a small corpus for timing.\n" for i in range(200)))
    spec = write(os.path.join(TMP, "spec.json"), {
        "train": {"task": "lm", "model": "gpt2-tiny", "data": corpus, "batch-size": 2, "block-size": 16, "warmup": 1},
        "budget": {"steps": 4}, "seeds": [0, 1], "sweep_seeds": 1,
        "configs": [{"name": "aw", "optimizer": "adamw", "lr": [0.001, 0.002]},
                    {"name": "mu", "optimizer": "muon", "lr": 0.02, "momentum": 0.95, "tune": {"momentum": [0.9]}}]})
    out = os.path.join(TMP, "out")
    os.makedirs(out)

    def timing(*extra):
        return subprocess.run([sys.executable, SCRIPT, "--spec", spec, "--out", out, "--bin", BIN, "--steps", "8", "--warmup", "2",
                               "--threads", "1", "--force", *extra], capture_output=True, text=True, timeout=600)

    r = timing()
    t = json.load(open(os.path.join(out, "timing.json"))) if r.returncode == 0 else {}
    check("timing.json for every config, variants too", r.returncode == 0 and sorted(t.get("ms_per_step", {})) ==
          ["aw", "mu", "mu-momentum0.9"], r.stdout + r.stderr)
    for c, v in t.get("ms_per_step", {}).items():
        passes = t["details"][c]["passes_ms"]
        check(f"{c}: the mean of its two passes", len(passes) == 2 and abs(v - round(statistics.mean(passes), 2)) < 1e-9 and v > 0,
              (v, passes))
    check("--force recorded", "--force" in t.get("source", ""), t.get("source"))
    first = dict(t.get("ms_per_step", {}))
    r = timing("--configs", "mu")
    t2 = json.load(open(os.path.join(out, "timing.json"))) if r.returncode == 0 else {"ms_per_step": {}, "source": ""}
    check("--configs keeps the others' figures", r.returncode == 0 and t2["ms_per_step"]["aw"] == first.get("aw") and
          t2["ms_per_step"]["mu-momentum0.9"] == first.get("mu-momentum0.9") and set(t2["ms_per_step"]) == set(first),
          (r.stderr, t2["ms_per_step"], first))
    check("--configs: the source says what was measured again", t2["source"].startswith(t["source"]) and
          "; mu measured again or added by bench/study_timing.py" in t2["source"], t2["source"])
    r = timing("--configs", "nope")
    check("an unknown config refused", r.returncode != 0 and "config 'nope' is not in" in r.stderr, r.stderr)
    r = subprocess.run([BIN, "compare", "--spec", spec, "--out", out, "--report-only"], capture_output=True, text=True)
    check("compare accepts the file", r.returncode == 0 and "timing.json" not in r.stderr, r.stderr)
finally:
    shutil.rmtree(TMP, ignore_errors=True)
finish("study_timing_test: ")
