"""Smoke test of `limuon bench memory` on gpt2-tiny: the table and JSON rows have their fields,
the allocator saw the step, and the persistent state of the low-rank variants is smaller than
Option #1's. Usage: bench_memory_smoke.py LIMUON_BINARY"""
import json
import os
import subprocess
import sys
import tempfile

exe = sys.argv[1]
configs = "adamw,limuon:none:exact,limuon:light:exact,limuon:light:exact:acc"
common = [exe, "bench", "memory", "--model", "gpt2-tiny", "--batch-size", "2", "--block-size", "16",
          "--rank", "4", "--threads", "1", "--configs", configs]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


with tempfile.TemporaryDirectory() as tmp:
    out_json = os.path.join(tmp, "memory.json")
    table = subprocess.run(common + ["--json-out", out_json], capture_output=True, text=True, timeout=600)
    check(table.returncode == 0, f"table run exit {table.returncode}: {table.stderr[-2000:]}")
    lines = table.stdout.splitlines()
    print(table.stdout)
    check(any(l.split()[:1] == ["config"] and "allocpk_MiB" in l and "rssstep_MiB" in l for l in lines),
          "table header with config, allocpk_MiB, rssstep_MiB")
    for c in configs.split(","):
        check(any(l.split()[:1] == [c] for l in lines), f"a table row for {c}")
    with open(out_json) as f:
        rows = {r["config"]: r for r in json.load(f)}

lines_run = subprocess.run(common + ["--json"], capture_output=True, text=True, timeout=600)
check(lines_run.returncode == 0, f"--json run exit {lines_run.returncode}: {lines_run.stderr[-2000:]}")
json_rows = [json.loads(l) for l in lines_run.stdout.splitlines() if l.startswith("{")]
check(len(json_rows) == 4, f"four JSON lines, got {len(json_rows)}")

fields = ["bench", "config", "model", "state_bytes", "matrix_state_bytes", "alloc_before_bytes", "alloc_peak_bytes",
          "alloc_step_bytes", "rss_before_bytes", "rss_peak_bytes", "rss_step_bytes", "evaluations_per_step"]
for name, r in rows.items():
    for k in fields:
        check(k in r, f"{name}: field {k}")
    check(r["bench"] == "memory" and r["model"] == "gpt2-tiny", f"{name}: bench/model")
    check(r["alloc_peak_bytes"] > 0 and r["alloc_step_bytes"] > 0, f"{name}: allocator peak > 0")
    check(r["alloc_peak_bytes"] >= r["alloc_before_bytes"], f"{name}: peak >= before")
    check(r["rss_step_bytes"] is None or r["rss_step_bytes"] >= 0, f"{name}: rss step >= 0")

check(rows["adamw"]["evaluations_per_step"] == 1, "adamw: one evaluation per step")
check(rows["limuon:none:exact"]["evaluations_per_step"] == 2, "limuon exact: two evaluations per steady-state step")
none, light, acc = rows["limuon:none:exact"], rows["limuon:light:exact"], rows["limuon:light:exact:acc"]
check(light["matrix_state_bytes"] < none["matrix_state_bytes"],
      f"light's persistent state {light['matrix_state_bytes']} < none's {none['matrix_state_bytes']}")
check(acc["matrix_state_bytes"] == light["matrix_state_bytes"], "accumulating keeps the same persistent state")
# gpt2-tiny's 8 hidden matrices hold 2·(96·32 + 32·32 + 128·32 + 32·128) floats = 98 KiB: the dense
# copy of g̃ that light+exact keeps through the second evaluation, at the activation peak.
dense_grads = 4 * 2 * (96 * 32 + 32 * 32 + 128 * 32 + 32 * 128)
check(light["alloc_step_bytes"] - acc["alloc_step_bytes"] >= dense_grads // 2,
      f"accumulating lowers the step's allocator peak by about one dense gradient set: "
      f"{light['alloc_step_bytes']} vs {acc['alloc_step_bytes']} (set = {dense_grads})")

print("FAILED" if failures else "ok", len(failures), "failure(s)")
sys.exit(1 if failures else 0)
