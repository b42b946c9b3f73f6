#!/usr/bin/env python3
"""CLI contract of `limuon bench` (keys scripts rely on) and its handling of bad input.

Usage: cli_contract.py path/to/limuon
"""
import json
import subprocess
import sys

BIN = sys.argv[1]
failures = []
passed = 0


def run(args):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=300)


def check(name, cond, detail=""):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(f"{name}: {detail}")


def json_lines(out):
    return [json.loads(l) for l in out.splitlines() if l.strip()]


# bench orth: one JSON object per line with the documented keys, sane values.
r = run(["bench", "orth", "--shape", "64x96", "--method", "all", "--json", "--repeats", "2", "--warmup", "1"])
check("orth exit", r.returncode == 0, r.stderr)
rows = json_lines(r.stdout) if r.returncode == 0 else []
check("orth rows", [x.get("label") for x in rows] ==
      ["svd", "ns5", "polar_express", "gram_ns:ns5", "gram_ns:polar_express", "rsvd"], r.stdout)
for row in rows:
    for key in ("method", "shape", "batch", "median_ms", "gflops", "matmul_gflops", "ortho_err", "polar_rel_err"):
        check(f"orth key {key}", key in row, row)
    check("orth shape", row.get("shape") == "64x96", row)
    check("orth median", row.get("median_ms", 0) > 0, row)
by = {x["method"]: x for x in rows}
if "svd" in by:
    check("svd exact", by["svd"]["polar_rel_err"] < 1e-4 and by["svd"]["ortho_err"] < 1e-4, by["svd"])
if "ns5" in by:
    check("ns5 band", 0.3 < by["ns5"]["sv_min"] and by["ns5"]["sv_max"] < 1.5, by["ns5"])
# gram_ns: the ns5 iteration on the Gram matrix, so the same band (64x96 is above the 1.5 crossover)
labels = {x.get("label"): x for x in rows}
if "gram_ns:ns5" in labels and "ns5" in by:
    g = labels["gram_ns:ns5"]
    check("gram_ns matches ns5", abs(g["sv_max"] - by["ns5"]["sv_max"]) < 1e-3 and abs(g["polar_rel_err"] - by["ns5"]["polar_rel_err"]) < 1e-3
          and g.get("gram_restarts") == "" and "time_vs_ns5" in g, g)

r = run(["bench", "orth", "--shape", "32x48", "--batch", "3", "--method", "ns5", "--json", "--repeats", "2"])
rows = json_lines(r.stdout) if r.returncode == 0 else []
check("orth batch", len(rows) == 1 and rows[0]["batch"] == 3 and "loop_median_ms" in rows[0], r.stdout + r.stderr)

# bench step: keys, and state bytes equal to the §6 formula for every configuration.
for extra in (["--optimizer", "muon"], ["--optimizer", "adamw"], ["--optimizer", "limuon"],
              ["--optimizer", "limuon", "--lowrank-state", "light", "--rank", "8", "--storm", "exact"],
              ["--optimizer", "limuon", "--lowrank-state", "paper", "--rank", "8"],
              ["--optimizer", "limuon", "--lowrank-state", "light", "--storm", "approx"]):
    r = run(["bench", "step", "--model", "tiny", "--json", "--repeats", "2"] + extra)
    rows = json_lines(r.stdout) if r.returncode == 0 else []
    check(f"step {extra}", len(rows) == 1, r.stdout + r.stderr)
    for row in rows:
        for key in ("optimizer", "median_ms", "state_bytes", "formula_state_bytes"):
            check(f"step key {key}", key in row, row)
        check(f"step formula {extra}", row.get("state_bytes") == row.get("formula_state_bytes"), row)
        exact = extra[1] == "limuon" and "approx" not in extra
        check(f"step evals {extra}", row.get("grad_evals_per_step") == (2 if exact else 1), row)

# bench step's default orthogonalizer is the optimizers' own: gram_ns for Muon, LiMuon and the family
# members that orthogonalize by Newton-Schulz, svd for SUMO; --orthogonalizer still picks one.
for extra, label in ((["--optimizer", "muon"], "muon/gram_ns"),
                     (["--optimizer", "limuon"], "limuon/none/exact/gram_ns"),
                     (["--optimizer", "muoneq"], "muoneq/rows/gram_ns"), (["--optimizer", "gluon"], "gluon/gram_ns"),
                     (["--optimizer", "sumo"], "sumo/svd/r32/K200"),
                     (["--optimizer", "muon", "--orthogonalizer", "ns5"], "muon/ns5"),
                     (["--optimizer", "muoneq", "--orthogonalizer", "ns5"], "muoneq/rows/ns5")):
    r = run(["bench", "step", "--model", "tiny", "--json", "--repeats", "1", "--warmup", "0"] + extra)
    rows = json_lines(r.stdout) if r.returncode == 0 else []
    check(f"step default orthogonalizer {extra}", len(rows) == 1 and rows[0].get("config") == label,
          r.stdout + r.stderr)

