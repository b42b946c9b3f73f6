#!/usr/bin/env python3
"""Crash safety of `limuon train`: SIGKILL a run that checkpoints every step at many seeded-random
moments (during start-up, between steps, and while a checkpoint is being written), and after every
kill check that
  - every checkpoint left behind is complete and loads (a real `--resume` of each, once per file);
  - the newest checkpoint is at least as new as the newest one seen just before the kill;
  - no checkpoint that existed before the kill was lost, except those that --keep rotates out
    (i.e. at least --keep newer ones are there);
  - a temporary file left by a kill during a write is removed by the next run, and never loaded;
  - the next `--resume` continues from the newest checkpoint.
At the end the run is resumed to completion: its model.safetensors must be bit-identical to that of
an uninterrupted run with the same flags.

Usage: crash_safety.py path/to/limuon [seed]
"""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

BIN = sys.argv[1]
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 20240607
# The time budget is a safety net only (a sanitizer build under load needs ~400 s); the run stops
# as soon as it has its kills (about 30 s on a plain build).
MIN_KILLS, MIN_WRITE_KILLS, MAX_CYCLES, TIME_BUDGET_S = 24, 5, 90, 900
KEEP, STEPS = 3, 200
TMP = tempfile.mkdtemp(prefix="limuon-crash-test-")
failures, passed = [], 0
rng = random.Random(SEED)
T0 = time.time()


def check(name, cond, detail=""):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(f"{name}: {str(detail)[-1500:]}")
    return cond


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


text = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i * 7 % 13} times.\n" for i in range(400))
corpus = os.path.join(TMP, "corpus.txt")
with open(corpus, "w") as f:
    f.write(text)

# One thread: the machine has two cores shared with other work, and LibTorch's intra-op threads
# slow down badly under contention; the reference and the killed runs use the same count, so the
# results stay comparable bit for bit.
FLAGS = [BIN, "train", "--task", "lm", "--model", "gpt2-tiny", "--data", corpus, "--optimizer", "limuon", "--steps", str(STEPS),
         "--batch-size", "2", "--block-size", "32", "--eval-interval", "50", "--eval-batches", "1", "--checkpoint-interval", "1",
         "--keep", str(KEEP), "--progress", "lines", "--seed", "5", "--lr", "0.02", "--adamw-lr", "0.003", "--warmup", "5",
         "--threads", "1"]


def ckpt_step(name):
    return int(name[5:13])


def listing(d):
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return [], []
    ckpts = sorted(n for n in names if len(n) == 16 and n.startswith("ckpt_") and n.endswith(".pt"))
    temps = sorted(n for n in names if ".tmp." in n)
    return ckpts, temps


def newest(ckpts):
    return ckpt_step(ckpts[-1]) if ckpts else 0


# Reference: the same run, uninterrupted.
ref = os.path.join(TMP, "ref")
t = time.time()
ref_err_file = open(os.path.join(TMP, "ref.err"), "w+")
p = subprocess.Popen(FLAGS + ["--out", ref], stdout=subprocess.DEVNULL, stderr=ref_err_file)
first_ckpt_s = None
while p.poll() is None:
    if first_ckpt_s is None and listing(ref)[0]:
        first_ckpt_s = time.time() - t
    time.sleep(0.002)
ref_err_file.seek(0)
ref_err = ref_err_file.read()
ref_s = time.time() - t
if not check("reference run", p.returncode == 0 and os.path.exists(os.path.join(ref, "model.safetensors")), ref_err):
    print("FAIL", failures[-1])
    print(f"{passed} passed, {len(failures)} failed")
    sys.exit(1)
startup_s = first_ckpt_s or 0.5
step_s = max((ref_s - startup_s) / STEPS, 0.002)
print(f"reference: {ref_s:.1f}s ({startup_s:.2f}s to the first checkpoint, {1000 * step_s:.1f} ms per step with its checkpoint)")

verified = {}  # (name, inode, mtime_ns, size) → True once loaded for real


