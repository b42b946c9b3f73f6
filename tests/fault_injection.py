#!/usr/bin/env python3
"""Fault injection into `limuon train`: non-finite gradients and losses for every optimizer
configuration, a persistent fault, a disk that fills up, an output directory that is read-only,
and malformed fault specifications.

Policy under test (src/cli/train.cpp): a step whose loss or any gradient is NaN/Inf is skipped by
every parameter group (no update; weights and optimizer state stay as they were) and counted:
  summary.json nonfinite_steps = the number of steps with a non-finite loss or gradient, i.e. here
                                 exactly the number of steps named by --inject-nonfinite;
  summary.json nonfinite_skips = parameter-group steps the optimizers skipped: per faulty step one
                                 for each group that would have stepped (AdamW only: 1; Muon and
                                 LiMuon: the matrix group and the AdamW group, 2).
Such a step writes no periodic checkpoint; no checkpoint ever holds NaN/Inf; after --max-nonfinite
non-finite steps in a row the run stops with exit 1, naming the last good checkpoint.

Usage: fault_injection.py path/to/limuon
"""
import array
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

from script_checks import check, finish

BIN = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="limuon-fault-test-")
counts = {"executions": 0, "faults injected": 0, "bad inputs": 0}
T0 = time.time()


def run(args, timeout=600):
    counts["executions"] += 1
    return subprocess.run([BIN] + args, capture_output=True, text=True, errors="replace", timeout=timeout)


    return cond


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def safetensors_finite(path):
    """True when every F32/F64 tensor of a .safetensors file is free of NaN and Inf."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    for name, e in header.items():
        if name == "__metadata__" or e["dtype"] not in ("F32", "F64"):
            continue
        a = array.array("f" if e["dtype"] == "F32" else "d", data[e["data_offsets"][0]:e["data_offsets"][1]])
        if not all(map(math.isfinite, a)):
            return False
    return True


class _Stub:
    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def checkpoint_float_storages(path):
    """Every floating-point storage of a LibTorch archive (parameters, buffers, optimizer state),
    as (key, array). The archive's data.pkl is read with stand-ins for every class it names, so
    only the storage records (type, key) are kept; their bytes are archive/data/<key>."""
    found = {}

    class Reader(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch" and name.endswith("Storage"):
                return name
            return type(name, (_Stub,), {})

        def persistent_load(self, pid):
            found[pid[2]] = pid[1]
            return None

    out = []
    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
        prefix = pkl[: -len("data.pkl")]
        Reader(io.BytesIO(z.read(pkl))).load()
        for key, kind in found.items():
            code = {"FloatStorage": "f", "DoubleStorage": "d"}.get(kind)
            if code:
                out.append((key, array.array(code, z.read(prefix + "data/" + key))))
    return out


def checkpoint_finite(path):
    storages = checkpoint_float_storages(path)
    return bool(storages) and all(all(map(math.isfinite, a)) for _, a in storages)


text = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i * 7 % 13} times.\n" for i in range(400))
corpus = os.path.join(TMP, "corpus.txt")
with open(corpus, "w") as f:
    f.write(text)

STEPS = 14
# One thread: two cores shared with other work (LibTorch's threads slow down under contention).
BASE = ["train", "--task", "lm", "--model", "gpt2-tiny", "--data", corpus, "--steps", str(STEPS), "--batch-size", "4",
        "--block-size", "32", "--eval-interval", "7", "--eval-batches", "2", "--checkpoint-interval", "1", "--progress", "lines",
        "--seed", "3", "--warmup", "2", "--threads", "1"]
CONFIGS = [("adamw", ["--optimizer", "adamw", "--lr", "0.003"], 1), ("muon", ["--optimizer", "muon", "--adamw-lr", "0.003"], 2)]
for lowrank in ("none", "paper", "light"):
    for storm in ("exact", "approx"):
        CONFIGS.append((f"limuon-{lowrank}-{storm}", ["--optimizer", "limuon", "--lowrank-state", lowrank, "--storm", storm,
                                                     "--rank", "8", "--adamw-lr", "0.003"], 2))
# NaN and Inf, in gradients and in the loss; steps 9-10 make a streak of two.
SPEC, FAULTY = "grad:3,grad-inf:5,loss:8,loss-inf:9-10", [3, 5, 8, 9, 10]


# The finiteness check itself must see NaN: a checkpoint with one float turned into NaN fails it.
def negative_control(good_ckpt):
    bad = os.path.join(TMP, "poisoned.pt")
    with zipfile.ZipFile(good_ckpt) as zin, zipfile.ZipFile(bad, "w") as zout:
        key = checkpoint_float_storages(good_ckpt)[0][0]
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("/data/" + key):
                data = struct.pack("<f", float("nan")) + data[4:]
            zout.writestr(item, data)
    check("negative control: the checkpoint check catches a NaN", not checkpoint_finite(bad))


for name, opt, groups in CONFIGS:
    flags = BASE + opt
    out = os.path.join(TMP, name)
    r = run(flags + ["--out", out, "--keep", "100", "--inject-nonfinite", SPEC])
    counts["faults injected"] += len(FAULTY)
    if not check(f"{name}: run with faults exits 0", r.returncode == 0, r.stdout[-500:] + r.stderr):
        continue
    s = json.load(open(os.path.join(out, "summary.json")))
    check(f"{name}: nonfinite_steps = faulty steps", s.get("nonfinite_steps") == len(FAULTY), s.get("nonfinite_steps"))
    check(f"{name}: nonfinite_skips = {groups} group(s) x faulty steps", s.get("nonfinite_skips") == groups * len(FAULTY),
          s.get("nonfinite_skips"))
    check(f"{name}: final weights finite", safetensors_finite(os.path.join(out, "model.safetensors")))
    check(f"{name}: final val loss finite", math.isfinite(s.get("final_val_loss") or float("nan")), s)
    rows = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    train_rows = {x["step"]: x for x in rows if "loss" in x}
    counted = [st for st in range(1, STEPS + 1)
               if train_rows[st]["nonfinite_steps"] - (train_rows[st - 1]["nonfinite_steps"] if st > 1 else 0) == 1]
    check(f"{name}: the faulty steps, and only they, counted", counted == FAULTY, counted)
    losses = [train_rows[st]["loss"] for st in range(1, STEPS + 1)]
    check(f"{name}: loss fault steps log a non-finite loss", all(losses[st - 1] is None for st in (8, 9, 10)), losses)
    tail = [x for x in losses[-3:] if x is not None]
    check(f"{name}: loss finite at the end and lower than at the start",
          len(tail) == 3 and all(map(math.isfinite, tail)) and max(tail) < losses[0], losses)
    check(f"{name}: warnings name the skipped steps",
          all(f"step {st} had a non-finite loss or gradient" in r.stderr for st in FAULTY), r.stderr[-1500:])
    ckpts = sorted(f for f in os.listdir(out) if f.startswith("ckpt_"))
    want = [f"ckpt_{st:08d}.pt" for st in range(1, STEPS + 1) if st not in FAULTY]
    check(f"{name}: no periodic checkpoint on a faulty step", ckpts == want, ckpts)
    bad_ckpts = [c for c in ckpts if not checkpoint_finite(os.path.join(out, c))]
    check(f"{name}: every checkpoint (weights and optimizer state) finite", not bad_ckpts, bad_ckpts)
    if name == "muon":
        negative_control(os.path.join(out, ckpts[-1]))

    # Interrupted after the first faults, resumed from a checkpoint written after them: the same
    # result, counters included, as the uninterrupted run.
    part = os.path.join(TMP, name + "-part")
    r1 = run(flags + ["--out", part, "--inject-nonfinite", SPEC, "--stop-after", "6"])
    r2 = run(flags + ["--out", part, "--inject-nonfinite", SPEC, "--resume"])
    counts["faults injected"] += len(FAULTY)
    ok = r1.returncode == 0 and r2.returncode == 0 and "resumed from " + os.path.join(part, "ckpt_00000006.pt") in r2.stderr
    if check(f"{name}: resume after the faults", ok, r1.stderr[-800:] + r2.stderr[-800:]):
        s2 = json.load(open(os.path.join(part, "summary.json")))
        check(f"{name}: resumed run bit-identical", sha(os.path.join(part, "model.safetensors")) == sha(os.path.join(out, "model.safetensors")))
        check(f"{name}: resumed run counts the same", (s2["nonfinite_steps"], s2["nonfinite_skips"]) == (s["nonfinite_steps"], s["nonfinite_skips"]),
              (s2["nonfinite_steps"], s2["nonfinite_skips"]))

    # A persistent fault: stops after --max-nonfinite steps in a row, exit 1, naming the last good
    # checkpoint, which loads and continues once the fault is gone.
    persist = os.path.join(TMP, name + "-persist")
    kind = "grad" if groups == 1 or "exact" in name or name == "muon" else "loss-inf"
    steps30 = flags[:]
    steps30[steps30.index("--steps") + 1] = "30"
    r = run(steps30 + ["--out", persist, "--inject-nonfinite", f"{kind}:3-1000", "--max-nonfinite", "4"])
    counts["faults injected"] += 4
    good = os.path.join(persist, "ckpt_00000002.pt")
    check(f"{name}: persistent {kind} fault stops with exit 1", r.returncode == 1, r.stdout[-300:] + r.stderr[-800:])
    check(f"{name}: the error says what happened and where to resume",
          "training stopped at step 6" in r.stderr and "non-finite (NaN/Inf)" in r.stderr and "--max-nonfinite 4" in r.stderr
          and f"last good checkpoint is {good} (step 2)" in r.stderr and "--resume" in r.stderr, r.stderr[-800:])
    check(f"{name}: no checkpoint written during the streak",
          sorted(f for f in os.listdir(persist) if f.startswith("ckpt_")) == ["ckpt_00000001.pt", "ckpt_00000002.pt"],
          os.listdir(persist))
    check(f"{name}: last good checkpoint finite", os.path.exists(good) and checkpoint_finite(good))
    steps4 = flags[:]
    steps4[steps4.index("--steps") + 1] = "4"
    r = run(steps4 + ["--out", persist, "--resume"])
    check(f"{name}: the last good checkpoint loads and the run continues",
          r.returncode == 0 and "resumed from " + good in r.stderr and safetensors_finite(os.path.join(persist, "model.safetensors")),
          r.stderr[-800:])

# Fault on the very first step (no optimizer state yet). LiMuon exact makes one evaluation and
# steps no AdamW group on a call without an estimate, so only its matrix group counts a skip.
for name, opt, skips in (("adamw", CONFIGS[0][1], 2), ("limuon-none-exact", CONFIGS[2][1], 2),
                         ("limuon-none-approx", CONFIGS[3][1], 4)):
    out = os.path.join(TMP, name + "-first")
    r = run(BASE + opt + ["--out", out, "--inject-nonfinite", "grad-inf:1,loss:2"])
    counts["faults injected"] += 2
    ok = check(f"{name}: faults on steps 1-2 exit 0", r.returncode == 0, r.stderr[-800:])
    if ok:
        s = json.load(open(os.path.join(out, "summary.json")))
        check(f"{name}: first-step faults counted", (s["nonfinite_steps"], s["nonfinite_skips"]) == (2, skips),
              (s["nonfinite_steps"], s["nonfinite_skips"]))
        check(f"{name}: first-step faults leave finite weights", safetensors_finite(os.path.join(out, "model.safetensors")))

# --max-nonfinite 0: never stops; everything after step 1 skipped, weights stay finite.
out = os.path.join(TMP, "never-stop")
r = run(BASE + CONFIGS[1][1] + ["--out", out, "--inject-nonfinite", "grad:2-1000", "--max-nonfinite", "0"])
counts["faults injected"] += STEPS - 1
ok = check("--max-nonfinite 0 runs to the end", r.returncode == 0, r.stderr[-800:])
if ok:
    s = json.load(open(os.path.join(out, "summary.json")))
    check("--max-nonfinite 0 counts every faulty step", s["nonfinite_steps"] == STEPS - 1, s["nonfinite_steps"])
    check("--max-nonfinite 0 keeps weights finite", safetensors_finite(os.path.join(out, "model.safetensors")))

# Malformed fault specifications and limits: exit 2, naming the flag, nothing written.
for spec in ("grad", "grad:", "grad:x", "grad:0", "grad:5-2", "grad:1-", "grad:-3", "nan:3", "grad:3;loss:4", ",", "grad:99999999999999"):
    out = os.path.join(TMP, "bad-spec")
    r = run(BASE + ["--out", out, "--inject-nonfinite", spec])
    counts["bad inputs"] += 1
    check(f"bad spec {spec!r}", r.returncode == 2 and "--inject-nonfinite" in r.stderr and not os.path.exists(out),
          f"rc={r.returncode} {r.stderr[-300:]}")
for value in ("-1", "x", "1.5"):
    r = run(BASE + ["--out", os.path.join(TMP, "bad-max"), "--max-nonfinite", value])
    counts["bad inputs"] += 1
    check(f"bad --max-nonfinite {value}", r.returncode == 2 and "--max-nonfinite" in r.stderr, r.stderr[-300:])
plain_file = os.path.join(TMP, "a-file")
open(plain_file, "w").close()
r = run(BASE + ["--out", plain_file])
counts["bad inputs"] += 1
check("--out naming a file", r.returncode == 1 and plain_file in r.stderr, r.stderr[-300:])

# Disk full and read-only output directory, on a small tmpfs mounted for the purpose.
mnt = os.path.join(TMP, "mnt")
os.makedirs(mnt)
DISK = BASE + CONFIGS[1][1]
DISK[DISK.index("--steps") + 1] = "6"
sizing = os.path.join(TMP, "sizing")
r = run(DISK + ["--out", sizing, "--keep", "100"])
check("sizing run", r.returncode == 0, r.stderr[-500:])
mounted = False
skip_reason = None
if r.returncode != 0:
    skip_reason = "the sizing run failed"
elif os.geteuid() != 0:
    skip_reason = "not running as root"
else:
    sizes = [os.path.getsize(os.path.join(sizing, f"ckpt_{st:08d}.pt")) for st in range(1, 7)]
    # Room for checkpoints 1 and 2, metrics.jsonl and half of checkpoint 3 (--keep 3: nothing is
    # rotated out before the third write, which cannot complete).
    size = sizes[0] + sizes[1] + sizes[2] // 2 + 64 * 1024
    size = (size + 4095) // 4096 * 4096
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "limuon-fault-test", mnt], capture_output=True, text=True)
    if m.returncode != 0:
        skip_reason = "mount -t tmpfs is not permitted here: " + (m.stderr.strip() or f"exit {m.returncode}")
    else:
        mounted = True
try:
    if mounted:
        full = os.path.join(mnt, "run")
        r = run(DISK + ["--out", full, "--keep", "3"])
        counts["bad inputs"] += 1
        third = os.path.join(full, "ckpt_00000003.pt")
        check("disk full: exit 1", r.returncode == 1, r.stdout[-300:] + r.stderr[-800:])
        check("disk full: the error names the path and the cause",
              "No space left on device" in r.stderr and third in r.stderr and "terminate called" not in r.stderr, r.stderr[-800:])
        check("disk full: names the last good checkpoint",
              f"last good checkpoint is {os.path.join(full, 'ckpt_00000002.pt')} (step 2)" in r.stderr, r.stderr[-800:])
        left = sorted(os.listdir(full))
        check("disk full: earlier checkpoints kept, no temporary file left",
              [f for f in left if f.startswith("ckpt_")] == ["ckpt_00000001.pt", "ckpt_00000002.pt"] and not [f for f in left if ".tmp." in f],
              left)
        check("disk full: earlier checkpoints finite and complete",
              all(checkpoint_finite(os.path.join(full, f)) for f in ("ckpt_00000001.pt", "ckpt_00000002.pt")))
        # Copied elsewhere, they resume, and the result equals the run that never hit the full disk.
        moved = os.path.join(TMP, "moved")
        os.makedirs(moved)
        for f in ("ckpt_00000001.pt", "ckpt_00000002.pt"):
            shutil.copy(os.path.join(full, f), moved)
        r = run(DISK + ["--out", moved, "--keep", "3", "--resume"])
        check("disk full: resume elsewhere from the last good checkpoint",
              r.returncode == 0 and "resumed from " + os.path.join(moved, "ckpt_00000002.pt") in r.stderr, r.stderr[-800:])
        if r.returncode == 0:
            check("disk full: resumed result bit-identical to a run without the fault",
                  sha(os.path.join(moved, "model.safetensors")) == sha(os.path.join(sizing, "model.safetensors")))

        before = {f: sha(os.path.join(full, f)) for f in os.listdir(full)}
        m = subprocess.run(["mount", "-o", "remount,ro", mnt], capture_output=True, text=True)
        if check("remount read-only", m.returncode == 0, m.stderr):
            r = run(DISK + ["--out", full, "--keep", "3", "--resume"])
            counts["bad inputs"] += 1
            check("read-only: exit 1, names the directory and the cause",
                  r.returncode == 1 and f"cannot write to directory '{full}'" in r.stderr and "Read-only file system" in r.stderr,
                  r.stderr[-800:])
            check("read-only: nothing changed", {f: sha(os.path.join(full, f)) for f in os.listdir(full)} == before)
            fresh = os.path.join(mnt, "fresh")
            r = run(DISK + ["--out", fresh])
            counts["bad inputs"] += 1
            check("read-only: a new directory cannot be created, clear error",
                  r.returncode == 1 and fresh in r.stderr and "Read-only file system" in r.stderr and not os.path.exists(fresh),
                  r.stderr[-800:])
    else:
        print(f"SKIP disk-full and read-only cases: {skip_reason}")
finally:
    if mounted:
        subprocess.run(["umount", mnt], capture_output=True)

shutil.rmtree(TMP, ignore_errors=True)
print(f"{len(CONFIGS)} optimizer configurations; {counts['executions']} executions, {counts['faults injected']} faulty steps injected, "
      f"{counts['bad inputs']} bad inputs tried; {time.time() - T0:.0f}s")
finish()
