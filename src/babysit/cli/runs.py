"""`babysit runs`: the run records in a folder, with their status and best metrics."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from babysit.cli.app import app, out, user_errors
from babysit.cli.train import RUNS_DIR
from babysit.io import json_line
from babysit.train.record import RunRecord, list_runs

STATUS_STYLE = {"completed": "green", "diverged": "red", "failed": "red", "interrupted": "yellow", "incomplete": "yellow"}


def run_row(run: RunRecord) -> dict[str, object]:
    """One run as the JSON-ready row `babysit runs` shows."""
    best = run.best("val_accuracy")
    summary = run.summary or {}
    return {
        "name": run.name,
        "status": run.status,
        "epochs": len(run.metrics),
        "best_val_accuracy": best["val_accuracy"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "test_accuracy": summary.get("test_accuracy"),
        "started": run.env.get("start_time", ""),
        "path": str(run.path),
    }


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


@app.command()
@user_errors
def runs(
    runs_dir: Path = RUNS_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per run instead of a table."),
) -> None:
    """List recorded runs with their status ("incomplete": killed or still running) and best metrics."""
    rows = [run_row(r) for r in list_runs(runs_dir)]
    if as_json:
        for row in rows:
            print(json_line(row))
        return
    if not rows:
        out.print(f"no runs in '{runs_dir}' yet; `babysit train` records one there")
        return
    table = Table(title=f"runs in {runs_dir}")
    table.add_column("run", overflow="fold")
    for column in ("status", "epochs", "best val acc (epoch)", "test acc", "started"):
        table.add_column(column)
    for row in rows:
        style = STATUS_STYLE.get(str(row["status"]), "")
        best = f"{_cell(row['best_val_accuracy'])} ({_cell(row['best_epoch'])})" if row["best_epoch"] else "-"
        # "2024-05-01T12:30:00+00:00" -> "2024-05-01 12:30"
        started = str(row["started"])[:16].replace("T", " ")
        table.add_row(str(row["name"]), f"[{style}]{row['status']}[/]", str(row["epochs"]), best, _cell(row["test_accuracy"]), started)
    out.print(table)