# Bad input: clear message naming the flag, exit code 2, no traceback.
for args, needle in ((["bench", "orth", "--shape", "12by3"], "--shape"),
                     (["bench", "orth", "--method", "magic"], "--method"),
                     (["bench", "orth", "--batch", "0"], "--batch"),
                     (["bench", "orth", "--nonsense", "1"], "unknown flag --nonsense"),
                     (["bench", "step", "--optimizer", "sgd"], "--optimizer"),
                     (["bench", "step", "--rank", "abc"], "--rank"),
                     (["bench", "step", "--lowrank-state", "tiny"], "lowrank_state"),
                     (["frobnicate"], "unknown command"),
                     (["bench", "orth", "--threads", "-3"], "--threads")):
    r = run(args)
    check(f"bad {args}", r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr,
          f"rc={r.returncode} stderr={r.stderr!r}")

# Unknown flags, table-driven over every command: reported by name as unknown (never swallowing the
# next flag as a value, never "missing value" at the end), the closest known flag suggested, exit 2,
# nothing run and no output directory made.
import atexit
import os
import re
import shutil
import tempfile
tmp = tempfile.mkdtemp(prefix="limuon-flags-")
atexit.register(shutil.rmtree, tmp, ignore_errors=True)
COMMANDS = (["train"], ["compare"], ["eval"], ["generate"], ["tokenize"], ["bench", "orth"], ["bench", "step"],
            ["bench", "memory"], ["bench", "train-step"], ["train", "--nproc", "2"])
for cmd in COMMANDS:
    name = " ".join(cmd)
    out = os.path.join(tmp, name.replace(" ", "_"))
    for where, argv in (("before --out", cmd + ["--bogus-flag", "--out", out]),
                        ("last", cmd + ["--out", out, "--bogus-flag"])):
        r = run(argv)
        check(f"{name}: unknown flag {where}", r.returncode == 2 and "unknown flag --bogus-flag" in r.stderr
              and "unknown command" not in r.stderr and "missing value" not in r.stderr and not os.path.exists(out),
              f"rc={r.returncode} stderr={r.stderr!r}")
        check(f"{name}: unknown flag reported once", r.stderr.count("--bogus-flag") == 1, r.stderr)
    r = run(cmd + ["--out", out, "--seeed", "1"])
    check(f"{name}: closest flag suggested", r.returncode == 2 and "unknown flag --seeed (did you mean --seed?)" in r.stderr,
          r.stderr)
# A known flag with a bad value under --nproc: rejected once, by the parent, before any rank starts.
r = run(["train", "--nproc", "2", "--steps", "1", "--lr", "fast", "--out", os.path.join(tmp, "nproc_bad")])
check("--nproc: bad value rejected once before launching", r.returncode == 2 and r.stderr.count("--lr") == 1
      and "rank" not in r.stderr.lower() and not os.path.exists(os.path.join(tmp, "nproc_bad")), r.stderr)
# The parser's list of known flags is exactly the set of flags the commands read (src/cli/*.cpp).
cli_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "cli")
read = set()
for fname in os.listdir(cli_dir):
    if fname.endswith(".cpp") and fname != "args.cpp":
        read |= set(re.findall(r'\b(?:args|a)\.(?:str|integer|real|flag|has)\("([a-z0-9-]+)"', open(os.path.join(cli_dir, fname)).read()))
args_cpp = open(os.path.join(cli_dir, "args.cpp")).read()
listed = set()
for fn in ("boolean_flags", "known_flags"):
    body = args_cpp[args_cpp.index(f"std::set<std::string>& {fn}()"):]
    listed |= set(re.findall(r'"([a-z0-9-]+)"', body[:body.index("return flags;")]))
check("every flag a command reads is known to the parser", read <= listed, sorted(read - listed))
check("the parser knows no flag that no command reads", listed <= read, sorted(listed - read))

for f in failures:
    print("FAIL", f)
print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
