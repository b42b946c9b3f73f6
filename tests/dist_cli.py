#!/usr/bin/env python3
"""Data-parallel `limuon train` on 127.0.0.1 (c10d/Gloo):
  - 2 ranks with B/2 samples each end where 1 rank with batch B ends, for AdamW, Muon and every
    LiMuon variant, within a floating-point tolerance (TOL below: the ranks' gradient mean is
    summed in a different order than one process's batch mean, and ns5 and the rsvd carry those
    last-bit differences along);
  - the orthogonalizations are shared out (each rank computes about half of them);
  - a checkpoint written by 2 ranks resumes on 1;
  - a rank that dies, or never arrives, makes the others exit with a clear error in bounded time,
    and leaves every checkpoint loadable;
  - bad environments and flags are clear errors.

Usage: dist_cli.py path/to/limuon
"""
import array
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

BIN = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="limuon-dist-test-")
TOL = 1e-3  # max |w_2ranks - w_1rank| / max |w_1rank| over every tensor, after STEPS steps
STEPS = 4
failures, passed = [], 0
T0 = time.time()


def check(name, cond, detail=""):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(f"{name}: {str(detail)[-1500:]}")
    return cond


text = "".join(f"Row {i}: pack my box with five dozen liquor jugs, {i * 5 % 11} of them.\n" for i in range(400))
corpus = os.path.join(TMP, "corpus.txt")
with open(corpus, "w") as f:
    f.write(text)

BASE = [BIN, "train", "--task", "lm", "--model", "gpt2-tiny", "--data", corpus, "--steps", str(STEPS), "--batch-size", "4",
        "--block-size", "32", "--eval-interval", "100", "--eval-batches", "1", "--dropout", "0", "--progress", "lines",
        "--seed", "3", "--adamw-lr", "0.003", "--warmup", "1", "--threads", "1"]
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}


from dist_common import with_flag  # noqa: E402  (tests/ is on sys.path: the script's folder)


def run(args, env=None, timeout=300):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env or CLEAN_ENV)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        a, b = info["data_offsets"]
        out[name] = array.array("f", data[a:b])
    return out


def rel_diff(p, q):
    a, b = read_safetensors(p), read_safetensors(q)
    if a.keys() != b.keys():
        return float("inf")
    worst = 0.0
    for k in a:
        scale = max(max(abs(x) for x in a[k]), 1e-12)
        worst = max(worst, max(abs(x - y) for x, y in zip(a[k], b[k])) / scale)
    return worst


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIGS = [
    ("adamw", ["--optimizer", "adamw", "--lr", "0.003"]),
    ("muon", ["--optimizer", "muon", "--lr", "0.02"]),
    ("limuon-none-exact", ["--optimizer", "limuon", "--lr", "0.02", "--lowrank-state", "none", "--storm", "exact"]),
    ("limuon-none-approx", ["--optimizer", "limuon", "--lr", "0.02", "--lowrank-state", "none", "--storm", "approx"]),
    ("limuon-paper-exact", ["--optimizer", "limuon", "--lr", "0.02", "--lowrank-state", "paper", "--storm", "exact", "--rank", "4"]),
    ("limuon-light-exact", ["--optimizer", "limuon", "--lr", "0.02", "--lowrank-state", "light", "--storm", "exact", "--rank", "4"]),
    ("limuon-light-approx", ["--optimizer", "limuon", "--lr", "0.02", "--lowrank-state", "light", "--storm", "approx", "--rank", "4"]),
]

