#!/usr/bin/env python3
"""Issue 19's noise question, read from a finished (or part-finished) `limuon compare` of
experiments/study_noise.json: the final validation loss of each optimizer against the batch size
at a fixed sample budget, and where, if anywhere, LiMuon's curves cross Muon's.

Reads OUT/spec.json (the spec compare saved) and OUT/report.json (every number there comes from
the runs' summaries); trains nothing. Config names are FAMILY-bN (N the batch size), e.g.
"limuon-exact-b16"; the batch size itself is taken from the config's "batch-size" flag.
Writes OUT/noise.md, OUT/noise.json and OUT/plots/noise_vs_batch.png (gnuplot; the .dat and .gp
beside it).

Every comparison is read three ways (issue 19): at equal samples (the final loss), and, per batch,
at equal gradient evaluations and at equal seconds (each run's validation loss interpolated at the
fewest evaluations / shortest steps x ms/step any chosen run at that batch reached), from the
runs' metrics.jsonl(.gz) and report.json's per-run ms/step (timing.json's quiet figures where present).

Per family and batch: the selected config's runs (its chosen lr and, for a group with tuned flags
such as beta, its chosen variant, named in the table; every seed that finished), mean
final validation loss with its 95 % confidence interval (Student t). Against the reference family
(default muon), per batch: the difference of runs paired by seed (same seed = same initialisation
and data order), mean and 95 % CI. "Crossing" between two batch sizes: the mean paired difference
changes sign.

Along training: the same paired difference at every validation evaluation the paired runs share
(at equal samples: runs at one batch evaluate at the same steps), so that a lead one optimizer holds
only part of the way (leaving the early plateau sooner, say) is shown where the final loss hides it:
the evaluations where the difference's CI lies below 0 ("ahead"), the largest lead, and from where on
it lies above 0 to the end ("behind from"). Written to noise.md/json and plots/gap_vs_samples.png.

--with DIR adds another comparison of the same task at another batch size, e.g. the main LM study
(docs/results/study_lm, batch 8, the same 16,000 sequences): its groups named FAMILY (no -bN) join
the table at that comparison's batch, read the same way from its own report.json and runs (and its
own timing.json). It is refused unless its budget and every training setting of each such group
match the noise study's, apart from what the batch size scales (warm-up, evaluation and checkpoint
intervals) and what is tuned (lr, beta).

Usage: experiments/study_noise_report.py OUT [--reference muon] [--with DIR ...]
"""
import argparse
import gzip
import json
import math
import os
import re
import shutil
import subprocess
import sys

# Two-sided 95 % quantiles of Student's t, t(0.975; df) for df = 1..30 (standard tables); 1.96 above.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


# The three readings of one comparison: (axis, the per-seed dict in `chosen`). At equal samples the
# final loss (the budget is samples), then at equal gradient evaluations and at equal seconds.
AXES = (("samples", "loss"), ("grad_evals", "grad_evals"), ("seconds", "seconds"))
AXIS_TEXT = {"samples": "samples (the final loss)", "grad_evals": "gradient evaluations", "seconds": "seconds"}


def stats(values):
    v = [x for x in values if x is not None and math.isfinite(x)]
    n = len(v)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None}
    mean = sum(v) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
    ci = (T975[n - 2] if n - 1 <= 30 else 1.96) * std / math.sqrt(n) if n > 1 else None
    return {"n": n, "mean": mean, "std": std, "ci95": ci}


def cell(s, signed=False):
    if s["n"] == 0:
        return "–"
    f = "%+.4f" if signed else "%.4f"
    text = f % s["mean"]
    if s["ci95"] is not None:
        text += " [" + f % (s["mean"] - s["ci95"]) + ", " + f % (s["mean"] + s["ci95"]) + "]"
    return text + f" (n={s['n']})"


def reading(s):
    if s["n"] == 0:
        return "no paired seeds"
    if s["ci95"] is None:
        return "1 seed: no interval"
    if s["mean"] - s["ci95"] > 0:
        return "higher"
    if s["mean"] + s["ci95"] < 0:
        return "lower"
    return "not distinguishable"


