"""`babysit report RUN_DIR`: the run's HTML report (self-contained, no network) and a terminal summary."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from babysit.cli.app import app, out, user_errors
from babysit.report.run_report import run_report


@app.command()
@user_errors
def report(
    run_dir: Path = typer.Argument(..., help="A run folder, e.g. runs/digits-mlp-20240501-120000 (see `babysit runs`)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Where to write the HTML file (default: RUN_DIR/report.html)."),
    per_class: bool = typer.Option(True, "--per-class/--no-per-class", help="Rebuild the data and best model for per-class accuracy."),
) -> None:
    """Write one self-contained HTML report of a recorded run: findings first, then curves and per-layer plots.

    Reads the run record and, when present, RUN_DIR/check.json (from `babysit check --out RUN_DIR`
    or `babysit doctor`). Prints a summary, then the report's path as the last line. Opens nothing.
    """
    built = run_report(run_dir, per_class=per_class)
    path = built.write(out_file)
    built.print(out)
    print(path)
