"""`babysit check`: the preflight checks on a configured model and data set, as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from babysit.checks.base import CheckSettings
from babysit.checks.preflight import check as run_checks
from babysit.cli.app import OVERRIDES, app, err, out, user_errors
from babysit.cli.train import ConfigFile, DataName, OptimizerName, Seed, config_from_cli, shortcuts
from babysit.errors import ConfigError
from babysit.io import json_line
from babysit.build import load_data, model_from_config


@app.command(context_settings=OVERRIDES)
@user_errors
def check(
    ctx: typer.Context,
    config: ConfigFile = None,
    data: DataName = None,
    model: Optional[str] = typer.Option(None, "--model", help="Model name: mlp or convnet."),
    optimizer: OptimizerName = None,
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate to judge."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Number of epochs (kept for config parity with train)."),
    seed: Seed = None,
    gradcheck: bool = typer.Option(False, "--gradcheck", help="Also run the numerical gradient check of user-defined modules."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for check.json and lr_range.png (a run folder: `babysit report` shows them)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object on the last line."),
) -> None:
    """Run the preflight checks (loss at init, tiny overfit, LR range test, ...). Exit code 1 if a check fails.

    Takes the same flags, --config and --section.key=value overrides as `babysit train`.
    """
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out '{out_dir}' is a file, not a folder; pass a folder for check.json and lr_range.png")
    cfg = config_from_cli(
        config,
        shortcuts(data, model, optimizer, lr, epochs, seed),
        ctx.args,
    )
    dataset = load_data(cfg.data)
    net = model_from_config(cfg.model, dataset, seed=cfg.train.seed)
    report = run_checks(net, dataset, cfg.train, settings=CheckSettings(gradcheck=gradcheck), progress=not as_json)
    written = report.save(out_dir) if out_dir else []
    if as_json:
        print(json_line(report.to_dict()))
    else:
        report.print(out)
        if report.suggested_lr is not None:
            out.print(f"suggested learning rate: [bold]{report.suggested_lr:.2g}[/] (configured {cfg.train.lr:g})")
        for path in written:
            err.print(f"wrote {path}")
    if report.status == "fail":
        raise typer.Exit(1)
