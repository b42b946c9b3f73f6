#!/usr/bin/env python3
"""Prints the comparison table of `scripts/demo.sh` from a `limuon compare` report.json, the plot's
path, and what the table does and does not show; with --best, prints only the run directory of the
config with the lowest final validation loss (for the generated sample).

Usage: demo_summary.py OUT [--best]
"""
import json
import math
import os
import sys


def fmt(x, spec):
    """x formatted by spec, or a dash of the same width when there is no number."""
    width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
    return "-".rjust(width) if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: demo_summary.py OUT [--best]")
    out = sys.argv[1]
    path = os.path.join(out, "report.json")
    try:
        report = json.load(open(path))
    except (OSError, ValueError) as e:
        sys.exit(f"demo: cannot read {path}: {e}")
    runs = {(r["config"], r["lr"]): r for r in report["runs"] if r.get("status") == "done"}
    rows = []
    for c in report["configs"]:
        m = {k: v.get("mean") for k, v in c["metrics"].items()}
        run = runs.get((c["config"], c["lr"]))
        rows.append((c["config"], c["lr"], m, run))
    done = [r for r in rows if r[3] is not None and r[2].get("final_val_loss") is not None
            and math.isfinite(r[2]["final_val_loss"])]
    if "--best" in sys.argv:
        if not done:
            sys.exit("demo: no run finished")
        best = min(done, key=lambda r: r[2]["final_val_loss"])
        print(os.path.join(out, best[3]["dir"]))
        return
    g = report.get("equal_grad_evals")
    samples = report["spec"]["budget"].get("samples")
    print()
    print(f"{'optimizer':20s} {'lr':>6s} {'val loss':>9s} {'val loss':>9s} {'train':>7s} {'opt. state':>10s} {'peak RSS':>9s}")
    print(f"{'':20s} {'':6s} {'@samples':>9s} {'@g.evals':>9s} {'s':>7s} {'MiB':>10s} {'MiB':>9s}")
    for name, lr, m, run in rows:
        state = m.get("optimizer_state_bytes")
        state = state / 2**20 if state is not None and math.isfinite(state) else None
        print(f"{name:20s} {lr:6g} {fmt(m.get('final_val_loss'), '9.4f')} {fmt(m.get('val_loss_at_equal_grad_evals'), '9.4f')} "
              f"{fmt(m.get('wall_s'), '7.1f')} {fmt(state, '10.1f')} {fmt(m.get('peak_rss_mb'), '9.0f')}"
              + ("" if run else "   (not finished: rerun the same command to resume)"))
    print()
    print(f"val loss @samples: after {fmt(samples, '.0f')} training sequences (every optimizer saw the same ones);")
    print(f"val loss @g.evals: after {fmt(g, '.0f')} gradient evaluations of one sequence (LiMuon exact spends two")
    print("per sequence, so it is read halfway through its run); validation loss in nats per byte.")
    overview = os.path.join(out, "plots", "val_loss_overview.png")
    if os.path.exists(overview):
        print(f"plot: {overview} (validation loss vs samples, vs gradient evaluations, vs seconds)")
    print(f"report: {os.path.join(out, 'report.md')}")
    print()
    print("What this shows: one seed of a small byte-level model for a few hundred steps on 2 CPU cores,")
    print("each optimizer at one learning rate (the best measured so far). Differences of a few")
    print("hundredths of a nat are within seed-to-seed noise at this budget, and early training is not")
    print("final quality. What it does not show: which optimizer is better in general. The tuned,")
    print("multi-seed study with confidence intervals is docs/RESULTS.md.")


if __name__ == "__main__":
    main()
