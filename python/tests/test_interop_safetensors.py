"""safetensors files crossing between limuon (src/io/safetensors.cpp) and the `safetensors` Python
library, driven through the CLI:

- the library reads what limuon writes: `limuon train`'s model.safetensors (F32 and __metadata__,
  also checked against a by-hand parse of the format), `limuon eval --task image --export-hf F
  --export-dtype f32|f16|bf16` (F32, F16, BF16) and `--logits-out` (F32 logits, I64 labels);
- limuon reads what the library writes: safetensors.torch.save_file files in F32, F16 and BF16
  with metadata, as `--weights` of `limuon eval` (GPT-2 and ViT). A file of F16/BF16 weights must
  give exactly the loss of an F32 file holding the same (rounded) values, and a ViT exported again
  in the dtype it came in must hold exactly the library's bits.
- I64 and metadata read by limuon, which no CLI input path takes, are covered by the C++ test
  tests/test_interop_safetensors.cpp on files the library wrote (tests/reference/safetensors_py/,
  from tests/reference/make_safetensors_py.py); here the library checks those committed files still
  read back as their expected.json says.

LIMUON_BIN names the CLI (default: <repo>/build/limuon).
"""
import gzip
import importlib.util
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers.logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("LIMUON_BIN", str(ROOT / "build" / "limuon"))
REFERENCE = ROOT / "tests" / "reference"
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
NP = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}


