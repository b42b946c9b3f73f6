#!/usr/bin/env python3
"""Checks that every measured number a document states can be found in the committed results.

Issue 19 asks that every number in docs/RESULTS.md be traceable to a committed run. This script reads
the documents given and, for each number written with two or more decimals (losses, accuracies,
differences and their intervals, ms per step), looks for it among the numbers of the committed
results under --sources (default docs/results): every report and reading written there as Markdown
(report.md, along.md, noise.md, the benchmarks' .md) and each run's summary.json (its final_* and
best_* results; its settings are inputs, not results). A number is traced when

  * a source number rounds to it at the precision the document writes (1.3122 is traced by 1.31224,
    1.31 by 1.3122; 1.3123 is not). A number with an explicit sign (+0.0666, -2.46, U+2212) must match
    with that sign; one without matches either sign;
  * or it is a percentage of one (at two more decimals), where the document says so: "points" or
    "%" within a few words of it, or a table column whose header says so;
  * or it is declared derived in an HTML comment in the same paragraph or table row, which the
    script checks: <!-- derived: 0.031 = 0.3253 - 0.2939 --> (sums and differences of traced
    numbers, within their rounding; several declarations separated by ";").

A mean (or difference) with its interval, "X [A, B]" (also "X ± S, CI [A, B]" and "X points [A, B]",
across a line break too), must besides come from one line of one source: three numbers each found
somewhere, but not together, are a slip (a neighbouring row's bound, say).

Not checked: integers and one-decimal figures (counts, seeds, hours, MiB at one decimal), numbers in
code spans and fenced blocks (commands and flags), paper identifiers (arXiv) and software versions
(LibTorch, PyTorch). Untraced numbers are listed as FILE:LINE with their context; the exit status is 1
if there is any, 2 for bad input.

How much it catches: a wrong number passes only when it happens to equal some other committed number
at the precision written, and the committed study holds about 6,500 numbers, many near any loss. On
docs/RESULTS.md (300 of its 1,526 checked numbers drawn at random, each changed alone), raising the
last digit by one was caught 73 % of the time, and replacing the number with a made-up one within
50 % of it 73 % (61 % and 64 % without the interval rule): a net for slips and stale figures, not a
proof.

Usage: trace_numbers.py [--sources DIR] [--from TEXT [--to TEXT]] DOC [DOC ...]
  --from/--to check only a part of each document: from the first line containing --from up to the
  next line containing --to (the README's summary of the study, say).
"""
import argparse
import bisect
import collections
import glob
import json
import math
import os
import re
import sys

# A number in the sources. A minus or plus is its sign unless it joins a range ("0.01-0.04").
NUMBER = re.compile(r"(?<![\w.])([-+\u2212]?)(\d+(?:\.\d+)?)")
# A number the documents are checked for: two or more decimals.
CHECKED = re.compile(r"(?<![\w.])([-+\u2212]?)(\d+)\.(\d{2,})(?![\d.]*\d)")
RANGE_DASH = re.compile(r"[\d)\]]$")
_SIGNED = r"[-+\u2212]?\d+\.\d{2,}"
INTERVAL = re.compile(r"(?<![\w.])(" + _SIGNED + r")(?:\s*±\s*\d+\.\d+)?(?:\s*points)?(?:,?\s*(?:95\s*%\s*)?CI)?"
                      r"\s*\[\s*(" + _SIGNED + r")\s*,\s*(" + _SIGNED + r")\s*\]")
NOT_RESULTS = re.compile(r"(?:arXiv:?|LibTorch|PyTorch|torch)\s*\d+(?:\.\d+)+")
COMMENT = re.compile(r"<!--(.*?)-->")
DERIVED = re.compile(r"^\s*([-+\u2212]?\d+\.\d+)\s*=\s*([-+\u2212]?\d+\.\d+)\s*([-+\u2212])\s*(\d+\.\d+)\s*$")
PERCENT_WORDS = re.compile(r"points|%")
PERCENT_REACH = 24  # characters either side of a number in which "points" or "%" makes it a percentage


def fail(msg):
    print(f"trace_numbers: {msg}", file=sys.stderr)
    sys.exit(2)


def signed_value(sign, body):
    return -float(body) if sign in ("-", "\u2212") else float(body)


def decimals_of(text):
    return len(text.split(".")[1]) if "." in text else 0


def sign_of(text, m):
    """The sign group of a match, or "" when the character before it makes it a range's dash."""
    sign = m.group(1)
    return "" if sign and RANGE_DASH.search(text[: m.start()]) else sign