def evaluations(out, run):
    """The run's validation evaluations as (step, grad_evals, val_loss), from its metrics.jsonl(.gz)
    under OUT/run["dir"]; [] when the run has no directory or metrics."""
    d = run.get("dir")
    if not d:
        return []
    for name, opener in (("metrics.jsonl.gz", gzip.open), ("metrics.jsonl", open)):
        path = os.path.join(out, d, name)
        if os.path.exists(path):
            try:
                with opener(path, "rt") as f:
                    rows = [json.loads(line) for line in f if '"val_loss"' in line]
            except (OSError, ValueError) as e:
                sys.exit(f"study_noise_report: cannot read {path} ({e})")
            return [(r["step"], r["grad_evals"], r["val_loss"]) for r in rows if "grad_evals" in r]
    return []


def at(points, x):
    """Linear interpolation of (x, y) points (ascending x) at x; None before the first point or past
    the last (a reading only where the run has evaluations on both sides)."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    if points and points[-1][0] == x:
        return points[-1][1]
    return None


def along_training(evals, ref_evals, batch):
    """The paired difference along training: for each evaluation step that every seed with
    evaluations in both `evals` and `ref_evals` (seed -> [(step, grad_evals, val_loss)]) has in both,
    the statistics of the per-seed differences, at samples = step x batch. Also the samples where it
    reads "lower" (ahead), the largest lead (the most negative mean) and the first samples from which
    every point reads "higher" to the end. None when no seed has evaluations in both."""
    curves = {}
    for seed, e in evals.items():
        r = ref_evals.get(seed)
        if e and r:
            curves[seed] = ({st: v for st, _, v in e}, {st: v for st, _, v in r})
    if not curves:
        return None
    steps = sorted(set.intersection(*[set(x) & set(y) for x, y in curves.values()]))
    points = []
    for st in steps:
        d = stats([x[st] - y[st] for x, y in curves.values()])
        points.append({"step": st, "samples": st * batch, "difference": d, "reading": reading(d)})
    lead = min((q for q in points if q["difference"]["mean"] < 0), key=lambda q: q["difference"]["mean"], default=None)
    behind_from = None
    for q in reversed(points):
        if q["reading"] != "higher":
            break
        behind_from = q["samples"]
    return {"seeds": sorted(curves), "points": points, "ahead_at": [q["samples"] for q in points if q["reading"] == "lower"],
            "largest_lead": {"samples": lead["samples"], "difference": lead["difference"]} if lead else None,
            "behind_from": behind_from}


ALONG_HEADER = ["| {what} | evaluations (seeds) | mean difference: first / middle / last evaluation | ahead at samples | "
                "largest lead [95 % CI] (samples) | behind from samples to the end |", "|---|---|---|---|---|---|"]


def along_text(reference, same="seed"):
    return (f"Each run minus {reference}'s run with the same {same} at every validation evaluation both have "
            "(samples = steps x batch); \"ahead\": the 95 % CI of the mean difference lies below 0, \"behind\": "
            "above 0. The final loss is the last point. Each evaluation's interval stands alone (not corrected for "
            "the number of evaluations): one point outside 0 among many is weak evidence, a run of them is not.")


def along_row(label, g):
    """One markdown row of the along-training table for `label` (its first cells, '|'-separated)."""
    pts = g["points"]
    trend = " / ".join(f"{q['difference']['mean']:+.4f}" for q in (pts[0], pts[len(pts) // 2], pts[-1])) if pts else "–"
    if len(g["seeds"]) < 2:
        return f"| {label} | {len(pts)} (1) | {trend} | 1 seed: no interval | | |"
    lead = g["largest_lead"]
    return (f"| {label} | {len(pts)} ({len(g['seeds'])}) | {trend} | "
            + (", ".join(f"{x:g}" for x in g["ahead_at"]) or "none") + " | "
            + (cell(lead["difference"], signed=True) + f" ({lead['samples']:g})" if lead else "none") + " | "
            + (f"{g['behind_from']:g}" if g["behind_from"] is not None else "not behind at the end") + " |")


def png_terminal(png, width):
    """gnuplot's first lines for a WIDTH x 640 PNG: cairo where the build has it, plain png otherwise."""
    return ["if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {", f"  set terminal pngcairo size {width},640 font 'Sans,11' noenhanced",
            "} else {", f"  set terminal png size {width},640 noenhanced", "}", f"set output '{png}'"]


