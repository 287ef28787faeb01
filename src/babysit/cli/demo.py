"""`babysit demo`: `babysit auto` on MNIST-1D within about two CPU-minutes, set beside the MNIST-1D paper's table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from babysit.cli.app import app, out, user_errors
from babysit.cli.auto import print_auto
from babysit.config import build_config
from babysit.workflows.auto import auto, parse_budget

# The base `make demo` hands to `babysit auto` (examples/mnist1d_convnet.toml holds the same settings):
# auto replaces lr by the range test's proposal and searches it with weight decay; epochs follow the budget.
DEMO_CONFIG = {
    "data": {"name": "mnist1d"},
    # Batch norm lets the convnet take Adam at lr 1e-2 (docs/lectures.md: higher learning rates).
    "model": {"name": "convnet", "channels": [32, 32, 32], "kernel_size": 5, "activation": "relu", "init": "he", "batchnorm": True},
    "train": {"optimizer": "adam", "lr": 1e-2, "epochs": 100, "batch_size": 100, "seed": 0},
}
# CPU seconds for auto: with loading and imports, `make demo` ends within about two CPU-minutes.
DEMO_BUDGET = "100s"

# Greydanus (2020), "Scaling down deep learning", MNIST-1D test accuracy.
PAPER_ROW = {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "human": 0.96}


@app.command()
@user_errors
def demo(
    budget: str = typer.Option(DEMO_BUDGET, "--budget", help="CPU time for `babysit auto` (a quick look: 20s)."),
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder of the auto run."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seeds the search's proposals."),
) -> None:
    """Babysit the convnet on MNIST-1D with `babysit auto` and compare with the paper's table."""
    cfg = build_config(DEMO_CONFIG)
    seconds = parse_budget(budget)
    out.print(f"[bold]babysit demo[/]: babysit auto, {cfg.model.name} on {cfg.data.name}, {seconds:.0f} CPU-seconds")
    result = auto(cfg, budget_s=seconds, out_dir=out_dir, seed=seed or 0)
    print_auto(result)
    table = Table(title="MNIST-1D test accuracy")
    table.add_column("model")
    table.add_column("test accuracy", justify="right")
    for name, acc in PAPER_ROW.items():
        table.add_row(f"{name} (paper)", f"{acc:.0%}")
    table.add_row("[bold]babysit auto convnet[/]", f"[bold]{result.test_accuracy:.1%}[/]")
    if result.test_accuracy_single is not None:  # the paper's rows are one view each
        table.add_row(f"babysit auto convnet, one view (no averaging over {result.test_views} shifts)", f"{result.test_accuracy_single:.1%}")
    out.print(table)
    out.print(f"report: {result.report_path}")
