#!/usr/bin/env python3
"""End-to-end tests of `limuon train | eval | generate | tokenize` on tiny configs: outputs and
their keys, bit-identical resume, and every kind of bad input (clear message, non-zero exit, no
crash, nothing the user had overwritten).

Usage: train_cli.py path/to/limuon
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

from script_checks import check, finish, write

BIN = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="limuon-train-test-")


def run(args, timeout=600):
    return subprocess.run([BIN] + args, capture_output=True, text=True, errors="replace", timeout=timeout)




def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()




text = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i * 7 % 13} times.\n" for i in range(400))
corpus = write(os.path.join(TMP, "corpus.txt"), text)
LM = ["train", "--task", "lm", "--model", "gpt2-tiny", "--data", corpus, "--optimizer", "limuon", "--steps", "6",
      "--batch-size", "4", "--block-size", "32", "--eval-interval", "3", "--eval-batches", "2", "--checkpoint-interval", "3",
      "--progress", "lines", "--seed", "3", "--lr", "0.02", "--adamw-lr", "0.003", "--warmup", "2",
      # One thread: with more, two runs of the same command can differ in rounding (threaded BLAS
      # and a resumed two-evaluation step; README, "Checkpoints"), and these checks are bit for bit.
      "--threads", "1"]

# tokenize contract
r = run(["tokenize", "--text", "Hello world"])
check("tokenize Hello world", r.returncode == 0 and r.stdout.strip() == "15496 995", r.stdout + r.stderr)
r = run(["tokenize", "--text", "15496 995", "--decode"])
check("tokenize --decode", r.returncode == 0 and r.stdout.strip() == "Hello world", r.stdout + r.stderr)

# a full run: metrics, summary, weights, checkpoints
full = os.path.join(TMP, "full")
r = run(LM + ["--out", full])
check("train exit", r.returncode == 0, r.stdout + r.stderr)
check("train prints config and routing", "resolved configuration" in r.stdout and "routing:" in r.stdout, r.stdout[:500])
if r.returncode == 0:
    summary = json.load(open(os.path.join(full, "summary.json")))
    for key in ("final_val_loss", "steps", "samples", "grad_evals", "wall_s", "final_val_ppl", "optimizer_state_bytes"):
        check(f"summary key {key}", key in summary, summary)
    check("summary steps", summary.get("steps") == 6, summary)
    check("summary samples", summary.get("samples") == 24, summary)
    # LiMuon exact: 1 evaluation on the first step, 2 afterwards → 11 evaluations of 4 samples
    check("summary grad_evals", summary.get("grad_evals") == 44 and summary.get("evaluations") == 11, summary)
    rows = [json.loads(l) for l in open(os.path.join(full, "metrics.jsonl"))]
    train_rows = [x for x in rows if "loss" in x]
    check("metrics rows", len(train_rows) == 6, len(train_rows))
    for key in ("step", "samples", "grad_evals", "loss", "lr", "ms_per_step", "tok_per_s", "optimizer_state_bytes", "peak_rss_mb"):
        check(f"metrics key {key}", all(key in x for x in train_rows), train_rows[:1])
    check("metrics val rows", len([x for x in rows if "val_loss" in x]) == 2, rows)
    ckpts = sorted(f for f in os.listdir(full) if f.startswith("ckpt_"))
    check("checkpoints kept", ckpts == ["ckpt_00000003.pt", "ckpt_00000006.pt"], ckpts)
    check("weights written", os.path.getsize(os.path.join(full, "model.safetensors")) > 1000)

    # eval and generate on the exported weights
    r = run(["eval", "--model", "gpt2-tiny", "--weights", os.path.join(full, "model.safetensors"), "--text-file", corpus,
             "--block-size", "32", "--max-batches", "3"])
    ok = r.returncode == 0
    res = json.loads(r.stdout) if ok else {}
    check("eval json", ok and "val_loss" in res and "tokens" in res and res["tokens"] > 0, r.stdout + r.stderr)
    r = run(["generate", "--model", "gpt2-tiny", "--checkpoint", full, "--prompt", "Line 1", "--max-new-tokens", "20", "--seed", "1"])
    check("generate", r.returncode == 0 and r.stdout.startswith("Line 1"), r.stdout + r.stderr)
    r2 = run(["generate", "--model", "gpt2-tiny", "--checkpoint", full, "--prompt", "Line 1", "--max-new-tokens", "20", "--seed", "1"])
    check("generate is seeded", r.stdout == r2.stdout, r.stdout + "|" + r2.stdout)

    # fine-tuning from exported (Hugging Face layout) weights: the run starts where the first ended
    ft = os.path.join(TMP, "ft")
    lm_ft = LM[:]
    for flag, value in (("--steps", "1"), ("--lr", "0"), ("--adamw-lr", "0"), ("--warmup", "0")):
        lm_ft[lm_ft.index(flag) + 1] = value
    r = run(lm_ft + ["--out", ft, "--init-weights", os.path.join(full, "model.safetensors")])
    ok = r.returncode == 0
    check("fine-tune from weights", ok, r.stdout + r.stderr)
    if ok:
        s_ft = json.load(open(os.path.join(ft, "summary.json")))
        check("fine-tune starts from the loaded weights", abs(s_ft["final_val_loss"] - summary["final_val_loss"]) < 1e-6,
              (s_ft["final_val_loss"], summary["final_val_loss"]))

    # interrupted at step 4, resumed: bit-identical weights to the uninterrupted run
    part = os.path.join(TMP, "part")
    r = run(LM + ["--out", part, "--stop-after", "4"])
    check("stop-after exit", r.returncode == 0 and "stopped after step 4" in r.stdout, r.stdout + r.stderr)
    r = run(LM + ["--out", part, "--resume"])
    check("resume exit", r.returncode == 0 and "resumed from" in r.stderr, r.stdout + r.stderr)
    if r.returncode == 0:
        check("resume bit-identical weights", sha(os.path.join(part, "model.safetensors")) == sha(os.path.join(full, "model.safetensors")))
        s2 = json.load(open(os.path.join(part, "summary.json")))
        check("resume same loss and counters", s2["final_val_loss"] == summary["final_val_loss"] and s2["grad_evals"] == 44, s2)
        rows2 = [json.loads(l) for l in open(os.path.join(part, "metrics.jsonl")) if '"loss"' in l]
        check("resume metrics not duplicated", [x["step"] for x in rows2] == [1, 2, 3, 4, 5, 6], [x["step"] for x in rows2])

    # a corrupt newest checkpoint: resume falls back to the previous one
    corrupt = os.path.join(TMP, "corrupt")
    shutil.copytree(full, corrupt)
    write(os.path.join(corrupt, "ckpt_00000006.pt"), b"\x00garbage", "wb")
    lm7 = LM[:]
    lm7[lm7.index("--steps") + 1] = "7"
    r = run(lm7 + ["--out", corrupt, "--resume"])
    check("resume skips corrupt checkpoint", r.returncode == 0 and "could not be loaded" in r.stderr and "ckpt_00000003" in r.stderr,
          r.stdout + r.stderr)

# image task: ViT on Fashion-MNIST, a few steps
img = os.path.join(TMP, "img")
r = run(["train", "--task", "image", "--model", "vit-test", "--data", "fashion-mnist", "--optimizer", "muon", "--steps", "3",
         "--batch-size", "16", "--eval-batches", "2", "--out", img, "--progress", "none", "--augment"])
check("image train", r.returncode == 0 and "accuracy" in r.stdout, r.stdout + r.stderr)
if r.returncode == 0:
    s = json.load(open(os.path.join(img, "summary.json")))
    check("image summary accuracy", 0.0 <= s.get("final_val_accuracy", -1) <= 1.0, s)
    r = run(["eval", "--task", "image", "--model", "vit-test", "--checkpoint", img])
    res = json.loads(r.stdout) if r.returncode == 0 else {}
    check("eval image accuracy", r.returncode == 0 and 0.0 <= res.get("accuracy", -1) <= 1.0 and res.get("images") == 10000,
          r.stdout + r.stderr)

# --epochs: steps from the data size (0.01 of 60000 images at 100 per step = 6 steps)
ep = os.path.join(TMP, "epochs")
r = run(["train", "--task", "image", "--model", "vit-test", "--data", "fashion-mnist", "--optimizer", "adamw", "--epochs", "0.01",
         "--batch-size", "100", "--eval-batches", "1", "--out", ep, "--progress", "none"])
check("epochs → steps", r.returncode == 0 and json.load(open(os.path.join(ep, "summary.json")))["steps"] == 6,
      r.stdout[-300:] + r.stderr)
r = run(["train", "--epochs", "1", "--steps", "3", "--out", os.path.join(TMP, "b13")])
check("epochs and steps together", r.returncode == 2 and "--epochs" in r.stderr, r.stderr)

# config file: flags from JSON, command line overrides, unknown keys rejected
cfg = write(os.path.join(TMP, "cfg.json"), json.dumps({"task": "lm", "model": "gpt2-tiny", "data": corpus, "steps": 2,
                                                        "batch_size": 2, "block-size": 16, "optimizer": "adamw"}))
r = run(["train", "--config", cfg, "--out", os.path.join(TMP, "cfgrun"), "--steps", "1", "--progress", "none"])
check("config file run", r.returncode == 0 and '"steps": 1' in r.stdout and '"optimizer": "adamw"' in r.stdout, r.stdout + r.stderr)

# --preset paper (LiMuon as the paper states it): exact SVD, no shape scale, constant lr; flags override
pp = os.path.join(TMP, "preset")
lm_short = LM[:]
lm_short[lm_short.index("--steps") + 1] = "3"
lm_short = [a for i, a in enumerate(lm_short) if a != "--warmup" and (i == 0 or lm_short[i - 1] != "--warmup")]
r = run(lm_short + ["--out", pp, "--preset", "paper"])
check("preset paper run", r.returncode == 0, r.stdout + r.stderr)
if r.returncode == 0:
    for needle in ('"orthogonalizer": "svd"', '"adjust_lr": "none"', '"warmup": 0', '"min_lr_ratio": 1.0', '"preset": "paper"'):
        check(f"preset paper sets {needle}", needle in r.stdout, r.stdout[:3000])
    lrs = [json.loads(l)["lr"] for l in open(os.path.join(pp, "metrics.jsonl")) if '"loss"' in l]
    check("preset paper: constant lr", lrs == [0.02] * 3, lrs)
r = run(lm_short + ["--out", os.path.join(TMP, "preset2"), "--preset", "paper", "--orthogonalizer", "ns5"])
check("preset paper: a flag overrides it", r.returncode == 0 and '"orthogonalizer": "ns5"' in r.stdout and '"adjust_lr": "none"' in r.stdout,
      r.stdout[:3000] + r.stderr)

# --grad-clip: global norm clipped inside the closure (both evaluations of a LiMuon exact step);
# a bound that never binds changes nothing, one that always binds changes the run
gc_runs = {}
for name, extra in (("none", []), ("loose", ["--grad-clip", "1e9"]), ("tight", ["--grad-clip", "1e-3"])):
    out = os.path.join(TMP, "gc_" + name)
    r = run(lm_short + ["--out", out] + extra)
    check(f"grad-clip {name} run", r.returncode == 0, r.stdout + r.stderr)
    gc_runs[name] = out if r.returncode == 0 else None
if all(gc_runs.values()):
    w = {k: sha(os.path.join(v, "model.safetensors")) for k, v in gc_runs.items()}
    check("grad-clip that never binds is bit-identical to no clip", w["loose"] == w["none"], w)
    check("grad-clip that binds changes the weights", w["tight"] != w["none"], w)
    rows = [json.loads(l) for l in open(os.path.join(gc_runs["tight"], "metrics.jsonl")) if '"loss"' in l]
    check("grad-clip logs the unclipped norm", all(x.get("grad_norm", 0) > 1e-3 for x in rows), rows[:1])
    rows = [json.loads(l) for l in open(os.path.join(gc_runs["none"], "metrics.jsonl")) if '"loss"' in l]
    check("no grad_norm without --grad-clip", all("grad_norm" not in x for x in rows), rows[:1])

# LiMuon light + exact accumulates its second gradient into the first (the default in train): the
# resolved configuration says so, a resumed run is bit-identical, and it matches the stored-copy path
light = lm_short + ["--lowrank-state", "light", "--rank", "4"]
outs = {}
for name, extra in (("acc", []), ("acc_part", ["--stop-after", "2"]), ("copy", ["--accumulate-second-gradient=false"])):
    out = os.path.join(TMP, "light_" + name)
    r = run(light + ["--out", out] + extra)
    check(f"light exact {name} run", r.returncode == 0, r.stdout + r.stderr)
    outs[name] = out
    if name == "acc":
        check("accumulation on by default", '"accumulate_second_gradient": true' in r.stdout, r.stdout[:3000])
r = run(light + ["--out", outs["acc_part"], "--resume"])
check("light exact resume", r.returncode == 0, r.stdout + r.stderr)
if r.returncode == 0 and os.path.exists(os.path.join(outs["acc"], "summary.json")):
    check("light exact + accumulation: resume bit-identical",
          sha(os.path.join(outs["acc"], "model.safetensors")) == sha(os.path.join(outs["acc_part"], "model.safetensors")))
    a = json.load(open(os.path.join(outs["acc"], "summary.json")))["final_val_loss"]
    b = json.load(open(os.path.join(outs["copy"], "summary.json")))["final_val_loss"]
    check("accumulating and copying agree (rounding only)", abs(a - b) < 1e-4, (a, b))

# bad input: message naming the problem, non-zero exit, no traceback/abort
bad_shard = write(os.path.join(TMP, "bad.bin"), struct.pack("<256i", 20240520, 1, 1000, *([0] * 253)) + b"\x01\x00" * 10, "wb")
big_ids = write(os.path.join(TMP, "big.bin"), struct.pack("<256i", 20240520, 1, 100, *([0] * 253)) + struct.pack("<100H", *([300] * 100)), "wb")
bad_json = write(os.path.join(TMP, "bad.json"), "{not json")
unknown_key = write(os.path.join(TMP, "unknown.json"), json.dumps({"stepz": 3}))
bad_st = write(os.path.join(TMP, "bad.safetensors"), struct.pack("<Q", 1 << 62) + b"{}", "wb")
BASE = ["train", "--model", "gpt2-tiny", "--steps", "2", "--progress", "none"]
cases = [
    (BASE + ["--data", os.path.join(TMP, "missing.txt"), "--out", os.path.join(TMP, "b1")], "missing.txt"),
    (BASE + ["--data", bad_shard + "," + bad_shard, "--out", os.path.join(TMP, "b2")], "bad.bin"),
    (BASE + ["--data", big_ids + "," + big_ids, "--out", os.path.join(TMP, "b3")], "300"),
    (BASE + ["--data", corpus, "--out", os.path.join(TMP, "b4"), "--lr", "-1"], "--lr"),
    (BASE + ["--data", corpus, "--out", os.path.join(TMP, "b5"), "--steps", "0"], "--steps"),
    (BASE + ["--data", corpus, "--out", os.path.join(TMP, "b6"), "--frobnicate", "1"], "unknown flag --frobnicate"),
    (BASE + ["--data", corpus, "--out", os.path.join(TMP, "b7"), "--optimizer", "sgd"], "optimizer"),
    (["train", "--model", "gpt5", "--data", corpus, "--out", os.path.join(TMP, "b8")], "gpt5"),
    (["train", "--config", bad_json, "--out", os.path.join(TMP, "b9")], "not valid JSON"),
    (["train", "--config", unknown_key, "--out", os.path.join(TMP, "b10")], "stepz"),
    (["eval", "--model", "gpt2-tiny", "--weights", bad_st, "--text-file", corpus], "bad.safetensors"),
    (["eval", "--model", "gpt2-tiny", "--weights", os.path.join(TMP, "nope.safetensors"), "--text-file", corpus], "nope.safetensors"),
    (["train", "--task", "image", "--data", "mnist-please", "--out", os.path.join(TMP, "b11")], "--data"),
    (BASE + ["--data", corpus, "--block-size", "1000", "--out", os.path.join(TMP, "b12")], "--block-size"),
    (BASE + ["--data", corpus, "--out", os.path.join(TMP, "b14"), "--preset", "paper", "--optimizer", "muon"], "--preset paper"),
    (BASE + ["--data", corpus, "--out", os.path.join(TMP, "b15"), "--preset", "fast"], "--preset"),
    (BASE + ["--data", corpus, "--out", os.path.join(TMP, "b16"), "--grad-clip", "-1"], "--grad-clip"),
    (BASE + ["--data", corpus, "--out", os.path.join(TMP, "b17"), "--grad-clip", "1", "--accumulate-second-gradient"],
     "--accumulate-second-gradient and --grad-clip"),
    (BASE + ["--data", corpus, "--out", os.path.join(TMP, "b18"), "--optimizer", "sumo", "--sumo-limiter", "0.5"],
     "--sumo-limiter"),
]
if os.path.isdir(full):
    cases.append((["eval", "--model", "gpt2-byte-small", "--weights", os.path.join(full, "model.safetensors"), "--text-file", corpus],
                  "shape"))
for args, needle in cases:
    r = run(args)
    check(f"bad input {args[-2:]} → '{needle}'", r.returncode in (1, 2) and needle in r.stderr and "terminate called" not in r.stderr,
          f"rc={r.returncode} stderr={r.stderr[-600:]!r}")

# a failed run never overwrites the checkpoints that are there
if os.path.isdir(full):
    before = {f: sha(os.path.join(full, f)) for f in os.listdir(full) if f.startswith("ckpt_")}
    r = run(LM + ["--out", full])  # no --resume
    check("refuses to overwrite a run", r.returncode == 2 and "--resume" in r.stderr, r.stderr)
    r = run(["train", "--task", "lm", "--model", "gpt2-byte-small", "--data", corpus, "--out", full, "--resume", "--steps", "8",
             "--progress", "none"])
    check("checkpoint from a different model", r.returncode != 0 and "gpt2-tiny" in r.stderr, r.stderr)
    after = {f: sha(os.path.join(full, f)) for f in os.listdir(full) if f.startswith("ckpt_")}
    check("checkpoints untouched by failed runs", before == after, (before, after))

shutil.rmtree(TMP, ignore_errors=True)
finish()
