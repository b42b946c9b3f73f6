"""The Python training example runs end to end and its loss goes down (it checks that itself),
and learning-rate schedulers attached to a hybrid's optimizers run without step-order warnings."""
import subprocess
import sys
import warnings
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[2]
import limuon  # noqa: E402


def test_train_python_example_loss_goes_down():
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "train_python.py"), "--steps", "60"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "val loss" in r.stdout and "routing:" in r.stdout


def test_schedulers_on_hybrid_optimizers_do_not_warn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
    for method in ("limuon", "muon"):
        opt = limuon.hybrid(model, method=method, verbose=False)
        scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5) for o in opt.optimizers]
        x, y = torch.randn(16, 4), torch.randn(16, 1)

        def closure():
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            return loss

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(3):
                opt.step(closure)
                for s in scheds:
                    s.step()
        assert opt.matrix.param_groups[0]["lr"] == 0.02 * 0.5 ** 3