class Sources:
    """The committed results' numbers, signed and by magnitude, sorted for lookup; and, line by line,
    which numbers a Markdown source writes together (a mean and its interval, say)."""

    def __init__(self):
        self.signed, self.magnitude, self.files = [], [], 0
        self.lines = []    # each Markdown line's magnitudes
        self.index = {}    # decimals -> {value in units of the last decimal: ids of the lines holding it}

    def add(self, value):
        if value == value and abs(value) != float("inf"):
            self.signed.append(value)
            self.magnitude.append(abs(value))

    def add_text(self, text):
        for line in text.split("\n"):
            values = [signed_value(sign_of(line, m), m.group(2)) for m in NUMBER.finditer(line)]
            for v in values:
                self.add(v)
            if len(values) > 2:
                self.lines.append([abs(v) for v in values if v == v and abs(v) != float("inf")])

    def finish(self):
        self.signed.sort()
        self.magnitude.sort()

    def has(self, value, decimals, signed):
        """A source number within half a unit of value's last decimal (with its sign, or either)."""
        pool = self.signed if signed else self.magnitude
        target = value if signed else abs(value)
        half = 0.5 * 10 ** -decimals * (1 + 1e-9)
        i = bisect.bisect_left(pool, target - half)
        return i < len(pool) and pool[i] <= target + half

    def _units(self, decimals):
        """The line index at one precision: a value indexed under each unit it is within half a unit of."""
        if decimals not in self.index:
            table = collections.defaultdict(set)
            scale = 10 ** decimals
            for line_id, values in enumerate(self.lines):
                for v in values:
                    x = v * scale + 0.5
                    for unit in {math.floor(x - 1e-6), math.floor(x + 1e-6)}:
                        table[unit].add(line_id)
            self.index[decimals] = table
        return self.index[decimals]

    def together(self, numbers, scale=1.0, extra_decimals=0):
        """Some Markdown source line holds every one of numbers (by magnitude, at the precision written)."""
        lines = None
        for n in numbers:
            d = n.decimals + extra_decimals
            held = self._units(d).get(round(abs(n.value) * scale * 10 ** d), set())
            lines = held if lines is None else lines & held
            if not lines:
                return False
        return True


