"""`babysit train` and `babysit datasets`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from babysit.cli.app import OVERRIDES, app, out, user_errors
from babysit.config import RunConfig, build_config, load_toml, merge, parse_overrides
from babysit.data.datasets import DATASETS
from babysit.run import run


def config_from_cli(config: Optional[Path], flags: dict[str, dict[str, Any]], extra: list[str]) -> RunConfig:
    """Merge defaults < TOML file < shortcut flags < dotted overrides, then validate."""
    raw: dict[str, Any] = load_toml(config) if config else {}
    shortcuts = {s: {k: v for k, v in sec.items() if v is not None} for s, sec in flags.items()}
    raw = merge(raw, {s: sec for s, sec in shortcuts.items() if sec})
    raw = merge(raw, parse_overrides(extra))
    return build_config(raw)


def print_result(summary: dict[str, Any], as_json: bool) -> None:
    """The final metrics as a table, or as one JSON object on the last line of stdout."""
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(title="result", show_header=False)
    for k, v in summary.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    out.print(table)


@app.command(context_settings=OVERRIDES)
@user_errors
def train(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config with [data], [model], [train] sections."),
    data: Optional[str] = typer.Option(None, "--data", help="Data set name (see `babysit datasets`)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name: mlp or convnet."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="Optimiser name: sgd, momentum, adam, ..."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Number of epochs."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (same seed, same numbers on the CPU)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on the last line."),
) -> None:
    """Train a model. Any config key can be overridden as --section.key=value (e.g. --train.lr=3e-4)."""
    cfg = config_from_cli(
        config,
        {"data": {"name": data}, "model": {"name": model}, "train": {"optimizer": optimizer, "lr": lr, "epochs": epochs, "seed": seed}},
        ctx.args,
    )
    result = run(cfg, progress=not as_json).result
    print_result(result.summary(), as_json)


@app.command()
@user_errors
def datasets() -> None:
    """List the built-in data sets."""
    table = Table("name", "description")
    for entry in DATASETS.entries():
        table.add_row(entry.name, entry.description)
    out.print(table)
