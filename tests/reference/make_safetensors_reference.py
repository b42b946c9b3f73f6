#!/usr/bin/env python3
"""Writes tests/reference/sample.safetensors by hand and its expected contents as text.

An independent check of the C++ reader: the file is built with struct + json from the published
format (https://github.com/huggingface/safetensors, "Format" section), not with the safetensors
package and not with limuon's writer. Layout: 8-byte little-endian header length N, N bytes of
UTF-8 JSON (padded with spaces), then the data section; data_offsets are relative to it.

On purpose the JSON keys are NOT in data order (the reader must return tensors by offset), the
metadata sits between entries, the data is not aligned per tensor, and the file has edge values:
-0.0, subnormals, +-inf, NaN, integer extremes, a 0-d scalar and a zero-element tensor.

Run with the project venv (scripts/setup.sh): .venv/bin/python tests/reference/make_safetensors_reference.py
It rewrites sample.safetensors and sample_safetensors_expected.txt next to itself.
Expected-file format, one item per line:
    metadata <key> <value to end of line>
    tensor <name> <dtype> <ndim> <dims...> <values...>   (file order; floats as Python repr,
                                                           exact for every dtype here)
"""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def bf16_bits(values):
    """bfloat16 = the upper 16 bits of float32; only values exact in bf16 are allowed here."""
    bits = np.array(values, dtype="<f4").view("<u4")
    assert np.all(bits & 0xFFFF == 0) or np.all(np.isnan(values)), "value not exact in bfloat16"
    return (bits >> 16).astype("<u2")


def bf16_value(b):
    return struct.unpack("<f", struct.pack("<I", int(b) << 16))[0]


# name, dtype, shape, numpy little-endian dtype (None: special-cased), values (row-major)
TENSORS = [
    ("weight", "F32", [2, 3], "<f4", [-0.0, 1.5, 3.4028234663852886e38, 1e-45, -2.75, 0.1]),
    ("bias", "F64", [3], "<f8", [0.1, -1e300, 5e-324]),
    ("half", "F16", [4], "<f2", [1.0, -2.5, 65504.0, 5.960464477539063e-08]),
    ("brain", "BF16", [2, 2], None, [0.15625, -2.0, 3.3895313892515355e38, -1.1754943508222875e-38]),
    ("special", "F32", [3], "<f4", [float("inf"), float("-inf"), float("nan")]),
    ("big", "I64", [2], "<i8", [-(2**63), 2**63 - 1]),
    ("i32", "I32", [3], "<i4", [-(2**31), 0, 2**31 - 1]),
    ("i16", "I16", [2, 1], "<i2", [-32768, 32767]),
    ("i8", "I8", [4], "<i1", [-128, -1, 0, 127]),
    ("pixels", "U8", [2, 2, 2], "<u1", [0, 1, 2, 127, 128, 200, 254, 255]),
    ("mask", "BOOL", [3], "<u1", [1, 0, 1]),
    ("scalar", "F32", [], "<f4", [42.5]),
    ("empty", "F32", [0, 3], "<f4", []),
]
METADATA = {"format": "pt", "note": "hand-written by make_safetensors_reference.py"}


def encode(dtype, np_dtype, values):
    if dtype == "BF16":
        return bf16_bits(values).tobytes()
    return np.array(values, dtype=np_dtype).tobytes()


def stored_values(dtype, np_dtype, values):
    """The values as the file actually holds them (after rounding to the dtype), for the text file."""
    if dtype == "BF16":
        return [repr(bf16_value(b)) for b in bf16_bits(values)]
    arr = np.array(values, dtype=np_dtype)
    if dtype.startswith("F"):
        return [repr(float(v)) for v in arr]
    return [str(int(v)) for v in arr]


def main():
    data = b""
    entries = {}
    for name, dtype, shape, np_dtype, values in TENSORS:
        assert int(np.prod(shape)) == len(values)
        blob = encode(dtype, np_dtype, values)
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob

    # Keys in reverse data order, with __metadata__ in the middle.
    names = [t[0] for t in TENSORS][::-1]
    header = {}
    for i, name in enumerate(names):
        if i == len(names) // 2:
            header["__metadata__"] = METADATA
        header[name] = entries[name]
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)

    with open(os.path.join(HERE, "sample.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(data)

    lines = ["# Expected contents of sample.safetensors (written by make_safetensors_reference.py)."]
    for k, v in sorted(METADATA.items()):
        lines.append(f"metadata {k} {v}")
    for name, dtype, shape, np_dtype, values in TENSORS:  # already in data (file) order
        vals = stored_values(dtype, np_dtype, values)
        lines.append(" ".join(["tensor", name, dtype, str(len(shape))] + [str(d) for d in shape] + vals))
    with open(os.path.join(HERE, "sample_safetensors_expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
