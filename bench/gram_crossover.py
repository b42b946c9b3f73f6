"""Where Gram Newton-Schulz starts to beat the plain loop: times ns5 and the Gram form (forced with
--gram-min-aspect 1) in one `limuon bench orth` run per shape, over aspect ratios n/m at fixed m, and
prints the measured time ratio next to the flop-model one, (4r + 34) / (20r + 10) for r = n/m.

    python bench/gram_crossover.py --bin build-gram/limuon [--m 512] [--aspects 1,1.25,...] [--threads 2]

The crossover is the smallest aspect with a measured ratio below 1; kGramNsMinAspect (orth.h) is set
from it. Times on a shared machine are noisy: repeat the run and read the ratios, not the ms.
"""
import argparse
import json
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/limuon")
    ap.add_argument("--m", type=int, default=512)
    ap.add_argument("--aspects", default="1,1.25,1.5,1.75,2,3,4")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--coefficients", default="ns5", choices=["ns5", "polar_express"])
    ap.add_argument("--repeats", default="7")
    ap.add_argument("--threads", default=None)
    a = ap.parse_args()
    shapes = [f"{a.m}x{round(a.m * float(r))}" for r in a.aspects.split(",")]
    cmd = [a.bin, "bench", "orth", "--shape", ",".join(shapes), "--method", f"ns5,gram_ns:{a.coefficients}",
           "--gram-min-aspect", "1", "--dtype", a.dtype, "--repeats", a.repeats, "--json"]
    if a.threads:
        cmd += ["--threads", a.threads]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {r.stderr}")
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    print(f"| shape | n/m | ns5 ms | gram_ns:{a.coefficients} ms | measured ratio | flop-model ratio | polar err ns5 / gram |")
    print("|---|---|---|---|---|---|---|")
    crossover = None
    for shape in shapes:
        ns5 = next(x for x in rows if x["shape"] == shape and x["label"] == "ns5")
        gram = next(x for x in rows if x["shape"] == shape and x["method"] == "gram_ns")
        m, n = map(int, shape.split("x"))
        asp = n / m
        model = (4 * asp + 34) / (20 * asp + 10)
        # Both rows against the same-run ns5 reference timed first for this shape.
        ratio = gram["median_ms"] / ns5["median_ms"]
        if ratio < 1 and crossover is None:
            crossover = asp
        print(f"| {shape} | {asp:.2f} | {ns5['median_ms']:.2f} | {gram['median_ms']:.2f} | {ratio:.3f} | {model:.3f} | "
              f"{ns5['polar_rel_err']:.4g} / {gram['polar_rel_err']:.4g} |")
    print(f"\nthreads {rows[0]['threads']}; first aspect with gram faster: {crossover}")


if __name__ == "__main__":
    main()
