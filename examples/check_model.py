"""Check your own model before training: `bs.check` runs the lectures' sanity checks on copies of it.

    python examples/check_model.py
"""

import torch
from torch import nn

import babysit as bs


class SmallNet(nn.Module):
    """Any nn.Module mapping a batch to class scores works; this one forgot nothing."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def my_evaluation(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Your evaluation code; the eval_mode check tests that it switches off dropout and batch-norm updates."""
    model.eval()
    with torch.no_grad():
        return model(x)


torch.manual_seed(0)
data = bs.prepare(bs.load_dataset("digits"))
report = bs.check(SmallNet(), data, bs.Recipe(optimizer="adam", lr=1e-3), eval_fn=my_evaluation)
report.print()  # one row per check: pass / warn / fail, the numbers, the fix
print(f"status: {report.status}, suggested learning rate: {report.suggested_lr:.2g}")
for finding in report.findings:  # errors first, upstream causes before their symptoms
    print(f"{finding.severity}: {finding.title} -> {finding.fix}")