def limuon(*args, env=None):
    r = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, errors="replace", timeout=300,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, f"limuon {' '.join(map(str, args))}: exit {r.returncode}\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip().startswith("{") else r.stdout


def parse_by_hand(path):
    """The format from its description: u64 header length, JSON header, data section."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    arrays = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        arrays[name] = np.frombuffer(data[b:end], dtype=NP[e["dtype"]]).reshape(e["shape"])
    return n, meta, header, arrays, len(data)


def test_library_reads_limuon_train_output(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("".join(f"line {i}: the quick brown fox, {i * 7 % 13} times.\n" for i in range(200)))
    run = tmp_path / "run"
    limuon("train", "--task", "lm", "--model", "gpt2-tiny", "--data", text, "--optimizer", "adamw", "--steps", 1,
           "--batch-size", 2, "--block-size", 32, "--eval-batches", 1, "--progress", "none", "--out", run,
           env={"LIMUON_DATA_DIR": str(tmp_path)})
    path = run / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"limuon_model": "gpt2-tiny", "format": "pt"}
        names = list(f.keys())
        sliced = {k: f.get_slice(k).get_dtype() for k in names}
    assert set(sliced.values()) == {"F32"}
    assert len(names) == 2 + 12 * 2 + 2  # wte, wpe, 12 tensors per block, ln_f
    tensors = load_file(str(path))
    n, meta, header, arrays, data_size = parse_by_hand(path)
    assert n % 8 == 0  # the data section starts 8-byte aligned
    assert meta == {"limuon_model": "gpt2-tiny", "format": "pt"}
    spans = sorted(e["data_offsets"] for e in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == data_size
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # packed, no gaps
    for k, t in tensors.items():
        assert t.dtype == torch.float32 and torch.equal(t, torch.from_numpy(arrays[k].copy())), k
    assert tensors["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D [in, out]


def gpt2_tiny_hf_tensors(tmp_path):
    """GPT-2 tiny weights under the names save_pretrained writes, redrawn N(0, 0.3)."""
    cfg = transformers.GPT2Config(vocab_size=257, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                  bos_token_id=None, eos_token_id=None)
    torch.manual_seed(3)
    model = transformers.GPT2LMHeadModel(cfg)
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    g = torch.Generator().manual_seed(4)
    return {k: torch.randn(v.shape, generator=g) * 0.3 for k, v in load_file(str(tmp_path / "hf" / "model.safetensors")).items()}


def test_limuon_reads_library_f32_f16_bf16_gpt2_weights(tmp_path):
    base = gpt2_tiny_hf_tensors(tmp_path)
    text = tmp_path / "text.txt"
    text.write_text("It is a truth universally acknowledged, that a single man in possession of a good fortune. " * 30)
    losses = {}
    for name, dtype in DTYPES.items():
        stored = {k: v.to(dtype) for k, v in base.items()}
        low = tmp_path / f"{name}.safetensors"
        save_file(stored, str(low), metadata={"format": "pt", "dtype": name})
        same_in_f32 = tmp_path / f"{name}_as_f32.safetensors"
        save_file({k: v.float() for k, v in stored.items()}, str(same_in_f32))
        a = limuon("eval", "--model", "gpt2-tiny", "--weights", low, "--text-file", text)
        b = limuon("eval", "--model", "gpt2-tiny", "--weights", same_in_f32, "--text-file", text)
        assert a["val_loss"] == b["val_loss"], (name, a, b)
        losses[name] = a["val_loss"]
    # rounding to 16 bits changes the model: the files were not all read as the same thing
    assert losses["f16"] != losses["f32"] and losses["bf16"] != losses["f16"]
    assert abs(losses["bf16"] - losses["f32"]) < 0.05 * losses["f32"]


def write_idx(directory, prefix, n, g):
    x = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + x.numpy().tobytes())
    with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + y.to(torch.uint8).numpy().tobytes())
    return y


def test_vit_weights_round_trip_bitwise_in_every_dtype(tmp_path):
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    labels = write_idx(fashion, "t10k", 40, torch.Generator().manual_seed(6))
    env = {"LIMUON_FASHION_MNIST_DIR": str(fashion)}
    cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                 image_size=28, patch_size=4, num_channels=1, num_labels=10, layer_norm_eps=1e-6)
    torch.manual_seed(7)
    transformers.ViTForImageClassification(cfg).save_pretrained(tmp_path / "hf")
    g = torch.Generator().manual_seed(8)
    base = {k: torch.randn(v.shape, generator=g) * 0.3 for k, v in load_file(str(tmp_path / "hf" / "model.safetensors")).items()}
    logits = {}
    for name, dtype in DTYPES.items():
        theirs = {k: v.to(dtype) for k, v in base.items()}
        src = tmp_path / f"vit_{name}.safetensors"
        save_file(theirs, str(src), metadata={"format": "pt"})
        out, lg = tmp_path / f"export_{name}.safetensors", tmp_path / f"logits_{name}.safetensors"
        limuon("eval", "--task", "image", "--model", "vit-test", "--weights", src, "--export-hf", out,
               "--export-dtype", name, "--logits-out", lg, env=env)
        with safe_open(str(out), "pt") as f:
            assert f.metadata() == {"format": "pt", "limuon_model": "vit-test"}
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {{"f32": "F32", "f16": "F16", "bf16": "BF16"}[name]}
        back = load_file(str(out))
        assert set(back) == set(theirs)
        for k, v in theirs.items():  # f16/bf16 → f32 → f16/bf16 is exact
            assert back[k].dtype == dtype and torch.equal(back[k].view(torch.int16 if dtype != torch.float32 else torch.int32),
                                                           v.view(torch.int16 if dtype != torch.float32 else torch.int32)), k
        with safe_open(str(lg), "pt") as f:
            assert f.metadata() == {"limuon_model": "vit-test"}
            assert f.get_slice("labels").get_dtype() == "I64" and f.get_slice("logits").get_dtype() == "F32"
        written = load_file(str(lg))
        assert torch.equal(written["labels"], labels)
        assert written["logits"].shape == (40, 10) and torch.isfinite(written["logits"]).all()
        logits[name] = written["logits"]
        # the by-hand parse agrees with the library on limuon's I64 and F32
        _, _, _, arrays, _ = parse_by_hand(lg)
        assert np.array_equal(arrays["labels"], labels.numpy()) and np.array_equal(arrays["logits"], written["logits"].numpy())
    assert not torch.equal(logits["f16"], logits["f32"]) and not torch.equal(logits["bf16"], logits["f16"])


def test_committed_library_files_match_their_expected_bits():
    spec = importlib.util.spec_from_file_location("make_safetensors_py", REFERENCE / "make_safetensors_py.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    expected = json.loads((REFERENCE / "safetensors_py" / "expected.json").read_text(encoding="utf-8"))
    files = gen.files()
    assert set(expected) == set(files)
    for name, (tensors, meta) in files.items():
        path = REFERENCE / "safetensors_py" / name
        with safe_open(str(path), "pt") as f:
            assert (f.metadata() or {}) == expected[name]["metadata"] == (meta or {})
        got = load_file(str(path))
        assert gen.describe(got) == expected[name]["tensors"] == gen.describe(tensors), name
