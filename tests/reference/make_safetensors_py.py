#!/usr/bin/env python3
"""Writes safetensors files with the `safetensors` Python library (safetensors.torch.save_file), for
tests/test_interop_safetensors.cpp to read with limuon's reader, and the bits they hold.

Unlike make_safetensors_reference.py (a file built byte by byte from the format description),
these files are whatever the reference implementation writes: its tensor order (by dtype, then
name), its header layout and padding, its metadata encoding. Values cover F32, F16, BF16 and I64
with their edge cases: -0.0, subnormals, the largest finite value, +-inf, NaN, integer extremes,
a 0-d scalar and zero-element tensors.

Output, next to this script in safetensors_py/:
    dtypes.safetensors       every tensor below, with __metadata__ (non-ASCII value included)
    no_metadata.safetensors  two tensors, no __metadata__ entry
    expected.json            {file: {"metadata": {...}, "tensors": {name: {"dtype", "shape", "bits"}}}}
                             bits: the little-endian integer view of each element (uint32 for F32,
                             uint16 for F16/BF16, int64 for I64), row-major, so NaN payloads and
                             -0.0 are compared exactly.

Run: .venv/bin/python tests/reference/make_safetensors_py.py
python/tests/test_interop_safetensors.py checks that the committed files still read back, through
the installed library, as expected.json says.
"""
import json
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "safetensors_py")

INF, NAN = float("inf"), float("nan")


def tensors():
    """name → tensor. Values not exact in their dtype (0.1, 1e10 in F32) are rounded by torch to
    nearest even; expected.json holds the bits the library was given, so that is what counts."""
    f32 = torch.tensor([0.0, -0.0, 1.5, -2.75, 3.4028234663852886e38, -3.4028234663852886e38,
                        1.1754943508222875e-38, 1.401298464324817e-45, INF, -INF, NAN, 0.1,
                        123456.0, -7.0, 2.0 ** -20, 1e10], dtype=torch.float32).reshape(2, 2, 4)
    f16 = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, -65504.0, 2.0 ** -14, 2.0 ** -24,
                        INF, -INF, NAN, 0.333251953125, 1024.0, -3.75, 7.0], dtype=torch.float16).reshape(3, 5)
    bf16 = torch.tensor([0.0, -0.0, 1.0, -2.5, 3.3895313892515355e38, 2.0 ** -126, 2.0 ** -133,
                         INF, -INF, NAN, 0.333984375, 256.0, -3.75, 1.0078125], dtype=torch.bfloat16)
    i64 = torch.tensor([[0, 1, -1, 2 ** 63 - 1], [-(2 ** 63), 2 ** 53 + 1, -123456789012345, 42]], dtype=torch.int64)
    return {
        "layer.0.weight": f32,
        "half": f16,
        "brain": bf16,
        "ids": i64,
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty_f16": torch.zeros(0, 3, dtype=torch.float16),
        "empty_i64": torch.zeros(2, 0, dtype=torch.int64),
    }


METADATA = {"format": "pt", "producer": "make_safetensors_py.py", "note": "ünïcödé ✓ 東京", "empty": ""}

BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.int64: torch.int64}
DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
UNSIGNED = {torch.int32: 1 << 32, torch.int16: 1 << 16, torch.int64: 0}


def bits(t):
    """Little-endian integer view of each element: uint32/uint16 for floats, int64 as is."""
    view = t.contiguous().view(BITS[t.dtype]).reshape(-1).tolist()
    wrap = UNSIGNED[BITS[t.dtype]]
    return [v + wrap if (wrap and v < 0) else v for v in view]


def describe(ts):
    return {n: {"dtype": DTYPE[t.dtype], "shape": list(t.shape), "bits": bits(t)} for n, t in ts.items()}


def files():
    """file name → (tensors, metadata or None)"""
    all_ = tensors()
    return {
        "dtypes.safetensors": (all_, METADATA),
        "no_metadata.safetensors": ({"b": all_["brain"][:4].clone(), "a": all_["ids"][0].clone()}, None),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    for name, (ts, meta) in files().items():
        save_file(ts, os.path.join(OUT, name), metadata=meta)
        expected[name] = {"metadata": meta or {}, "tensors": describe(ts)}
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
