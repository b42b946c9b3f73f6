"""How often MiMuon's two branches fire for a few tau (absolute all-pairs gap, ALGORITHMS.md §4), on a
small problem: an MLP 32-64-64-10 (hidden matrices 64x32, 64x64, 10x64 all to MiMuon) on a synthetic
10-class task (a fixed random teacher), batch 64, 200 steps, lr 0.02, momentum 0.95, no Nesterov,
no shape scale (the defaults), plain torch (the rule written out). Prints, per tau, the fraction of
matrix updates that took the Muon step and the final training loss."""
import math
import torch

def gap(s, rows, cols):
    s = torch.sort(s, descending=True).values
    nz = s[s > max(rows, cols) * torch.finfo(s.dtype).eps * s[0]]
    return (nz[:-1] - nz[1:]).min().item() if nz.numel() > 1 else math.inf

def run(tau, steps=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(32, 10, generator=g)
    dims = [(64, 32), (64, 64), (10, 64)]
    ws = [torch.randn(m, n, generator=g) / math.sqrt(n) for m, n in dims]
    bufs = [torch.zeros(m, n) for m, n in dims]
    muon = total = 0
    gaps = []
    for t in range(steps):
        x = torch.randn(64, 32, generator=g)
        y = (x @ teacher).argmax(1)
        params = [w.clone().requires_grad_(True) for w in ws]
        h = torch.relu(x @ params[0].T)
        h = torch.relu(h @ params[1].T)
        loss = torch.nn.functional.cross_entropy(h @ params[2].T, y)
        loss.backward()
        for i, p in enumerate(params):
            bufs[i] = 0.95 * bufs[i] + 0.05 * p.grad
            U, S, Vh = torch.linalg.svd(bufs[i], full_matrices=False)
            gp = gap(S, *bufs[i].shape)
            gaps.append(gp)
            total += 1
            if S[0] > 0 and gp >= tau:
                ws[i] = ws[i] - 0.02 * (U @ Vh)
                muon += 1
            else:
                ws[i] = ws[i] - 0.02 * bufs[i]
    return muon / total, loss.item(), gaps

if __name__ == "__main__":
    torch.set_default_dtype(torch.float32)
    _, _, gaps = run(0.0)
    q = torch.tensor(gaps).quantile(torch.tensor([0.01, 0.1, 0.5, 0.9, 0.99])).tolist()
    print("gap quantiles (1%, 10%, 50%, 90%, 99%) along the tau = 0 run:", ", ".join(f"{v:.2e}" for v in q))
    for tau in (0.0, 1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2):
        frac, loss, _ = run(tau)
        print(f"tau {tau:8.0e}: Muon step {100 * frac:5.1f}% of matrix updates, final loss {loss:.3f}")
