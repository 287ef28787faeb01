"""`babysit tune`: hyperparameter search with a live table, a report and an exportable best config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import optuna
import typer
from rich.table import Table

from babysit.cli.app import OVERRIDES, app, err, out, user_errors
from babysit.cli.train import DataName, config_from_cli, data_flag
from babysit.config import build_section, load_toml, merge
from babysit.errors import ConfigError
from babysit.io import json_line
from babysit.build import load_data
from babysit.tune.defaults import default_space
from babysit.tune.live import fmt
from babysit.tune.report import write_report
from babysit.tune.results import TuneResult
from babysit.tune.search import TuneSettings
from babysit.tune.session import search
from babysit.tune.store import study_dir


def parse_param_flags(flags: list[str]) -> dict[str, str]:
    """`--param KEY=SPEC` flags into a {key: spec} table."""
    out_specs = {}
    for flag in flags:
        key, sep, spec = flag.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {flag!r} must look like KEY=SPEC, e.g. --param 'train.lr=log_uniform(1e-4, 1)'")
        out_specs[key.strip()] = spec.strip()
    return out_specs


def search_from_cli(path: Optional[Path], params: list[str], flags: dict[str, Any]) -> tuple[dict[str, str], TuneSettings]:
    """The space and settings: search file < --param / setting flags."""
    raw: dict[str, Any] = load_toml(path) if path else {}
    space = raw.pop("space", None)
    if space is not None and not isinstance(space, dict):
        raise ConfigError(f"search file '{path}': [space] must be a table of key = \"range\" lines")
    if space == {}:
        raise ConfigError(f"search file '{path}': the search space is empty; add lines like \"train.lr\" = \"log_uniform(1e-4, 1)\", or drop [space] to search the default space")
    space = space or {}
    space = {**space, **parse_param_flags(params)}
    settings = build_section("tune", TuneSettings, merge(raw, {k: v for k, v in flags.items() if v is not None}))
    return space, settings


def print_result(result: TuneResult, report: Path, export: Optional[Path]) -> None:
    """The best configuration, importances and edge warnings, as tables on stdout."""
    best = result.best
    s = result.summary()
    out.print(f"[bold]study[/] {s['study']} ({s['storage']}): " + ", ".join(f"{n} {k}" for k, n in s["trials"].items()))
    if best is None:
        out.print("[red]no trial completed[/]: see the reasons in the report")
    else:
        table = Table(title=f"best: trial #{best.number}, stage {best.stage}, {best.epochs} epochs, validation accuracy {best.score:.4f}")
        table.add_column("parameter")
        table.add_column("value", justify="right")
        table.add_column("importance", justify="right")
        for key, value in best.values.items():
            weight = result.importance.get(key)
            table.add_row(key, fmt(value), f"{weight:.0%}" if weight is not None else "")
        out.print(table)
    for w in result.warnings:
        out.print(f"[yellow]edge:[/] {w}", highlight=False)
    out.print(f"report: {report}" + (f"\nbest config: {export} (run it with: babysit train --config {export})" if export and best else ""))


@app.command(context_settings=OVERRIDES)
@user_errors
def tune(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Base run config (TOML, as for `babysit train`)."),
    search_file: Optional[Path] = typer.Option(None, "--search", "-s", help=r"Search file: \[tune]-style settings at top level and a \[space] table."),
    param: list[str] = typer.Option([], "--param", "-p", help="A range, KEY=SPEC, e.g. 'train.lr=log_uniform(1e-4, 1)' (repeatable)."),
    data: DataName = None,
    model: Optional[str] = typer.Option(None, "--model", help="Model name: mlp or convnet."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="Optimiser name."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="random (default), grid, tpe or coarse_to_fine."),
    trials: Optional[int] = typer.Option(None, "--trials", help="Trial budget over all stages."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs per trial (coarse stage)."),
    stages: Optional[int] = typer.Option(None, "--stages", help="coarse_to_fine stages."),
    epoch_growth: Optional[float] = typer.Option(None, "--epoch-growth", help="Each stage trains this many times longer."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Trials a stage narrows around (0: a quarter)."),
    carry: Optional[int] = typer.Option(None, "--carry", help="Best configurations carried to the next stage."),
    widen: Optional[bool] = typer.Option(None, "--widen/--no-widen", help="Re-centre a range whose best is at its edge."),
    prune: Optional[str] = typer.Option(None, "--prune", help="none, median or halving."),
    grace: Optional[int] = typer.Option(None, "--grace", help="Epochs a trial trains before the pruner may judge it (default 1)."),
    divergence_factor: Optional[float] = typer.Option(None, "--divergence-factor", help="Stop a trial whose loss exceeds this x its first loss."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seeds the proposals and samplers."),
    mode: str = typer.Option("panda", "--mode", help="panda: one trial at a time here; caviar: worker processes."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Caviar workers (default: one per GPU, else per CPU core); never more than the trials left, the cores and what memory holds."),
    oversubscribe: bool = typer.Option(False, "--oversubscribe", help="Let caviar start more workers than CPU cores (still at most the trials left and what memory holds)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna RDB URL (postgresql://user:pw@host/db) or journal file; default runs/tune/<study>/journal.log."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: derived from the search, so the same command resumes)."),
    export: Optional[Path] = typer.Option(None, "--export", help="Write the best configuration as a TOML run config."),
    report: Optional[Path] = typer.Option(None, "--report", help="HTML report path (default runs/tune/<study>/report.html)."),
    as_json: bool = typer.Option(False, "--json", help="No live table; print the summary as one JSON object on the last line."),
) -> None:
    """Search hyperparameters: random, grid, tpe or coarse_to_fine; re-running the same command resumes it.

    Without --param or a search file it searches learning rate (30x below to 3x above the
    range test's proposal) and weight decay (1e-6..1e-2), both log-uniform.
    """
    if mode not in ("panda", "caviar"):
        raise ConfigError(f"unknown execution mode '{mode}'; choose one of: panda, caviar")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    base = config_from_cli(config, {"data": data_flag(data), "model": {"name": model}, "train": {"optimizer": optimizer}}, ctx.args)
    flags = {
        "strategy": strategy, "trials": trials, "epochs": epochs, "stages": stages, "epoch_growth": epoch_growth,
        "top_k": top_k, "carry": carry, "widen": widen, "prune": prune, "grace": grace, "divergence_factor": divergence_factor,
        "seed": seed,
    }  # fmt: skip
    space, settings = search_from_cli(search_file, param, flags)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = None
    if not space:  # nothing named: the lectures' default space (lr around the range test's proposal, weight decay)
        data = load_data(base.data)
        found = default_space(base, data)
        space = found.space
        err.print(f"default space ({found.source} lr {found.centre:.2g}): " + ", ".join(f"{k} {p}" for k, p in space.items()), highlight=False)
        for note in found.notes:
            err.print(f"[yellow]{note}[/]")
    result = search(base, space, settings, mode=mode, workers=workers, storage=storage, study=study or "", progress=not as_json, data=data, oversubscribe=oversubscribe)
    report_path = write_report(result, report or study_dir(result.search.study, result.search.root) / "report.html")
    if export and result.best is not None:
        result.export(export)
    if not result.finished:
        err.print("[yellow]the search has not finished (another machine may still be working); re-run to continue[/]")
    if as_json:
        print(json_line({**result.summary(), "report": str(report_path), "export": str(export) if export and result.best else None}))
    else:
        print_result(result, report_path, export)
    if result.finished and result.best is None:  # every trial failed: no answer, so not a success
        raise ConfigError(f"no trial of study '{result.search.study}' completed; the reasons are in {report_path} (check the ranges)")
