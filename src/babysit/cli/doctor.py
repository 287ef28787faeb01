"""`babysit doctor [MODEL_SCRIPT]`: preflight, a short probed run, the diagnosis and the report, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from babysit.checks.base import CheckSettings
from babysit.cli.app import OVERRIDES, app, err, out, user_errors
from babysit.cli.train import RUNS_DIR, ConfigFile, DataName, OptimizerName, Seed, TensorBoard, config_from_cli, shortcuts
from babysit.workflows.doctor import doctor as run_doctor
from babysit.errors import ConfigError
from babysit.io import atomic_write_json
from babysit.workflows.repair import RepairRound

# Where `doctor --fix` writes its rounds (in the last look's run folder).
REPAIR_FILE = "repair.json"

# The short run's default length: enough epochs for the curves to have a shape, still seconds on small data.
DOCTOR_EPOCHS = 5


def split_script(tokens: list[str]) -> tuple[str | None, list[str]]:
    """MODEL_SCRIPT and the dotted overrides among the extra command-line tokens, in their order.

    An override is `--section.key=value` or `--section.key value`; any other token is the script.
    """
    scripts, overrides, i = [], [], 0
    while i < len(tokens):
        take = (1 if "=" in tokens[i] else 2) if tokens[i].startswith("--") else 0
        if take:
            overrides += tokens[i : i + take]
            i += take
        else:
            scripts.append(tokens[i])
            i += 1
    if len(scripts) > 1:
        raise ConfigError(f"give one MODEL_SCRIPT, got {len(scripts)}: {', '.join(scripts)}")
    return (scripts[0] if scripts else None), overrides


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def repair_table(rounds: list[RepairRound]) -> Table:
    """The before/after table of `doctor --fix`: one row per round (cause, change, validation accuracy and errors before and after)."""
    table = Table(title="repair (before -> after)")
    for column in ("round", "root cause", "change", "val accuracy", "error-level causes", "helped"):
        table.add_column(column)
    for r in rounds:
        errors = f"{', '.join(r.before['errors']) or 'none'} -> {', '.join(r.after['errors']) or 'none'}"
        accuracy = f"{_pct(r.before['val_accuracy'])} -> {_pct(r.after['val_accuracy'])}"
        table.add_row(str(r.round), r.cause, escape(r.change), accuracy, errors, "yes" if r.helped else "[bold red]no[/]")
    return table


def experiments_table(experiments: list) -> Table:
    """Which candidate cause a look with its fix confirmed: cause, change, validation accuracy before -> after, verdict, CPU seconds."""
    table = Table(title="root cause by experiment (one look per candidate)")
    for column in ("cause tested", "change", "val accuracy", "verdict", "CPU s"):
        table.add_column(column)
    for e in experiments:
        style = {"confirmed": "bold green", "helped": "green", "refuted": "dim"}[e.verdict]
        table.add_row(e.rule, escape(e.change), f"{_pct(e.baseline)} -> {_pct(e.val_accuracy)}", f"[{style}]{e.verdict}[/]", f"{e.cpu_seconds:.1f}")
    return table


@app.command(context_settings=OVERRIDES)
@user_errors
def doctor(
    ctx: typer.Context,
    script: Optional[str] = typer.Argument(
        None, help="Python file defining build_model(input_shape, num_classes) -> nn.Module ('path.py:function' for another name)."
    ),
    config: ConfigFile = None,
    data: DataName = None,
    model: Optional[str] = typer.Option(None, "--model", help="A built-in model (mlp, convnet) instead of MODEL_SCRIPT."),
    optimizer: OptimizerName = None,
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    epochs: int = typer.Option(DOCTOR_EPOCHS, "--epochs", help="Epochs of the short training run (a look, not the real training)."),
    seed: Seed = None,
    name: Optional[str] = typer.Option(None, "--name", help="Run name: the record goes to RUNS_DIR/NAME (default: data-model-date-time)."),
    runs_dir: Path = RUNS_DIR,
    gradcheck: bool = typer.Option(False, "--gradcheck", help="Also run the numerical gradient check of user-defined modules."),
    fix: bool = typer.Option(False, "--fix", help="Apply the top root cause's fix, look again and compare (up to 3 rounds)."),
    tensorboard: TensorBoard = False,
) -> None:
    """Check a model, train it briefly with probes, diagnose it and write the report; prints the report's path.

    The model is MODEL_SCRIPT (your own nn.Module) or --model (built-in), with the same flags,
    --config and --section.key=value overrides as `babysit train`. Exit code 1 if an error-level
    problem is found. Opens nothing: the last line of stdout is the path of report.html.
    With --fix the top error-level root cause is repaired (learning rate, initialisation,
    standardisation, regularization, capacity), the look repeated and a before/after table
    printed; repair.json in the last look's folder holds the rounds.
    """
    # click hands the first unknown token to MODEL_SCRIPT, even an override (--train.lr=0.1 net.py):
    # rejoined in their order, the tokens split into the script and the overrides again.
    script, extra = split_script(([script] if script is not None else []) + ctx.args)
    if script is not None and model is not None:
        raise ConfigError(f"give a MODEL_SCRIPT or --model, not both (got '{script}' and --model {model})")
    model_flags = {"name": "script", "script": str(Path(script).resolve())} if script is not None else {"name": model}
    cfg = config_from_cli(config, shortcuts(data, model_flags, optimizer, lr, epochs, seed, tensorboard), extra)
    done = run_doctor(cfg, runs_dir=runs_dir, name=name, settings=CheckSettings(gradcheck=gradcheck), fix=fix)
    done.report.print(out)
    if done.experiments:
        out.print(experiments_table(done.experiments))
    if fix:
        out.print(repair_table(done.repairs))
        out.print(f"repair: {escape(done.stopped)}")
        atomic_write_json(done.run_dir / REPAIR_FILE, {"rounds": [r.to_dict() for r in done.repairs], "stopped": done.stopped})
    err.print(f"run record: {done.run_dir}")
    print(done.report_path)
    if done.report.status == "error":
        raise typer.Exit(1)
