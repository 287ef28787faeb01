"""`babysit auto`: check, range-test, search, re-evaluate and train the best, within one CPU budget."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from babysit.cli.app import OVERRIDES, app, out, user_errors
from babysit.cli.train import DataName, config_from_cli, data_flag
from babysit.errors import ConfigError
from babysit.io import json_line
from babysit.workflows.auto import AutoResult, auto as run_auto, parse_budget, split_text


def print_auto(result: AutoResult) -> None:
    """What did not go as planned first, then the budget as spent, stage by stage, and where the results are."""
    for d in result.deviations:
        out.print(f"[bold red]deviation from the plan:[/] {d}", highlight=False)
    views = f" (mean of {result.test_views} fixed views; one view {result.test_accuracy_single:.4f})" if result.test_accuracy_single is not None else ""
    members = len((result.plan.get("ensemble") or {}).get("members", []))
    views += f", an ensemble of {members} runs (ensemble.pt)" if members > 1 else ""
    table = Table(title=f"babysit auto: {result.status}, test accuracy {result.test_accuracy:.4f}{views}")
    table.add_column("stage")
    table.add_column("CPU minutes", justify="right")
    for stage, seconds in result.stages.items():
        table.add_row(stage, f"{seconds / 60:.2f}")
    table.add_row("[bold]total[/]", f"[bold]{result.cpu_minutes:.2f}[/] ({result.budget_spent:.0%} of the budget)")
    out.print(table)
    out.print(split_text(result.plan), highlight=False)
    for b in result.baselines:
        out.print(f"baseline: {b.name}, test accuracy {b.test_accuracy:.4f} ({b.cpu_s:.2f} CPU-s) beside auto's {result.test_accuracy:.4f}", highlight=False)
    for w in result.warnings:
        out.print(f"[yellow]{w}[/]", highlight=False)
    out.print(f"report: {result.report_path}\nconfig: {result.config_path} (run it with: babysit train --config {result.config_path})")


@app.command(context_settings=OVERRIDES)
@user_errors
def auto(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Base run config (TOML); lr and weight decay are searched."),
    data: DataName = None,
    model: Optional[str] = typer.Option(None, "--model", help="Model family: mlp or convnet (or script with --model.script=FILE)."),
    budget: Optional[str] = typer.Option(None, "--budget", help="CPU time of this process for everything: 10m, 90s, 1h (default: 2 min per core, at most 10, or 10 on a GPU)."),
    fix: bool = typer.Option(False, "--fix", help="Go on past error-level preflight findings, with the range test's learning rate."),
    out_dir: Path = typer.Option(Path("runs/auto"), "--out", help="Output folder: report.html, best.toml, auto.json, the search store."),
    top: int = typer.Option(2, "--top", help="Best configurations re-evaluated at the final horizon."),
    seeds: int = typer.Option(2, "--seeds", help="Seeds each re-evaluated configuration trains on."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seeds the whole procedure: checks, search, re-evaluation and the final run (default: train.seed, 0)."),
    as_json: bool = typer.Option(False, "--json", help="No live line; end with one JSON object on the last line."),
) -> None:
    """The whole procedure, unattended: preflight, LR range test, coarse-to-fine search, re-evaluation, final run, report.

    --data takes a built-in name or your own file: --data mine.npz (arrays x, y) or --data mine.csv
    (a header and a label column), the same as --data arrays --data.path=FILE. On flat features a
    standardised logistic regression is fitted beside the network, in the report and the --json line.
    """
    base = config_from_cli(config, {"data": data_flag(data), "model": {"name": model}}, ctx.args)
    result = run_auto(base, budget_s=_budget(budget) if budget else None, out_dir=out_dir, fix=fix, top=top, seeds=seeds, seed=seed, progress=not as_json)
    if as_json:
        print(json_line(result.summary()))
    else:
        print_auto(result)


def _budget(text: str) -> float:
    """The --budget in seconds; 'nan' or 'inf' parse as numbers but are no budget."""
    seconds = parse_budget(text)
    if not math.isfinite(seconds):
        raise ConfigError(f"--budget must be a finite duration like 10m, 90s or 1h, got {text!r}")
    return seconds