worst_seen = {}
for name, opt in CONFIGS:
    one, two = os.path.join(TMP, name + "-1"), os.path.join(TMP, name + "-2")
    r1 = run(BASE + opt + ["--out", one])
    r2 = run(BASE + opt + ["--out", two, "--nproc", "2", "--no-shard-state"])  # replicated state
    if not check(f"{name}: 1 rank and 2 ranks run", r1.returncode == 0 and r2.returncode == 0, r1.stderr[-600:] + r2.stderr[-900:]):
        continue
    d = rel_diff(os.path.join(one, "model.safetensors"), os.path.join(two, "model.safetensors"))
    worst_seen[name] = d
    check(f"{name}: 2 ranks x B/2 = 1 rank x B within {TOL} (got {d:.2e})", d <= TOL, d)
    losses = [[json.loads(l)["loss"] for l in open(os.path.join(x, "metrics.jsonl")) if "loss" in json.loads(l)] for x in (one, two)]
    worst_loss = max(abs(a - b) / abs(a) for a, b in zip(*losses)) if len(losses[0]) == len(losses[1]) == STEPS else float("inf")
    check(f"{name}: per-step training losses agree within 1e-4 (got {worst_loss:.1e})", worst_loss <= 1e-4, losses)
    # Not trivially equal either: the reduction really happened (a rank training on its half
    # alone would end elsewhere).
    s1, s2 = (json.load(open(os.path.join(x, "summary.json"))) for x in (one, two))
    check(f"{name}: same sample and gradient-evaluation counts", (s1["samples"], s1["grad_evals"]) == (s2["samples"], s2["grad_evals"]),
          (s1["samples"], s1["grad_evals"], s2["samples"], s2["grad_evals"]))
    dp = s2.get("data_parallel", {})
    check(f"{name}: summary reports 2 ranks and the all-reduce traffic", dp.get("world_size") == 2 and dp.get("allreduce_bytes", 0) > 0, dp)
    if name in ("muon", "limuon-none-exact"):
        total, local = dp.get("orth_total_matrices", 0), dp.get("orth_local_matrices", 0)
        check(f"{name}: rank 0 orthogonalizes about half of the matrices ({local} of {total})",
              total > 0 and 0.3 * total <= local <= 0.7 * total, dp)
        check(f"{name}: the other ranks' results arrive by all-gather", dp.get("allgather_bytes_received", 0) > 0, dp)
    # Only rank 0 writes: one metrics line per step and eval, no duplicates.
    steps = [json.loads(l)["step"] for l in open(os.path.join(two, "metrics.jsonl")) if "loss" in json.loads(l)]
    check(f"{name}: metrics from rank 0 only", steps == list(range(1, STEPS + 1)), steps)

# A half-batch run on one rank is far from both (negative control: the comparison can fail).
half = os.path.join(TMP, "half")
r = run(with_flag(BASE, "--batch-size", "2") + CONFIGS[1][1] + ["--out", half])
if check("half-batch control runs", r.returncode == 0, r.stderr[-500:]):
    d = rel_diff(os.path.join(TMP, "muon-1", "model.safetensors"), os.path.join(half, "model.safetensors"))
    check(f"negative control: half the batch differs by more than {TOL} (got {d:.2e})", d > 10 * TOL, d)

# Checkpoint by 2 ranks, resumed on 1: ends where the uninterrupted 1-rank run ends.
resumed = os.path.join(TMP, "resumed")
r1 = run(BASE + CONFIGS[2][1] + ["--out", resumed, "--nproc", "2", "--stop-after", "2"])
r2 = run(BASE + CONFIGS[2][1] + ["--out", resumed, "--resume"])
if check("2 ranks stop, 1 rank resumes", r1.returncode == 0 and r2.returncode == 0 and "resumed from" in r2.stderr,
         r1.stderr[-600:] + r2.stderr[-600:]):
    d = rel_diff(os.path.join(TMP, "limuon-none-exact-1", "model.safetensors"), os.path.join(resumed, "model.safetensors"))
    check(f"resume with a different number of ranks within {TOL} (got {d:.2e})", d <= TOL, d)


