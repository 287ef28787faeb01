"""`babysit runs`: the run records in a folder, with their status and best metrics.

A damaged folder (a record file cut short or not JSON, config.json missing, a file
that cannot be read) never hides the others: it is listed as "damaged" with what
is wrong, and every readable run is listed as usual.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from babysit import status
from babysit.cli.app import app, out, user_errors
from babysit.cli.train import RUNS_DIR
from babysit.errors import StoreError
from babysit.io import json_line, loads_json
from babysit.train.record import RunRecord, load_run

# A folder holding any of these is a run record (others, like runs/tune/, are not runs).
RECORD_FILES = ("config.json", "env.json", "metrics.jsonl", "probes.jsonl", "events.jsonl", "summary.json", "checkpoints")
JSON_FILES = ("config.json", "env.json", "summary.json")
JSONL_FILES = ("metrics.jsonl", "events.jsonl")


def damage(path: Path) -> str | None:
    """What is wrong with a run folder's record files, in a few words; None when they read back.

    Checks what a listing reads (not probes.jsonl, the largest file): config.json
    present, the JSON files whole objects, every line of the JSON-lines files but
    a last one cut by a kill a JSON object.
    """
    if not (path / "config.json").is_file():
        return "config.json is missing (the run was killed before it started, or the file was removed)"
    for name in (*JSON_FILES, *JSONL_FILES):
        file = path / name
        if not file.is_file():
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            return f"{name} cannot be read ({getattr(e, 'strerror', None) or type(e).__name__})"
        if name in JSON_FILES:
            try:
                value = loads_json(text)
            except json.JSONDecodeError as e:
                cut = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")  # the text stops mid-value
                return f"{name} is truncated (cut at character {len(text)})" if cut else f"{name} is not valid JSON (line {e.lineno})"
            if not isinstance(value, dict):
                return f"{name} holds {type(value).__name__}, not a JSON object"
            continue
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                ok = isinstance(loads_json(line), dict)
            except json.JSONDecodeError:
                ok = i == len(lines) - 1  # a last line cut by a kill is skipped by the reader
            if not ok:
                return f"{name} line {i + 1} is not a JSON object"
    return None


def scan_runs(runs_dir: Path) -> tuple[list[RunRecord], dict[Path, str]]:
    """The readable runs under `runs_dir` (oldest first) and the damaged folders with what is wrong."""
    if runs_dir.exists() and not runs_dir.is_dir():
        raise StoreError(f"--runs-dir '{runs_dir}' is a file, not a folder; pass the folder that holds the runs")
    if not runs_dir.is_dir():
        return [], {}
    try:
        folders = sorted(d for d in runs_dir.iterdir() if d.is_dir())
    except OSError as e:
        raise StoreError(f"cannot list '{runs_dir}' ({e.strerror}); check its permissions") from None
    runs, damaged = [], {}
    for d in folders:
        try:
            if not any((d / f).exists() for f in RECORD_FILES):
                continue  # not a run (runs/tune/ holds tune studies)
            problem = damage(d)
            if problem is None:
                run = load_run(d, probes=False)
                run_row(run)  # every field a listing shows must read back
                runs.append(run)
                continue
        except OSError as e:  # a folder that cannot be entered
            problem = f"cannot be read ({e.strerror})"
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # well-formed JSON with the wrong contents
            problem = f"unexpected contents ({type(e).__name__}: {e})"
        damaged[d] = problem
    runs.sort(key=lambda r: (str(r.env.get("start_time", "")), r.name))
    return runs, damaged


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
    """List recorded runs with their status ("incomplete": killed or still running) and best metrics.

    A damaged run folder is listed as "damaged" with what is wrong; the others are listed as usual.
    """
    found, damaged = scan_runs(runs_dir)
    rows = [run_row(r) for r in found]
    broken = [{"name": d.name, "status": status.DAMAGED, "problem": why, "path": str(d)} for d, why in damaged.items()]
    if as_json:
        for row in rows + broken:
            print(json_line(row))
        return
    if not rows and not broken:
        out.print(f"no runs in '{runs_dir}' yet; `babysit train` records one there")
        return
    table = Table(title=f"runs in {runs_dir}")
    table.add_column("run", overflow="fold")
    for column in ("status", "epochs", "best val acc (epoch)", "test acc", "started"):
        table.add_column(column)
    for row in rows:
        best = f"{_cell(row['best_val_accuracy'])} ({_cell(row['best_epoch'])})" if row["best_epoch"] else "-"
        # "2024-05-01T12:30:00+00:00" -> "2024-05-01 12:30"
        started = str(row["started"])[:16].replace("T", " ")
        table.add_row(escape(str(row["name"])), status.markup(str(row["status"])), str(row["epochs"]), best, _cell(row["test_accuracy"]), started)
    for row in broken:
        table.add_row(escape(str(row["name"])), status.markup(status.DAMAGED), "-", "-", "-", "-")
    out.print(table)
    for row in broken:
        out.print(f"[red]damaged:[/] {escape(row['path'])}: {escape(row['problem'])}", highlight=False, soft_wrap=True)
