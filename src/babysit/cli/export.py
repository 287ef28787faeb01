"""`babysit export tensorboard RUN_DIR`: a run record as files another viewer reads."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from babysit.cli.app import app, user_errors

export_app = typer.Typer(help="Export a run record for another viewer (TensorBoard).", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command()
@user_errors
def tensorboard(
    run_dir: Path = typer.Argument(..., help="A run folder, e.g. runs/digits-mlp-20240501-120000 (see `babysit runs`)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for the event files (default: RUN_DIR/tensorboard)."),
) -> None:
    """Write the run's losses, accuracies, lr, per-layer histograms, update ratios and dead/saturated
    fractions as TensorBoard event files, then print the folder (view it with `tensorboard --logdir`).
    """
    from babysit.report.tensorboard import export_tensorboard

    print(export_tensorboard(run_dir, out_dir))