def ranks_env(rank, world, port, extra=None):
    env = dict(CLEAN_ENV, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    env.update(extra or {})
    return env


# A rank that dies mid-run: the survivor exits with a clear error well within --dist-timeout, and
# every checkpoint it wrote is complete and resumes.
died = os.path.join(TMP, "died")
port = free_port()
long_run = with_flag(BASE, "--steps", "100000") + CONFIGS[1][1] + ["--out", died, "--checkpoint-interval", "1", "--dist-timeout", "60"]
p0 = subprocess.Popen(long_run, env=ranks_env(0, 2, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
p1 = subprocess.Popen(long_run, env=ranks_env(1, 2, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.time() + 120
while time.time() < deadline and p0.poll() is None and len([f for f in os.listdir(died) if f.startswith("ckpt_")] if os.path.isdir(died) else []) < 2:
    time.sleep(0.05)
p1.send_signal(signal.SIGKILL)
t_kill = time.time()
try:
    _, err = p0.communicate(timeout=90)
    elapsed = time.time() - t_kill
    check("a dead rank: the survivor exits non-zero", p0.returncode not in (0, None), p0.returncode)
    check(f"a dead rank: detected in bounded time ({elapsed:.1f} s < 60 s)", elapsed < 60, elapsed)
    check("a dead rank: the error says a collective failed", "data-parallel" in err and "failed" in err, err[-800:])
    check("a dead rank: the error names the lost peer", "lost contact with rank 1 (127.0.0.1" in err, err[-800:])
except subprocess.TimeoutExpired:
    p0.kill()
    check("a dead rank: the survivor does not hang", False, "still running 90 s after the kill")
p1.wait()
ckpts = sorted(f for f in os.listdir(died) if f.startswith("ckpt_") and f.endswith(".pt"))
check("a dead rank: checkpoints were written", len(ckpts) >= 2, ckpts)
for c in ckpts:
    with zipfile.ZipFile(os.path.join(died, c)) as z:
        check(f"a dead rank: {c} complete", z.testzip() is None)
if ckpts:
    scratch = os.path.join(TMP, "died-resume")
    os.makedirs(scratch)
    shutil.copy(os.path.join(died, ckpts[-1]), scratch)
    step = int(ckpts[-1][5:13])
    r = run(with_flag(BASE, "--steps", str(step + 1)) + CONFIGS[1][1] + ["--out", scratch, "--resume"])
    check("a dead rank: the newest checkpoint resumes", r.returncode == 0 and "resumed from" in r.stderr, r.stderr[-600:])

# A rank that never arrives: rank 0 gives up after --dist-timeout with a clear error.
t = time.time()
r = run(BASE + ["--out", os.path.join(TMP, "alone"), "--dist-timeout", "4"], env=ranks_env(0, 2, free_port()), timeout=120)
elapsed = time.time() - t
check("a missing rank: exit 1", r.returncode == 1, r.stderr[-600:])
check(f"a missing rank: gives up in bounded time ({elapsed:.1f} s)", elapsed < 40, elapsed)
check("a missing rank: the error says who did not arrive", "not all 2 ranks arrived within 4 s" in r.stderr, r.stderr[-600:])

# Bad environments and flags: exit 2 (or 1 for a port in use), naming the problem.
bad_envs = [
    ({"RANK": "0"}, "WORLD_SIZE is not"),
    ({"WORLD_SIZE": "2"}, "RANK is not"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 must be below WORLD_SIZE=2"),
    ({"RANK": "0", "WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a non-negative integer"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, "RANK='-1' is not a non-negative integer"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}, "MASTER_PORT is not set"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "29999"}, "MASTER_ADDR is not set"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "70000"}, "MASTER_PORT=70000 is out of range"),
]
for env_extra, message in bad_envs:
    r = run(BASE + ["--out", os.path.join(TMP, "badenv")], env=dict(CLEAN_ENV, **env_extra), timeout=60)
    check(f"bad environment {env_extra}", r.returncode == 2 and message in r.stderr, f"rc={r.returncode} {r.stderr[-400:]}")
r = run(BASE + ["--out", os.path.join(TMP, "badenv"), "--nproc", "2"], env=dict(CLEAN_ENV, RANK="0", WORLD_SIZE="2"))
check("--nproc inside a job", r.returncode == 2 and "--nproc starts its own local ranks" in r.stderr, r.stderr[-400:])
r = run(with_flag(BASE, "--batch-size", "3") + ["--out", os.path.join(TMP, "odd"), "--nproc", "2"])
check("--batch-size not divisible by the ranks", r.returncode == 2 and "must be divisible by the number of ranks (2)" in r.stderr,
      f"rc={r.returncode} {r.stderr[-400:]}")
for bad in ("0", "x"):
    r = run(BASE + ["--out", os.path.join(TMP, "badn"), "--nproc", bad])
    check(f"--nproc {bad}", r.returncode == 2 and "--nproc" in r.stderr, r.stderr[-300:])
with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    t = time.time()
    r = run(BASE + ["--out", os.path.join(TMP, "busy"), "--dist-timeout", "5"], env=ranks_env(0, 2, busy.getsockname()[1]), timeout=120)
    check("port in use: exit 1 naming it", r.returncode == 1 and "port is in use" in r.stderr and time.time() - t < 40,
          f"rc={r.returncode} {r.stderr[-500:]}")


# Sharded optimizer state (--shard-state, ZeRO-1): the same training as the unsharded 2-rank run,
# identical weights on every rank, about half the state per rank, checkpoints that resume anywhere.
def summary_of(d):
    return json.load(open(os.path.join(d, "summary.json")))


def safetensors_bytes(d):
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        return f.read()


checksums = {}
for name, opt in [c for c in CONFIGS if c[0] in ("adamw", "muon", "limuon-none-exact", "limuon-light-exact")]:
    plain, sharded = os.path.join(TMP, name + "-2"), os.path.join(TMP, name + "-2s")
    r = run(BASE + opt + ["--out", sharded, "--nproc", "2", "--shard-state"])
    if not check(f"{name} sharded: 2 ranks run", r.returncode == 0, r.stderr[-900:]) or not os.path.isdir(plain):
        continue
    d = rel_diff(os.path.join(plain, "model.safetensors"), os.path.join(sharded, "model.safetensors"))
    check(f"{name} sharded: same weights as unsharded within {TOL} (got {d:.2e})", d <= TOL, d)
    sp, ss = summary_of(plain), summary_of(sharded)
    ranks = ss["data_parallel"].get("ranks", [])
    sums = {x["weights_checksum"] for x in ranks}
    checksums[name] = sums
    check(f"{name} sharded: bit-identical weights on both ranks", len(ranks) == 2 and len(sums) == 1, ranks)
    full = sp["data_parallel"]["ranks"][0]["optimizer_state_bytes"]
    per = [x["optimizer_state_bytes"] for x in ranks]
    check(f"{name} sharded: the ranks' state adds up to the unsharded state ({per} vs {full})",
          len(per) == 2 and abs(sum(per) - full) <= 0.02 * full, (per, full))
    check(f"{name} sharded: no rank keeps more than 60% of it ({per} of {full})", len(per) == 2 and max(per) <= 0.6 * full, (per, full))
    dp = ss["data_parallel"]
    check(f"{name} sharded: gradients reduce-scattered, weights all-gathered, no all-reduce of gradients",
          dp["sharded_state"] and dp["reduce_scatter_bytes"] > 0 and dp["weights_allgather_bytes_received"] > 0
          and dp["allreduce_bytes"] == 0 and dp["allgather_bytes_received"] == 0, dp)
    check(f"{name} sharded: bytes written to the wire measured", all(x["wire_bytes_sent"] > 0 for x in ranks), ranks)
# Sharded is the default with 2+ ranks; --shard-state and --no-shard-state together are refused.
dflt = os.path.join(TMP, "default-sharded")
r = run(BASE + CONFIGS[1][1] + ["--out", dflt, "--nproc", "2"])
check("default with 2 ranks: sharded state", r.returncode == 0 and summary_of(dflt)["data_parallel"].get("sharded_state") is True,
      r.stderr[-600:])
r = run(BASE + ["--out", os.path.join(TMP, "both"), "--nproc", "2", "--shard-state", "--no-shard-state"])
check("--shard-state with --no-shard-state: usage error", r.returncode == 2 and "give one of them" in r.stderr, r.stderr[-300:])
# Negative control: the checksum tells different weights apart.
if "muon" in checksums and "limuon-none-exact" in checksums:
    check("sharded: different runs, different weight checksums", checksums["muon"] != checksums["limuon-none-exact"], checksums)

# Sharded checkpoints: written by 2 ranks; resumed on 2 (sharded: bit-identical), on 1 and on 4.
exact = CONFIGS[2][1]
straight = os.path.join(TMP, "limuon-none-exact-2s")
for label, args in [("2 ranks sharded", ["--nproc", "2", "--shard-state"]), ("1 rank", []),
                    ("4 ranks sharded", ["--nproc", "4", "--shard-state"])]:
    d = os.path.join(TMP, "sharded-resume-" + label.replace(" ", "-"))
    r1 = run(BASE + exact + ["--out", d, "--nproc", "2", "--shard-state", "--stop-after", "2"])
    r2 = run(BASE + exact + ["--out", d, "--resume"] + args)
    if not check(f"sharded checkpoint resumed on {label}", r1.returncode == 0 and r2.returncode == 0 and "resumed from" in r2.stderr,
                 r1.stderr[-600:] + r2.stderr[-600:]) or not os.path.isdir(straight):
        continue
    if label == "2 ranks sharded":
        check("sharded checkpoint, same ranks: bit-identical to the uninterrupted run",
              safetensors_bytes(d) == safetensors_bytes(straight), "weights differ")
    else:
        dd = rel_diff(os.path.join(straight, "model.safetensors"), os.path.join(d, "model.safetensors"))
        check(f"sharded checkpoint on {label}: within {TOL} of the uninterrupted run (got {dd:.2e})", dd <= TOL, dd)

shutil.rmtree(TMP, ignore_errors=True)
print("2-rank vs 1-rank max relative weight difference: " + ", ".join(f"{k} {v:.1e}" for k, v in worst_seen.items()))
print(f"{time.time() - T0:.0f}s")
for f in failures:
    print("FAIL", f)
print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