def load_sources(root):
    src = Sources()
    for path in sorted(glob.glob(os.path.join(root, "**", "*.md"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            src.add_text(f.read())
        src.files += 1
    for path in sorted(glob.glob(os.path.join(root, "**", "summary.json"), recursive=True)):
        try:
            with open(path, encoding="utf-8") as f:
                summary = json.load(f)
        except (OSError, ValueError) as e:
            fail(f"{path}: not readable as JSON ({e})")
        if not isinstance(summary, dict):
            fail(f"{path}: not a run summary (a JSON object expected)")
        for key, value in summary.items():
            if key.startswith(("final_", "best_")) and isinstance(value, (int, float)) and not isinstance(value, bool):
                src.add(float(value))
        src.files += 1
    src.finish()
    return src


class Number:
    """A number as a document writes it: "+0.0666", "1.31", "\u22122.46"."""

    def __init__(self, written, line_no=0, line="", percent_ok=False):
        body = written.lstrip("+-\u2212")
        self.text = written
        self.signed = body != written
        self.value = signed_value(written[0] if self.signed else "", body)
        self.decimals = decimals_of(body)
        self.line_no, self.line, self.percent_ok = line_no, line, percent_ok


Finding = collections.namedtuple("Finding", "line_no text reason line")


class Group:
    """A table row, or a paragraph of prose: the numbers in it and the derivations it declares."""

    def __init__(self):
        self.numbers, self.derived = [], []  # derived: (line_no, x, a, op, b) as written
        self.pieces = []  # (line_no, the line with code, comments and versions blanked)

    def intervals(self):
        """Each "X [A, B]" the group writes (a mean or difference and its interval; the brackets may
        follow "± S", "CI" or "points", and may continue on the next line): (its numbers, line_no)."""
        text, starts = "", []
        for no, piece in self.pieces:
            starts.append((len(text), no))
            text += piece + " "
        by_place = {(n.line_no, n.text): n for n in self.numbers}
        out = []
        for m in INTERVAL.finditer(text):
            no = starts[bisect.bisect_right([o for o, _ in starts], m.start()) - 1][1]
            trio = [Number(w, no) for w in m.group(1, 2, 3)]
            # a percentage if it says "points" or any of the three was read as one where it stands
            percent = "points" in m.group(0) or any(
                by_place.get((line_no, n.text)) is not None and by_place[(line_no, n.text)].percent_ok
                for n in trio for line_no in (no, no + 1))
            for n in trio:
                n.percent_ok = percent
            out.append((trio, no))
        return out


def blank(text, pattern):
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def table_cells(line):
    """Each cell's [start, end) column in a table row."""
    bars = [i for i, ch in enumerate(line) if ch == "|"]
    return list(zip(bars, bars[1:]))


def read_groups(path, start=None, end=None):
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError) as e:
        fail(f"{path}: cannot read ({e})")
    if start is not None:
        first = next((i for i, line in enumerate(lines) if start in line), None)
        if first is None:
            fail(f"{path}: no line contains --from {start!r}")
        last = next((i for i in range(first + 1, len(lines)) if end is not None and end in lines[i]), len(lines))
        if end is not None and last == len(lines):
            fail(f"{path}: no line after {start!r} contains --to {end!r}")
    else:
        first, last = 0, len(lines)
    groups, para, in_fence, header = [], None, False, None
    for no, raw in enumerate(lines, 1):
        if not first <= no - 1 < last:
            continue
        if raw.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        stripped = raw.strip()
        row = stripped.startswith("|")
        if not row:
            header = None
        if not stripped or stripped.startswith("#") or row:
            para = None
        if not stripped:
            continue
        if row:
            if header is None:
                header = raw  # a table's first row names its columns
            group = Group()
            groups.append(group)
        else:
            if para is None:
                para = Group()
                groups.append(para)
            group = para
        for c in COMMENT.finditer(raw):
            body = c.group(1).strip()
            if body.startswith("derived:"):
                for decl in body[len("derived:"):].split(";"):
                    d = DERIVED.match(decl)
                    if not d:
                        group.derived.append((no, decl.strip(), None, None, None))
                    else:
                        group.derived.append((no, d.group(1), d.group(2), d.group(3), d.group(4)))
        text = blank(blank(blank(raw, COMMENT), re.compile(r"`[^`]*`")), NOT_RESULTS)
        percent_heads = []  # the header's cells that say their numbers are percentages
        if row and header is not raw:
            percent_heads = [bool(PERCENT_WORDS.search(header[a:b])) for a, b in table_cells(header)]
        cells = table_cells(raw) if row else []
        group.pieces.append((no, text.replace("**", "  ")))
        for m in CHECKED.finditer(text):
            near = text[max(0, m.start() - PERCENT_REACH): m.end() + PERCENT_REACH]
            # a row's cells need not line up with the header's: go by cell index
            idx = next((i for i, (a, b) in enumerate(cells) if a < m.start() < b), None)
            in_col = idx is not None and idx < len(percent_heads) and percent_heads[idx]
            percent_ok = in_col or (not row and bool(PERCENT_WORDS.search(near)))
            written = sign_of(text, m) + m.group(2) + "." + m.group(3)
            group.numbers.append(Number(written, no, raw, percent_ok))
    return groups


def check_doc(path, src, start=None, end=None):
    """The numbers of path (or of its part from start to end) that are not traced, as Findings."""

    def traced(n):
        return src.has(n.value, n.decimals, n.signed) or (
            n.percent_ok and src.has(n.value / 100, n.decimals + 2, n.signed))

    untraced = []
    for group in read_groups(path, start, end):
        declared = set()
        for no, x, a, op, b in group.derived:
            if a is None:
                untraced.append(Finding(no, x, "a derivation must read X = A - B or X = A + B", f"derived: {x}"))
                continue
            nx, na, nb = Number(x), Number(a), Number(b)
            result = na.value - nb.value if op in ("-", "\u2212") else na.value + nb.value
            tol = 0.5 * (10 ** -nx.decimals + 10 ** -na.decimals + 10 ** -nb.decimals) + 1e-12
            problems = [f"{n.text} is not in the sources" for n in (na, nb) if not traced(n)]
            if abs(result - nx.value) > tol and abs(abs(result) - abs(nx.value)) > tol:
                problems.append(f"{a} {op} {b} = {result:.6g}, not {x}")
            if problems:
                untraced.append(Finding(no, x, "; ".join(problems), f"derived: {x} = {a} {op} {b}"))
            else:
                declared.add(abs(nx.value))
        missing = set()
        for n in group.numbers:
            if not traced(n) and abs(n.value) not in declared:
                untraced.append(Finding(n.line_no, n.text, "not in the sources", n.line))
                missing.add((n.line_no, n.text))
        # A mean and its interval, each traced, must also come from one line of one source: three
        # numbers found in three different places are a slip (a neighbouring row's bound, say).
        for trio, no in group.intervals():
            if any((no, n.text) in missing for n in trio):
                continue
            if not (src.together(trio) or (trio[0].percent_ok and src.together(trio, 0.01, 2))):
                written = f"{trio[0].text} [{trio[1].text}, {trio[2].text}]"
                untraced.append(Finding(no, written, "not written together in any line of the sources",
                                        next((n.line for n in group.numbers if n.line_no == no), "")))
    return sorted(untraced, key=lambda f: f.line_no)


def main():
    ap = argparse.ArgumentParser(description="List the numbers of a document not found in the committed results.")
    ap.add_argument("--sources", default="docs/results", help="the committed results (default docs/results)")
    ap.add_argument("--from", dest="start", help="check only from the first line containing this text")
    ap.add_argument("--to", dest="end", help="... up to (not including) the next line containing this text")
    ap.add_argument("docs", nargs="+", help="Markdown documents to check")
    args = ap.parse_args()
    if args.end is not None and args.start is None:
        fail("--to needs --from")
    if not os.path.isdir(args.sources):
        fail(f"--sources {args.sources}: not a directory")
    src = load_sources(args.sources)
    if not src.signed:
        fail(f"--sources {args.sources}: no numbers found (no *.md or summary.json under it)")
    total = 0
    for doc in args.docs:
        for f in check_doc(doc, src, args.start, args.end):
            total += 1
            print(f"{doc}:{f.line_no}: {f.text}: {f.reason}: {f.line.strip()[:140]}")
    print(f"trace_numbers: {total} untraced number(s) in {len(args.docs)} document(s), against "
          f"{src.files} source files holding {len(src.signed)} numbers", file=sys.stderr)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