def zip_intact(path):
    """PyTorch archives are zip files: every record is present and matches its CRC."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None and any(n.endswith("data.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def loads_for_real(path):
    """A real --resume from this checkpoint alone (hard-linked into a scratch directory): loads
    model, optimizer, schedule, data position and RNG; --steps = its step, so no training."""
    st = os.stat(path)
    key = (os.path.basename(path), st.st_ino, st.st_mtime_ns, st.st_size)
    if key in verified:
        return True, "cached"
    scratch = tempfile.mkdtemp(dir=TMP, prefix="load-")
    try:
        os.link(path, os.path.join(scratch, os.path.basename(path)))
        flags = FLAGS[:]
        flags[flags.index("--steps") + 1] = str(ckpt_step(os.path.basename(path)))
        r = subprocess.run(flags + ["--out", scratch, "--resume"], capture_output=True, text=True, timeout=120)
        ok = r.returncode == 0 and f"resumed from {os.path.join(scratch, os.path.basename(path))}" in r.stderr \
            and "could not be loaded" not in r.stderr
        if ok:
            verified[key] = True
        return ok, r.stderr[-800:]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


run_dir = os.path.join(TMP, "run")
kills = write_kills = rotation_kills = startup_kills = other_temp_kills = cycles = loads = 0
modes = {"startup": 0, "steps": 0, "write": 0}
pending_temps = []  # temporary files left by the previous kill: the next run must remove them
finished = False
while cycles < MAX_CYCLES and time.time() - T0 < TIME_BUDGET_S:
    if kills >= MIN_KILLS and write_kills >= MIN_WRITE_KILLS:
        break
    cycles += 1
    before_start, _ = listing(run_dir)
    err_path = os.path.join(TMP, f"cycle{cycles}.err")
    err = open(err_path, "w")
    p = subprocess.Popen(FLAGS + ["--out", run_dir, "--resume"], stdout=subprocess.DEVNULL, stderr=err)
    mode = rng.choices(["startup", "steps", "write"], weights=[0.15, 0.5, 0.35])[0]
    # Where to kill: a random moment of start-up; a random moment within the step after a random
    # target step (compute, metrics, checkpoint write, rotation); or right after a checkpoint's
    # temporary file appears, plus a random fraction of a millisecond.
    deadline = time.time() + 60
    if mode == "startup":
        time.sleep(rng.uniform(0, startup_s))
    else:
        target = newest(before_start) + rng.randint(1, 5)
        while p.poll() is None and time.time() < deadline and newest(listing(run_dir)[0]) < target:
            time.sleep(0.002)
        if mode == "steps":
            time.sleep(rng.uniform(0, 1.5 * step_s))
        else:
            while p.poll() is None and time.time() < deadline and not any(n.startswith(".ckpt_") for n in listing(run_dir)[1]):
                time.sleep(0.0002)
            time.sleep(rng.uniform(0, 0.0005))
    snap_ckpts, _ = listing(run_dir)  # the newest checkpoint seen just before the kill
    if p.poll() is not None:
        err.close()
        e = open(err_path).read()
        if p.returncode == 0:
            finished = True
            print(f"cycle {cycles}: the run finished before the kill")
            break
        check(f"cycle {cycles}: run failed before the kill", False, f"rc={p.returncode} {e}")
        break
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    err.close()
    kills += 1
    modes[mode] += 1
    e = open(err_path).read()
    after_ckpts, after_temps = listing(run_dir)
    # A temporary file this run created and did not get to rename: killed inside the write.
    # (One that the previous kill left is still there when this run died before removing it.)
    new_temps = [n for n in after_temps if n not in pending_temps]
    in_write = [n for n in new_temps if n.startswith(".ckpt_")]
    if in_write:
        write_kills += 1
    elif new_temps:
        other_temp_kills += 1
    if len(after_ckpts) > KEEP:  # renamed, the older ones not yet removed
        rotation_kills += 1
    if newest(after_ckpts) == newest(before_start) and "resumed from" not in e and before_start:
        startup_kills += 1

    # The run this cycle started removed what the previous kill left, if it got that far.
    if "resumed from" in e or newest(after_ckpts) > newest(before_start):
        leftover = [n for n in pending_temps if n in after_temps]
        check(f"kill {kills}: previous temporary files removed", not leftover, leftover)
        # ...and continued from the newest checkpoint there was.
        if before_start:
            want = "resumed from " + os.path.join(run_dir, before_start[-1])
            check(f"kill {kills}: resumed from the newest checkpoint", want in e and "could not be loaded" not in e, e[-800:])
    pending_temps = after_temps

    check(f"kill {kills}: newest checkpoint not older than before the kill", newest(after_ckpts) >= newest(snap_ckpts),
          (snap_ckpts, after_ckpts))
    lost = [c for c in snap_ckpts + before_start
            if c not in after_ckpts and sum(1 for d in after_ckpts if ckpt_step(d) > ckpt_step(c)) < KEEP]
    check(f"kill {kills}: no checkpoint lost beyond --keep rotation", not lost, (lost, snap_ckpts, after_ckpts))
    for c in after_ckpts:
        path = os.path.join(run_dir, c)
        check(f"kill {kills}: {c} is a complete archive", zip_intact(path))
        ok, detail = loads_for_real(path)
        loads += detail != "cached"
        check(f"kill {kills}: {c} loads with --resume", ok, detail)
    print(f"kill {kills:2d} ({mode:7s}): checkpoints {[ckpt_step(c) for c in after_ckpts]}"
          + (f", killed during the write of {in_write[0].split('.tmp.')[0][1:]}" if in_write else "")
          + (", killed during rotation" if len(after_ckpts) > KEEP else "")
          + (f", temporary files {new_temps}" if new_temps and not in_write else ""))

# Resume to the end: the result must equal the uninterrupted run's, bit for bit.
r = subprocess.run(FLAGS + ["--out", run_dir, "--resume"], capture_output=True, text=True, timeout=600)
check("final resume completes", r.returncode == 0, r.stderr[-1500:])
if r.returncode == 0:
    check("final weights bit-identical to the uninterrupted run",
          sha(os.path.join(run_dir, "model.safetensors")) == sha(os.path.join(ref, "model.safetensors")))
    check("summary.json identical apart from timings",
          {k: v for k, v in json.load(open(os.path.join(run_dir, "summary.json"))).items()
           if k not in ("wall_s", "peak_rss_mb", "weights", "config")}
          == {k: v for k, v in json.load(open(os.path.join(ref, "summary.json"))).items()
              if k not in ("wall_s", "peak_rss_mb", "weights", "config")})
    steps = [json.loads(l)["step"] for l in open(os.path.join(run_dir, "metrics.jsonl")) if '"loss"' in l]
    check("metrics.jsonl has every step once", steps == list(range(1, STEPS + 1)), steps[:20])
    check("no temporary files left at the end", not listing(run_dir)[1], listing(run_dir)[1])
    if pending_temps:
        check("the final run removed the last kill's temporary files", "left by an interrupted write" in r.stderr, r.stderr[-500:])

check(f"at least {MIN_KILLS} kills", kills >= MIN_KILLS, kills)
check(f"at least {MIN_WRITE_KILLS} kills during a checkpoint write", write_kills >= MIN_WRITE_KILLS, write_kills)
check("the run did not finish before enough kills", not finished or kills >= MIN_KILLS, kills)

shutil.rmtree(TMP, ignore_errors=True)
print(f"seed {SEED}: {cycles + 2 + loads} executions ({cycles} killed or run, the reference, the final resume, {loads} loads), "
      f"{kills} SIGKILLs survived ({write_kills} during a checkpoint write, "
      f"{rotation_kills} between a checkpoint's rename and the removal of old ones, {other_temp_kills} during another file's write, "
      f"{startup_kills} before the first new checkpoint; modes {modes}), "
      f"{loads} checkpoint files loaded for real, {time.time() - T0:.0f}s")
for f in failures:
    print("FAIL", f)
print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
