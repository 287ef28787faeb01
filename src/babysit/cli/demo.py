"""`babysit demo`: the convnet on MNIST-1D, set beside the MNIST-1D paper's reference row."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from babysit.cli.app import app, out, user_errors
from babysit.config import build_config
from babysit.build import run

# The recipe `make demo` runs; examples/mnist1d_convnet.toml holds the same settings.
DEMO_CONFIG = {
    "data": {"name": "mnist1d"},
    # Batch norm lets the convnet take Adam at lr 1e-2 (LECTURE_DIGEST §4: higher learning rates).
    "model": {"name": "convnet", "channels": [32, 32, 32], "kernel_size": 5, "activation": "relu", "init": "he", "batchnorm": True},
    "train": {"optimizer": "adam", "lr": 1e-2, "epochs": 100, "batch_size": 100, "seed": 0},
}

# Greydanus (2020), "Scaling down deep learning", MNIST-1D test accuracy.
PAPER_ROW = {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94}


@app.command()
@user_errors
def demo(epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the number of epochs (a quick look).")) -> None:
    """Train the built-in convnet on MNIST-1D and compare with the paper's reference row."""
    raw = {**DEMO_CONFIG, "train": {**DEMO_CONFIG["train"], **({"epochs": epochs} if epochs is not None else {})}}
    cfg = build_config(raw)
    out.print(f"[bold]babysit demo[/]: {cfg.model.name} on {cfg.data.name}, {cfg.train.optimizer} lr={cfg.train.lr}, {cfg.train.epochs} epochs")
    result = run(cfg).result
    table = Table(title="MNIST-1D test accuracy")
    table.add_column("model")
    table.add_column("test accuracy", justify="right")
    for name, acc in PAPER_ROW.items():
        table.add_row(f"{name} (paper)", f"{acc:.0%}")
    table.add_row("[bold]babysit convnet[/]", f"[bold]{result.test_accuracy:.1%}[/]")
    out.print(table)
    out.print(f"{result.epochs} epochs in {result.seconds:.0f}s, status {result.status}")
