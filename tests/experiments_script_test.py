#!/usr/bin/env python3
"""Test of scripts/experiments.sh, the studies' driver, with a stand-in for `limuon compare` (a
script that waits and prints its arguments): it runs compare with the spec, output and flags it was
given, then the reading scripts; an unknown study exits 2 naming it; and a copy of experiments.sh
edited while it runs (a study runs for hours, and bash reads a script as it executes it) goes on
exactly as it was when it started, where the old layout ran into a syntax error at its end.

Usage: experiments_script_test.py [path/to/limuon]   (not used: compare is stood in for)
"""
import os
import shutil
import subprocess
import tempfile
import time

from script_checks import check, finish, write

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TMP = tempfile.mkdtemp(prefix="limuon-experiments-test-")

try:
    # A tree shaped like the repository: scripts/experiments.sh, experiments/demo.json, and a
    # stand-in compare that sleeps, so that the script can be edited while it waits.
    os.makedirs(os.path.join(TMP, "scripts"))
    os.makedirs(os.path.join(TMP, "experiments"))
    script = os.path.join(TMP, "scripts", "experiments.sh")
    shutil.copy(os.path.join(ROOT, "scripts", "experiments.sh"), script)
    write(os.path.join(TMP, "experiments", "demo.json"), {})
    started = os.path.join(TMP, "compare-started")
    fake = write(os.path.join(TMP, "fake-limuon"), f'#!/bin/bash\ntouch {started}\nsleep 2\necho "fake: $*"\n')
    os.chmod(fake, 0o755)
    env = dict(os.environ, OUT=os.path.join(TMP, "out"), LIMUON=fake, THREADS="1")

    p = subprocess.Popen(["bash", script, "demo", "--", "--report-only"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not os.path.exists(started) and time.time() < deadline:  # wait until compare runs, then edit
        time.sleep(0.05)
    check("the stand-in compare started", os.path.exists(started))
    text = open(script).read()
    with open(script, "w") as f:
        f.write("echo EDITED-AT-THE-TOP\n" + text.replace("exit", "echo EDITED-EXIT; exit") + "echo EDITED-AT-THE-END\n")
    out, _ = p.communicate(timeout=60)
    check("edited while running: exit 0", p.returncode == 0, out)
    check("edited while running: nothing of the edit runs", "EDITED" not in out and "syntax error" not in out, out)
    check("compare got the spec, output and flags",
          f"fake: compare --spec experiments/demo.json --out {env['OUT']}/demo --threads 1 --report-only" in out, out)
    check("the run ends with its line", "== demo: " in out and f"report {env['OUT']}/demo/report.md" in out, out)

    shutil.copy(os.path.join(ROOT, "scripts", "experiments.sh"), script)
    r = subprocess.run(["bash", script, "nosuch"], env=env, capture_output=True, text=True, timeout=60)
    check("unknown study: exit 2, named", r.returncode == 2 and "no experiments/nosuch.json" in r.stderr, r.stderr)
    r = subprocess.run(["bash", script, "demo"], env=dict(env, LIMUON=os.path.join(TMP, "missing")),
                       capture_output=True, text=True, timeout=60)
    check("missing binary: exit 1, named", r.returncode == 1 and "not built" in r.stderr, r.stderr)
finally:
    shutil.rmtree(TMP, ignore_errors=True)

finish("experiments_script_test: ")
