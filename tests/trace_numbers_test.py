#!/usr/bin/env python3
"""Test of experiments/trace_numbers.py: on hand-written results and documents, the numbers a report
or a run's summary holds are traced (at the precision written, with their sign, as percentages where
the text says so, as declared differences), and each kind of untraceable number is reported with its
line: a typo, a flipped sign, more decimals than the source, a run's setting, a percentage without
the word, a derivation declared elsewhere or with wrong arithmetic. Then the committed study: every
number in docs/RESULTS.md, and in the README's summary of the study, traced to docs/results.

Usage: trace_numbers_test.py [path/to/limuon]   (the binary is not used; CTest passes it to every script test)
"""
import os
import shutil
import subprocess
import sys
import tempfile

from script_checks import check, finish, write

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SCRIPT = os.path.join(ROOT, "experiments", "trace_numbers.py")
TMP = tempfile.mkdtemp(prefix="limuon-trace-test-")


def run(*args, cwd=None):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def flagged(result):
    """The (line, number) pairs reported untraced."""
    out = set()
    for line in result.stdout.splitlines():
        parts = line.split(":")
        if len(parts) >= 3:
            out.add((int(parts[1]), parts[2].strip()))
    return out


try:
    src = os.path.join(TMP, "results")
    os.makedirs(os.path.join(src, "study", "runs", "muon", "lr0.01", "seed0"))
    write(os.path.join(src, "study", "report.md"),
          "| muon | 1.3122 ± 0.0067 | [1.3016, 1.3229] | acc 0.8901 |\n"
          "| limuon | final val loss | +0.0666 | [+0.0633, +0.0700] | accuracy -0.0196 [-0.0246, -0.0145] |\n"
          "| limuon | 1.3789 ± 0.0049 | 356.2 ms |\n")
    write(os.path.join(src, "study", "runs", "muon", "lr0.01", "seed0", "summary.json"),
          {"final_val_loss": 1.30911636, "best_val_loss": 1.2876, "wall_s": 288.0977,
           "config": {"lr": 0.7777, "beta": 0.4444}})

    def doc(name, text):
        return write(os.path.join(TMP, name), text)

    good = doc("good.md", "\n".join([
        "# Title with 2.5 and 3",                                              # 1
        "Muon ends at 1.3122 [1.3016, 1.3229], accuracy 0.8901; LiMuon 1.3789.",  # 2
        "Rounded: 1.31 and 1.312; seed 0 gave 1.3091 (best 1.2876).",         # 3
        "Paired +0.0666 [+0.0633, +0.0700]; unsigned 0.0666; a step 356.2 ms.",  # 4
        "Accuracy -1.96 points [-2.46, -1.45] lower.",                        # 5
        "It is 0.091 behind. <!-- derived: 0.091 = 1.3789 - 1.2876 -->",  # 6
        "",                                                                    # 7
        "Not checked: `--lr 0.7777`, arXiv 2509.14562, LibTorch 1.13, 9.9 MiB, 2,813 steps.",  # 8
        "```sh",                                                               # 9
        "limuon train --beta 0.4444 --lr 5.5555",                              # 10
        "```",                                                                 # 11
        "| config | loss | Δ acc. (points) |",                                 # 12
        "|---|---|---|",                                                       # 13
        "| limuon | 1.3789 | -1.96 [-2.46, -1.45] |",                          # 14
        "| range | 1.3122-1.3229 | – |",                                        # 15
        "",                                                                    # 16
        "An interval across lines: 1.3122 ± 0.0067, CI [1.3016,",               # 17
        "1.3229], and +0.0666, CI [+0.0633, +0.0700].",                       # 18
        "",
    ]))
    r = run("--sources", src, good)
    check("good document: exit 0", r.returncode == 0, r.stdout + r.stderr)
    check("good document: nothing listed", r.stdout == "", r.stdout)
    check("good document: summary line counts the sources", "2 source files" in r.stderr, r.stderr)

    bad = doc("bad.md", "\n".join([
        "Muon ends at 1.3123.",                                                # 1 typo
        "Paired -0.0666 with its sign flipped.",                              # 2 sign
        "More decimals than the source: 1.31224.",                            # 3 precision
        "A setting, not a result: 0.7777; a run clock, not a result: 288.10.",  # 4 config / non-final key
        "Accuracy -1.96 lower, without the word.",                            # 5 percent without context
        "",                                                                    # 6
        "It is 0.091 behind.",                                                 # 7 derivation declared elsewhere
        "",                                                                    # 8
        "<!-- derived: 0.091 = 1.3789 - 1.2876 -->",                           # 9
        "Off by one: 0.068 behind. <!-- derived: 0.068 = 1.3789 - 1.3091 -->",  # 10 wrong arithmetic? 0.0698
        "Unknown operand: 0.101 <!-- derived: 0.101 = 1.4123 - 1.3122 -->",   # 11 1.4123 untraced
        "Malformed: 0.202 <!-- derived: 0.202 is 1.3122 less 1.1102 -->",    # 12
        "| config | loss | Δ acc. |",                                          # 13
        "|---|---|---|",                                                       # 14
        "| limuon | 1.3789 | -1.96 |",                                         # 15 column not a percentage
        "A sign in U+2212: \u22120.0666 flipped, \u22120.0196 right.",            # 16
        "A mean with another row's bound: 1.3122 [1.3016, 1.3789].",          # 17
        "",
    ]))
    r = run("--sources", src, bad)
    got = flagged(r)
    check("bad document: exit 1", r.returncode == 1, r.stdout + r.stderr)
    for line, number, what in [(1, "1.3123", "a typo"), (2, "-0.0666", "a flipped sign"),
                               (3, "1.31224", "more decimals than the source"),
                               (4, "0.7777", "a run's setting"), (4, "288.10", "a summary value that is not a result"),
                               (5, "-1.96", "a percentage without the word"),
                               (7, "0.091", "a derivation declared in another paragraph"),
                               (10, "0.068", "wrong arithmetic"), (11, "0.101", "an untraced operand"),
                               (12, "0.202", "a malformed derivation"),
                               (15, "-1.96", "a percentage in a column that does not say so"),
                               (16, "\u22120.0666", "a flipped sign written U+2212"),
                               (17, "1.3122 [1.3016, 1.3789]", "an interval whose numbers are not from one line")]:
        check(f"bad document: {what} ({number}, line {line}) listed", (line, number) in got, r.stdout)
    check("bad document: the traced 1.3789 and \u22120.0196 not listed",
          not any(n in ("1.3789", "\u22120.0196") for _, n in got), r.stdout)
    check("bad document: the wrong arithmetic named",
          "1.3789 - 1.3091 = 0.0698, not 0.068" in r.stdout, r.stdout)
    check("bad document: the untraced operand named", "1.4123 is not in the sources" in r.stdout, r.stdout)
    check("bad document: the malformed derivation explained", "must read X = A - B" in r.stdout, r.stdout)
    check("bad document: FILE:LINE prefix", r.stdout.startswith(bad + ":1: 1.3123"), r.stdout)

    # --from / --to: only that part is read.
    part = doc("part.md", "before 9.8765\nSTART\nMuon 1.3122\nbad 9.1234\nEND\nafter 9.4321\n")
    r = run("--sources", src, "--from", "START", "--to", "END", part)
    check("--from/--to: only the part's bad number listed", flagged(r) == {(4, "9.1234")}, r.stdout + r.stderr)
    r = run("--sources", src, "--from", "START", part)
    check("--from alone: to the end", flagged(r) == {(4, "9.1234"), (6, "9.4321")}, r.stdout + r.stderr)

    # Bad input: exit 2 with a message naming the problem.
    for name, args, says in [
        ("--from not found", ["--sources", src, "--from", "NOWHERE", part], "no line contains --from"),
        ("--to not found", ["--sources", src, "--from", "START", "--to", "NOWHERE", part], "contains --to"),
        ("--to without --from", ["--sources", src, "--to", "END", part], "--to needs --from"),
        ("no sources directory", ["--sources", os.path.join(TMP, "none"), good], "not a directory"),
        ("a missing document", ["--sources", src, os.path.join(TMP, "missing.md")], "cannot read"),
    ]:
        r = run(*args)
        check(f"bad input, {name}: exit 2", r.returncode == 2, r.stdout + r.stderr)
        check(f"bad input, {name}: says so", says in r.stderr, r.stderr)
    empty = os.path.join(TMP, "empty")
    os.makedirs(empty)
    r = run("--sources", empty, good)
    check("sources without numbers: exit 2", r.returncode == 2 and "no numbers found" in r.stderr, r.stderr)
    broken = os.path.join(TMP, "broken")
    shutil.copytree(src, broken)
    write(os.path.join(broken, "study", "runs", "muon", "lr0.01", "seed0", "summary.json"), "{not json")
    r = run("--sources", broken, good)
    check("a broken summary.json: exit 2 naming it", r.returncode == 2 and "summary.json" in r.stderr
          and "not readable as JSON" in r.stderr, r.stderr)

    # The committed study: every number in RESULTS and in the README's summary of it is traced.
    r = run("docs/RESULTS.md", cwd=ROOT)
    check("docs/RESULTS.md: every number traced to docs/results", r.returncode == 0, r.stdout + r.stderr)
    r = run("--from", "**Issue 19's study", "--to", "The older comparisons below", "README.md", cwd=ROOT)
    check("README's study summary: every number traced to docs/results", r.returncode == 0, r.stdout + r.stderr)
finally:
    shutil.rmtree(TMP, ignore_errors=True)

finish("trace_numbers: ")
