#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets to fuzz/seeds/<target>/.

Run by hand after a change to an input format (the seeds are committed, so the fuzz runs are
reproducible and need no generator):  .venv/bin/python fuzz/make_seeds.py [BUILD_DIR]

Each seed is a small but real, valid instance of its format (plus a few near misses), so libFuzzer
starts deep inside the parsers instead of spending its budget rediscovering magic numbers. The
checkpoint seeds come from the fuzz_checkpoint binary itself (LIMUON_FUZZ_WRITE_SEEDS): real
optimizer/schedule/CLI checkpoints, re-encoded in that target's archive description, which only
the C++ side can write; without a fuzz build (BUILD_DIR, default build-fuzz) they are left as
they are. Only the standard library is used, so any python3 runs it.
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def reset(target):
    d = os.path.join(SEEDS, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def put(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gz(data):
    # mtime=0: the same bytes on every run, so regenerating changes nothing in git.
    return gzip.compress(data, compresslevel=9, mtime=0)


# ---- safetensors: the input is the file ---------------------------------------------------

def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape, raw bytes)] in file order."""
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def seeds_safetensors():
    d = reset("safetensors")
    f32 = struct.pack("<6f", 0.5, -1.0, 2.25, 0.0, float("inf"), -3.5)
    put(d, "one_f32", safetensors([("w", "F32", [2, 3], f32)]))
    put(d, "model_like", safetensors(
        [("wte.weight", "F32", [4, 2], struct.pack("<8f", *range(8))),
         ("h.0.ln_1.bias", "F16", [2], struct.pack("<2e", 1.0, -2.0)),
         ("h.0.attn.c_attn.weight", "BF16", [2, 2], bytes([0, 0x3F, 0x80, 0x3F, 0, 0xC0, 0x40, 0x40])),
         ("steps", "I64", [], struct.pack("<q", 42))],
        metadata={"format": "pt", "limuon": "seed"}))
    put(d, "all_dtypes", safetensors(
        [("f64", "F64", [1], struct.pack("<d", 1.5)), ("i32", "I32", [2], struct.pack("<2i", -1, 7)),
         ("i16", "I16", [1], struct.pack("<h", -3)), ("i8", "I8", [2], bytes([0x80, 0x7F])),
         ("u8", "U8", [3], bytes([0, 128, 255])), ("b", "BOOL", [2, 2], bytes([0, 1, 1, 0]))]))
    put(d, "empty_tensors", safetensors([("e0", "F32", [0], b""), ("e1", "I64", [3, 0, 2], b""),
                                         ("x", "U8", [1], b"\x05")]))
    put(d, "metadata_only", safetensors([], metadata={"note": "no tensors"}))
    put(d, "unpadded", safetensors([("a", "I32", [1], struct.pack("<i", 9))], pad=False))
    # Near misses: a bad BOOL byte, overlapping ranges.
    put(d, "bad_bool", safetensors([("b", "BOOL", [2], bytes([1, 2]))]))
    hdr = b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}'
    put(d, "overlap", struct.pack("<Q", len(hdr)) + hdr + b"abc")


# ---- token shards: the input is the file --------------------------------------------------

def shard(tokens, count=None, magic=20240520, version=1):
    header = struct.pack("<3i", magic, version, len(tokens) if count is None else count).ljust(1024, b"\0")
    return header + struct.pack("<%dH" % len(tokens), *tokens)


def seeds_shard():
    d = reset("shard")
    put(d, "gpt2_tokens", shard([50256, 15496, 995, 11, 340, 338, 1160, 1731, 0, 256, 65535, 50256]))
    put(d, "empty", shard([]))
    put(d, "one", shard([7]))
    put(d, "count_too_big", shard([1, 2, 3], count=4))


# ---- IDX pairs: [flags][image part length, LE16][image part][label part] -------------------

def idx_images(images, rows, cols, n=None):
    return struct.pack(">4I", 0x803, len(images) if n is None else n, rows, cols) + b"".join(images)


def idx_labels(labels, n=None):
    return struct.pack(">2I", 0x801, len(labels) if n is None else n) + bytes(labels)


def idx_input(flags, images, labels):
    return bytes([flags]) + struct.pack("<H", len(images)) + images + labels


def seeds_idx():
    d = reset("idx")
    imgs = [bytes((i * 37 + j * 11) & 0xFF for j in range(12)) for i in range(3)]
    im, lb = idx_images(imgs, 3, 4), idx_labels([0, 9, 4])
    put(d, "plain", idx_input(0, im, lb))
    put(d, "gzip_by_target", idx_input(3, im, lb))  # the target gzips both parts: valid streams
    put(d, "gzip_in_input", idx_input(0, gz(im), gz(lb)))  # compressed bytes the fuzzer can corrupt
    put(d, "mnist_shape", idx_input(1, idx_images([bytes(784)], 28, 28), idx_labels([5])))
    put(d, "zero_images", idx_input(0, idx_images([], 2, 2), idx_labels([])))
    put(d, "count_mismatch", idx_input(0, idx_images(imgs[:2], 3, 4), idx_labels([1, 2, 3])))


# ---- CIFAR-10: [flags][train: 4 LE16 lengths][file bytes...] --------------------------------

def cifar_record(label, seed):
    return bytes([label]) + bytes((seed * 31 + i * 7) & 0xFF for i in range(3072))


def seeds_cifar():
    d = reset("cifar")
    put(d, "test_two_records", bytes([0]) + cifar_record(3, 1) + cifar_record(9, 2))
    put(d, "test_subfolder", bytes([2]) + cifar_record(0, 3))
    recs = [cifar_record(i, i) for i in range(5)]
    lens = struct.pack("<4H", *[len(r) for r in recs[:4]])
    put(d, "train_five_files", bytes([1]) + lens + b"".join(recs))
    put(d, "train_subfolder", bytes([3]) + lens + b"".join(recs))
    put(d, "test_partial_record", bytes([0]) + cifar_record(1, 4)[:1000])


# ---- GPT-2 vocabulary files: encoder.json NUL vocab.bpe ---------------------------------------

def byte_alphabet():
    """GPT-2's bytes_to_unicode: byte -> the character the vocabulary files spell it with."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def bpe_files(merges, extra_tokens=(), version=True, crlf=False):
    alpha = byte_alphabet()
    spell = lambda bs: "".join(alpha[b] for b in bs)
    vocab = {spell([b]): b for b in range(256)}
    for a, b in merges:
        vocab.setdefault(spell(a) + spell(b), len(vocab))
    for t in extra_tokens:
        vocab.setdefault(spell(t), len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    nl = "\r\n" if crlf else "\n"
    lines = (["#version: 0.2"] if version else []) + ["%s %s" % (spell(a), spell(b)) for a, b in merges]
    return json.dumps(vocab, ensure_ascii=False).encode() + b"\0" + (nl.join(lines) + nl).encode()


def seeds_bpe_files():
    d = reset("bpe_files")
    merges = [(b"a", b"b"), (b"ab", b"ab"), (b" ", b"t"), (b" t", b"h"), (b" th", b"e"), (b"h", b"e"),
              (b"l", b"l"), (b"he", b"ll"), (b"hell", b"o"), (b"\n", b"\n"), (b"1", b"2")]
    put(d, "small", bpe_files(merges))
    put(d, "crlf_no_version", bpe_files(merges[:4], version=False, crlf=True))
    put(d, "non_ascii", bpe_files([(b"\xc3", b"\xa9"), (b"\xe2\x82", b"\xac"), (b"\xe2", b"\x82")],
                                  extra_tokens=[b"\xe2\x82\xac"]))
    put(d, "one_merge", bpe_files([(b"a", b"a")]))
    # Real text as the input tail: the target also round-trips the input itself.
    put(d, "with_text", bpe_files(merges) + b"hello the abab 12\n")


# ---- tokenizer input: arbitrary text ----------------------------------------------------------

def seeds_encoder():
    d = reset("encoder")
    texts = {
        "english": "Hello world! It's a test: we'll see, they've done it, I'm sure you'd agree.\n",
        "code": "def f(x):\n    return x ** 2  # square\n\n\tif a != b: print('ok')\r\n",
        "numbers": "In 2024, 3.14159 and 1,000,000 people; 0x1F 42nd 7e-3.",
        "unicode": "naïve café — 日本語のテキスト, emoji 😀👍🏽, Ελληνικά, العربية, עברית",
        "whitespace": "   leading\n\n\n   \t\t  mixed   \n  trailing   ",
        "eot_text": "<|endoftext|>The end.<|endoftext|>",
        "long_word": "a" * 300 + " " + "ab" * 150,
    }
    for name, t in texts.items():
        put(d, name, t.encode())
    put(d, "invalid_utf8", b"ok \xff\xfe \xc3( \xe2\x82 \xf0\x9f\x98 \xed\xa0\x80 end")
    put(d, "ids_le32", struct.pack("<6i", 15496, 995, 0, 50256, 50257, -1))  # decode reads the input as ids


# ---- config files: JSON object of flag -> value -----------------------------------------------

def seeds_config():
    d = reset("config")
    put(d, "train_gpt2", json.dumps({
        "task": "text", "model": "gpt2-tiny", "data": "data/cache", "tokenizer": "gpt2", "optimizer": "limuon",
        "out": "out/run", "steps": 200, "batch_size": 8, "grad_accum": 2, "block_size": 64, "lr": 0.02,
        "adamw_lr": 3e-4, "weight_decay": 0.01, "nesterov": True, "rank": 32, "oversample": 8,
        "lowrank_state": "paper", "min_lr_ratio": 0.1, "seed": 1234, "dropout": -1}, indent=1).encode())
    put(d, "train_vit", json.dumps({
        "task": "image", "model": "vit-tiny", "epochs": 1.5, "augment": "true", "pad": 4, "patch": 4,
        "eval-interval": 50, "resume": False, "momentum": 0.95, "beta": 0.1, "gamma": 0.025}).encode())
    put(d, "numbers", b'{"a": -9223372036854775808, "b": 9223372036854775807, "c": 1e-300, "d": -0.0,'
                      b' "e": 18446744073709551615, "f": 1.7976931348623157e308, "g": "0x10", "h": " 5"}')
    put(d, "strings", '{"s": "caf\\u00e9 \\ud83d\\ude00", "t": "", "u": "1\\u0000", "k_e-y": "true"}'.encode())
    put(d, "empty", b"{}")
    put(d, "not_object", b"[1, 2, 3]")
    put(d, "nested", b'{"a": {"b": 1}, "c": [1]}')
    put(d, "duplicate_keys", b'{"steps": 1, "steps": 2, "lr": null}')


# ---- checkpoints: written by the target itself --------------------------------------------------

def seeds_checkpoint(build_dir):
    exe = os.path.join(build_dir, "fuzz", "fuzz_checkpoint")
    if not os.access(exe, os.X_OK):
        print("make_seeds: %s not built; fuzz/seeds/checkpoint left as it is" % exe, file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, LIMUON_FUZZ_WRITE_SEEDS=tmp)
        subprocess.run([exe], env=env, check=True)
        # The described seeds feed the default mode. The archive files themselves (*_zip) only
        # seed LIMUON_FUZZ_RAW_ARCHIVE=1 runs, which scripts/fuzz.sh does not do by default; they
        # go to a separate folder so that the default run does not waste executions on them.
        d, raw = reset("checkpoint"), reset("checkpoint_raw")
        for name in sorted(os.listdir(tmp)):
            shutil.copy(os.path.join(tmp, name), os.path.join(d if name.endswith("_described") else raw, name))


def main():
    build_dir = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "build-fuzz")
    os.makedirs(SEEDS, exist_ok=True)
    seeds_safetensors()
    seeds_shard()
    seeds_idx()
    seeds_cifar()
    seeds_bpe_files()
    seeds_encoder()
    seeds_config()
    seeds_checkpoint(build_dir)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(SEEDS) for f in fs)
    print("make_seeds: %d bytes under %s" % (total, os.path.relpath(SEEDS, ROOT)))


if __name__ == "__main__":
    main()