def gap_plot(plots, lines, reference, x_label):
    """Writes plots/gap_vs_samples.dat and .gp: one line per (title, along_training result, colour,
    dash index) in `lines` (only those with 2+ seeds: a mean with an interval), the zero line where
    the two are level. Returns how many lines it drew."""
    drawn = [x for x in lines if len(x[1]["seeds"]) > 1]
    with open(os.path.join(plots, "gap_vs_samples.dat"), "w") as f:
        for title, g, _, _ in drawn:
            f.write(f"# {title}\n# samples mean ci95\n")
            for q in g["points"]:
                d = q["difference"]
                f.write(f"{q['samples']} {d['mean']:.17g} {(d['ci95'] or 0):.17g}\n")
            f.write("\n\n")
    gp = png_terminal("gap_vs_samples.png", 1250) + [
          f"set title 'Validation loss minus {reference} at equal samples along training (paired by seed; mean, 95 % CI)'",
          f"set xlabel '{x_label}'", f"set ylabel 'val loss minus {reference} (below 0: ahead)'",
          "set grid", "set key outside right top box", "set xzeroaxis lt -1 lw 1",
          "plot " + ", \\\n     ".join(
              f"'gap_vs_samples.dat' index {i} using 1:2:3 with yerrorlines lw 2 ps 0.6 "
              f"lc rgb '{colour}' dt {dash % 5 + 1} pt {7 + 2 * (dash % 4)} title '{title}'"
              for i, (title, _, colour, dash) in enumerate(drawn)),
          "unset output"]
    with open(os.path.join(plots, "gap_vs_samples.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")
    return len(drawn)


COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def draw(plots, name, anything):
    """Runs plots/NAME.gp with gnuplot when there is anything to plot; the markdown line for NAME.png."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot or not anything:
        return "Plot skipped: " + ("gnuplot is not installed" if not gnuplot else "nothing finished to plot")
    res = subprocess.run([gnuplot, name + ".gp"], cwd=plots, capture_output=True, text=True)
    if res.returncode == 0 and os.path.getsize(os.path.join(plots, name + ".png")) > 0:
        return f"![{name}.png](plots/{name}.png)"
    print(f"{os.path.basename(sys.argv[0])}: gnuplot failed on {name}.gp: {res.stderr[-500:]}", file=sys.stderr)
    return "Plot skipped: gnuplot failed"


# Flags a batch size legitimately changes or tuning chooses: ignored when --with checks that another
# comparison trained the same thing. Everything else (model, data, dropout, optimizer, rank, ...) must match.
SCALED_OR_TUNED = {"name", "lr", "beta", "tune", "tune-extend", "batch-size", "warmup", "eval-interval",
                   "checkpoint-interval"}


def effective(spec, config):
    """A config's effective training flags: the spec's "train" overridden by the config, with flag
    names' '_' read as '-'."""
    merged = {k.replace("_", "-"): v for k, v in spec.get("train", {}).items()}
    merged.update({k.replace("_", "-"): v for k, v in config.items()})
    return merged


def settings(spec, config):
    """A config's effective training flags without SCALED_OR_TUNED (what must match across batches)."""
    return {k: v for k, v in effective(spec, config).items() if k not in SCALED_OR_TUNED}


def batch_size(spec, config):
    """A config's effective batch size; None when neither the config nor the spec's "train" sets one."""
    return effective(spec, config).get("batch-size")


def load(out):
    try:
        spec = json.load(open(os.path.join(out, "spec.json")))["spec"]
        report = json.load(open(os.path.join(out, "report.json")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"study_noise_report: cannot read {out}/spec.json and report.json ({e}); run limuon compare first")
    return spec, report


def finished_runs(report, c):
    """The finished runs of report.json's config entry c (a group's selected config) at its chosen lr."""
    return [r for r in report["runs"] if r["config"] == c["config"] and r["lr"] == c["lr"] and r["status"] == "done"]


def select(out, report, family_of, batch_of, strict):
    """The selected config of each group in family_of and its finished runs, by seed:
    (family, batch) -> {"group", "config", "lr", "loss", "evals", "ms"}. A group of report.json that is
    not in family_of is an error when strict (the noise study's own report), skipped otherwise."""
    chosen = {}
    for c in report["configs"]:
        name = c["config"]
        group = c.get("group", name)
        if group not in family_of:
            if strict:
                sys.exit(f"study_noise_report: report.json's config '{name}' is not in spec.json (a report of another spec?)")
            continue
        done = finished_runs(report, c)
        chosen[(family_of[group], batch_of[group])] = {
            "group": group, "config": name, "lr": c["lr"], "loss": {r["seed"]: r.get("final_val_loss") for r in done},
            "evals": {r["seed"]: evaluations(out, r) for r in done},
            "ms": {r["seed"]: r.get("ms_per_step") for r in done}}
    return chosen


def joined(spec, family_of, others, taken):
    """--with: each other comparison's groups named like a family of this study, at that comparison's
    batch size, after checking that they trained the same thing. Returns (chosen, sources) where
    sources lists, per other comparison, (dir, batch, groups, timing source). family_of maps this
    study's configs to their families, as main() parsed them."""
    families = list(dict.fromkeys(family_of.values()))
    chosen, sources = {}, []
    for other in others:
        ospec, oreport = load(other)
        if ospec.get("budget") != spec.get("budget"):
            sys.exit(f"study_noise_report: --with {other}: its budget {json.dumps(ospec.get('budget'))} is not this "
                     f"study's {json.dumps(spec.get('budget'))}")
        theirs, batch_of = {}, {}
        for c in ospec["configs"]:
            if c["name"] not in families:
                continue
            got = settings(ospec, c)
            for x in spec["configs"]:
                if family_of[x["name"]] != c["name"]:
                    continue
                want = settings(spec, x)
                diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
                if diff:
                    k = diff[0]
                    sys.exit(f"study_noise_report: --with {other}: group '{c['name']}' trained with {k} = "
                             f"{json.dumps(got.get(k))}, this study's {x['name']} with {json.dumps(want.get(k))}"
                             + (f" (and {len(diff) - 1} more flags differ)" if len(diff) > 1 else ""))
            batch = batch_size(ospec, c)
            if batch is None:
                sys.exit(f"study_noise_report: --with {other}: group '{c['name']}' has no batch-size")
            theirs[c["name"]], batch_of[c["name"]] = c["name"], int(batch)
        if not theirs:
            sys.exit(f"study_noise_report: --with {other}: no group named like a family of this study "
                     f"({', '.join(families)})")
        add = select(other, oreport, theirs, batch_of, strict=False)
        clash = sorted({b for _, b in add} & (taken | {b for _, b in chosen}))
        if clash:
            sys.exit(f"study_noise_report: --with {other}: batch {clash[0]} is already in the table")
        chosen.update(add)
        sources.append((other, sorted({b for _, b in add}), sorted(theirs),
                        (oreport.get("timing") or {}).get("source")))
    return chosen, sources


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the comparison's directory (docs/results/study_noise)")
    ap.add_argument("--reference", default="muon", help="the family every other is paired with (default muon)")
    ap.add_argument("--with", dest="others", action="append", default=[], metavar="DIR",
                    help="another comparison of the same task at another batch size whose groups named FAMILY join "
                         "the table (e.g. docs/results/study_lm, batch 8); repeatable")
    a = ap.parse_args()
    spec, report = load(a.out)

    batch_of, family_of = {}, {}
    for c in spec["configs"]:
        m = re.fullmatch(r"(.+)-b(\d+)", c["name"])
        batch = batch_size(spec, c)
        if not m or batch is None or int(m.group(2)) != int(batch):
            sys.exit(f"study_noise_report: config '{c['name']}' is not named FAMILY-bN with N its batch size ({batch})")
        family_of[c["name"]], batch_of[c["name"]] = m.group(1), int(batch)
    families = list(dict.fromkeys(family_of.values()))
    if a.reference not in families:
        sys.exit(f"study_noise_report: no family '{a.reference}' (families: {', '.join(families)})")

    # The selected config of each group and its finished runs' final losses, by seed; then the
    # groups another comparison (--with) trained at its own batch size.
    chosen = select(a.out, report, family_of, batch_of, strict=True)
    extra, sources = joined(spec, family_of, a.others, set(batch_of.values()))
    chosen.update(extra)
    batches = sorted(set(batch_of.values()) | {b for _, b in extra})

    # The other two readings, per batch (a batch is one comparison): each run's validation loss at
    # the fewest gradient evaluations, and at the shortest training time (steps x ms/step), that any
    # chosen run at that batch reached at its last evaluation, linearly interpolated.
    def finite(x):
        return isinstance(x, (int, float)) and math.isfinite(x)

    point = {}  # (axis, batch) -> x
    for b in batches:
        ev, sec = [], []
        for (fam, bb), ch in chosen.items():
            if bb != b:
                continue
            for seed, e in ch["evals"].items():
                if e:
                    ev.append(e[-1][1])
                    if finite(ch["ms"].get(seed)):
                        sec.append(e[-1][0] * ch["ms"][seed] / 1000.0)
        point[("grad_evals", b)] = min(ev) if ev else None
        point[("seconds", b)] = min(sec) if sec else None
    for (fam, b), ch in chosen.items():
        ch["grad_evals"], ch["seconds"] = {}, {}
        for seed, e in ch["evals"].items():
            x = point[("grad_evals", b)]
            ch["grad_evals"][seed] = at([(g, v) for _, g, v in e], x) if x is not None else None
            x, ms = point[("seconds", b)], ch["ms"].get(seed)
            ch["seconds"][seed] = at([(st * ms / 1000.0, v) for st, _, v in e], x) if x is not None and finite(ms) else None

    rows, pairs = [], []
    for fam in families:
        for b in batches:
            ch = chosen.get((fam, b))
            st = stats(list(ch["loss"].values())) if ch else stats([])
            rows.append({"family": fam, "batch": b, "group": ch["group"] if ch else None,
                         "config": ch["config"] if ch else None, "lr": ch["lr"] if ch else None,
                         "final_val_loss": st,
                         "val_loss_at_equal_grad_evals": stats(list(ch["grad_evals"].values())) if ch else stats([]),
                         "val_loss_at_equal_seconds": stats(list(ch["seconds"].values())) if ch else stats([])})
            if fam == a.reference:
                continue
            ref = chosen.get((a.reference, b))
            pair = {"family": fam, "batch": b}
            for axis, key in AXES:
                diffs = []
                if ch and ref:
                    for seed, x in ch[key].items():
                        y = ref[key].get(seed)
                        if finite(x) and finite(y):
                            diffs.append(x - y)
                d = stats(diffs)
                pair.update({"difference": d, "reading": reading(d)} if axis == "samples" else
                            {f"difference_at_equal_{axis}": d, f"reading_at_equal_{axis}": reading(d)})
            pairs.append(pair)

    # Along training, at equal samples (one batch = one evaluation interval, so the steps coincide).
    along = []
    for fam in families:
        if fam == a.reference:
            continue
        for b in batches:
            ch, ref = chosen.get((fam, b)), chosen.get((a.reference, b))
            g = along_training(ch["evals"], ref["evals"], b) if ch and ref else None
            if g:
                along.append({"family": fam, "batch": b, **g})

    def diff_of(p, axis):
        return p["difference"] if axis == "samples" else p[f"difference_at_equal_{axis}"]

    crossings = []
    for axis, _ in AXES:
        for fam in families:
            if fam == a.reference:
                continue
            pts = [(p["batch"], diff_of(p, axis)) for p in pairs if p["family"] == fam and diff_of(p, axis)["n"] > 0]
            for (b0, d0), (b1, d1) in zip(pts, pts[1:]):
                if (d0["mean"] < 0) != (d1["mean"] < 0):
                    crossings.append({"family": fam, "axis": axis, "between": [b0, b1], "difference": [d0["mean"], d1["mean"]],
                                      "readings": [reading(d0), reading(d1)]})

    budget = spec.get("budget")
    timing = report.get("timing") or {}
    md = ["# The noise question: final validation loss against batch size", "",
          f"Generated by `experiments/study_noise_report.py {a.out}{''.join(' --with ' + d for d in a.others)}` from "
          "`report.json` and `spec.json` there "
          f"(budget {json.dumps(budget)}; each (optimizer, batch) at its chosen lr; 95 % confidence intervals, Student t). "
          "A smaller batch means noisier gradients and more steps for the same samples." + "".join(
              f" Batch {', '.join(map(str, bs))} comes from the comparison in `{d}` (`--with`; its groups "
              f"{', '.join(gs)}, checked to train the same model, data and optimizer settings at the same budget)."
              for d, bs, gs, _ in sources), "",
          "| optimizer | " + " | ".join(f"batch {b}" for b in batches) + " |", "|---|" + "---|" * len(batches)]
    for fam in families:
        cells = []
        for b in batches:
            r = next(x for x in rows if x["family"] == fam and x["batch"] == b)
            cells.append(cell(r["final_val_loss"]) + (f", lr {r['lr']:g}" if r["lr"] is not None else "") +
                         (f" ({r['config']})" if r["config"] not in (None, r["group"]) else ""))
        md.append(f"| {fam} | " + " | ".join(cells) + " |")
    md += ["", f"## Against {a.reference} at the same batch, paired by seed", "",
           f"Each run minus {a.reference}'s run with the same seed and batch; negative = lower loss than {a.reference}. "
           "Three readings of the same runs: at equal samples (the final loss: every run has the same sample budget), "
           "at equal gradient evaluations and at equal seconds. For the last two, each batch has its own point: the fewest "
           "gradient evaluations (the shortest training time, steps x ms/step) that any chosen run at that batch reached "
           "at its last evaluation; every run's validation loss is read there, interpolated linearly between its "
           "evaluations. Seconds: " + (f"timing.json's quiet ms/step ({timing['source']})" if timing.get("source") else
                                       "the runs' own median ms/step (no timing.json)") + "".join(
               f"; batch {', '.join(map(str, bs))}: " + (f"that comparison's timing.json ({t})" if t else
                                                       "that comparison's runs' own median ms/step (no timing.json)")
               for _, bs, _, t in sources) + "."]
    for axis, _ in AXES:
        md += ["", f"At equal {AXIS_TEXT[axis]}" + ("" if axis == "samples" else " (the point per batch: " + ", ".join(
            f"batch {b}: {point[(axis, b)]:.6g}" for b in batches if point[(axis, b)] is not None) + ")") + ":", "",
               "| optimizer | " + " | ".join(f"batch {b}" for b in batches) + " |", "|---|" + "---|" * len(batches)]
        for fam in families:
            if fam == a.reference:
                continue
            cells = []
            for b in batches:
                p = next(x for x in pairs if x["family"] == fam and x["batch"] == b)
                d = diff_of(p, axis)
                cells.append(cell(d, signed=True) + ("" if d["n"] == 0 else f": {reading(d)}"))
            md.append(f"| {fam} | " + " | ".join(cells) + " |")
    md += ["", "## Crossings", ""]
    if crossings:
        for c in crossings:
            md.append(f"- at equal {AXIS_TEXT[c['axis']]}: {c['family']} crosses {a.reference} between batch "
                      f"{c['between'][0]} and {c['between'][1]} "
                      f"(mean paired difference {c['difference'][0]:+.4f} → {c['difference'][1]:+.4f}; "
                      f"{c['readings'][0]} → {c['readings'][1]})")
    else:
        md.append(f"No optimizer's mean paired difference from {a.reference} changes sign across the batch sizes that "
                  "finished, in any of the three readings.")

    md_along = ["", f"## Along training, at equal samples, paired with {a.reference}", "", along_text(a.reference, "seed and batch"), "",
                ALONG_HEADER[0].format(what="optimizer | batch"), "|---" + ALONG_HEADER[1]]
    md_along += [along_row(f"{g['family']} | {g['batch']}", g) for g in along]
    if not along:
        md_along.append("| (no paired runs with evaluations yet) | | | | | | |")

    plots = os.path.join(a.out, "plots")
    os.makedirs(plots, exist_ok=True)
    # The paired difference along training: one line per (optimizer, batch), colour by batch,
    # dash pattern by optimizer.
    others = [f for f in families if f != a.reference]
    drawn = gap_plot(plots, [(f"{g['family']}, batch {g['batch']}", g, COLOURS[batches.index(g["batch"]) % len(COLOURS)],
                              others.index(g["family"])) for g in along],
                     a.reference, "training samples (sequences)")
    with open(os.path.join(plots, "noise_vs_batch.dat"), "w") as f:
        for fam in families:
            f.write(f"# {fam}\n# batch mean ci95\n")
            for r in rows:
                s = r["final_val_loss"]
                if r["family"] == fam and s["n"] > 0:
                    f.write(f"{r['batch']} {s['mean']:.17g} {(s['ci95'] or 0):.17g}\n")
            f.write("\n\n")
    gp = png_terminal("noise_vs_batch.png", 1000) + [
          "set title 'Final validation loss vs batch size at an equal sample budget (mean, 95 % CI over seeds; each at its chosen lr)'",
          "set xlabel 'batch size (sequences per step; smaller = noisier gradients, more steps)'",
          "set ylabel 'final validation loss'", "set logscale x 2", "set grid", "set key top left box opaque",
          "set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05",
          "set xtics (" + ", ".join(f"'{b}' {b}" for b in batches) + ")",
          "plot " + ", \\\n     ".join(f"'noise_vs_batch.dat' index {i} using 1:2:3 with yerrorlines lw 2 pt 7 title '{fam}'"
                                         for i, fam in enumerate(families)),
          "unset output"]
    with open(os.path.join(plots, "noise_vs_batch.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")
    batch_plot = draw(plots, "noise_vs_batch", any(r["final_val_loss"]["n"] > 0 for r in rows))
    gap_line = draw(plots, "gap_vs_samples", drawn > 0)
    plotted = batch_plot.startswith("![")
    md += ["", batch_plot] + md_along + ["", gap_line, ""]
    with open(os.path.join(a.out, "noise.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(a.out, "noise.json"), "w") as f:
        json.dump({"reference": a.reference, "batches": batches,
                   "with": [{"dir": d, "batches": bs, "groups": gs, "timing": t} for d, bs, gs, t in sources],
                   "rows": rows, "paired": pairs, "crossings": crossings,
                   "equal_grad_evals": {str(b): point[("grad_evals", b)] for b in batches},
                   "equal_seconds": {str(b): point[("seconds", b)] for b in batches},
                   "along_training": along,
                   "plot": "plots/noise_vs_batch.png" if plotted else None,
                   "gap_plot": "plots/gap_vs_samples.png" if gap_line.startswith("![") else None}, f, indent=1)
    print(f"study_noise_report: {os.path.join(a.out, 'noise.md')}" + (" (with plot)" if plotted else ""))


if __name__ == "__main__":
    main()
