"""`babysit train` (a recorded run, or the continuation of one) and `babysit datasets`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from babysit.cli.app import OVERRIDES, app, out, user_errors
from babysit.config import RunConfig, build_config, check_sections, load_toml, merge, parse_overrides
from babysit.data.datasets import DATASETS
from babysit.errors import ConfigError
from babysit.io import json_line
from babysit.status import FINAL
from babysit.train.record import holds_only_checks, load_run, run_holder
from babysit.workflows.recorded import resume_run, start_run

# Most file systems allow 255 bytes per path component.
MAX_NAME_BYTES = 255

# Where run records go unless --runs-dir says otherwise (the environment variable lets a
# test session or a cluster job point every command at one place).
RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", envvar="BABYSIT_RUNS_DIR", help="Folder holding run records.")


# The config shortcuts every run-building command (train, check, doctor) takes.
ConfigFile = Annotated[Optional[Path], typer.Option("--config", "-c", help=r"TOML config with \[data], \[model], \[train] sections.")]
DataName = Annotated[Optional[str], typer.Option("--data", help="Data set name (see `babysit datasets`), or your own .npz / .csv file.")]
DATA_FILES = (".npz", ".csv")  # what the `arrays` data set reads


def data_flag(data: str | None) -> dict[str, Any]:
    """The --data flag as a [data] section: a built-in name, or a .npz / .csv file read by the `arrays` data set."""
    if data is not None and data not in DATASETS and Path(data).suffix.lower() in DATA_FILES:
        return {"name": "arrays", "path": data}
    return {"name": data}
OptimizerName = Annotated[Optional[str], typer.Option("--optimizer", help="Optimiser name: sgd, momentum, adam, ...")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Random seed (same seed, same numbers on the CPU).")]
TensorBoard = Annotated[
    bool, typer.Option("--tensorboard", help="Also write TensorBoard events to RUN_DIR/tensorboard as the run trains (watch.tensorboard).")
]


def shortcuts(
    data: str | None, model: str | dict | None, optimizer: str | None, lr: float | None, epochs: int | None, seed: int | None, tensorboard: bool = False
) -> dict[str, dict[str, Any]]:
    """The shortcut flags as config sections (None: not given); `model` is a name or a whole [model] table."""
    return {
        "data": data_flag(data),
        "model": model if isinstance(model, dict) else {"name": model},
        "train": {"optimizer": optimizer, "lr": lr, "epochs": epochs, "seed": seed},
        "watch": {"tensorboard": True if tensorboard else None},
    }


def config_from_cli(config: Optional[Path], flags: dict[str, dict[str, Any]], extra: list[str]) -> RunConfig:
    """Merge defaults < TOML file < shortcut flags < dotted overrides, then validate."""
    raw: dict[str, Any] = load_toml(config) if config else {}
    check_sections(raw)
    shortcuts = {s: {k: v for k, v in sec.items() if v is not None} for s, sec in flags.items()}
    raw = merge(raw, {s: sec for s, sec in shortcuts.items() if sec})
    raw = merge(raw, parse_overrides(extra))
    return build_config(raw)


def print_result(summary: dict[str, Any], as_json: bool) -> None:
    """The final metrics as a table, or as one JSON object on the last line of stdout."""
    if as_json:
        print(json_line(summary))
        return
    table = Table(title="result", show_header=False)
    for k, v in summary.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    out.print(table)


@app.command(context_settings=OVERRIDES)
@user_errors
def train(
    ctx: typer.Context,
    config: ConfigFile = None,
    data: DataName = None,
    model: Optional[str] = typer.Option(None, "--model", help="Model name: mlp or convnet."),
    optimizer: OptimizerName = None,
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Number of epochs."),
    seed: Seed = None,
    name: Optional[str] = typer.Option(None, "--name", help="Run name: the record goes to RUNS_DIR/NAME (default: data-model-date-time)."),
    runs_dir: Path = RUNS_DIR,
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the killed run in this folder from its last checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on the last line."),
    tensorboard: TensorBoard = False,
) -> None:
    """Train a model, recording the run in RUNS_DIR/NAME (config, metrics, probes, checkpoints).

    Any config key can be overridden as --section.key=value (e.g. --train.lr=3e-4).
    A run whose loss explodes stops as "diverged"; --resume RUN_DIR continues a killed run.
    """
    flags = shortcuts(data, model, optimizer, lr, epochs, seed, tensorboard)
    if resume is not None:
        given = [f"--{k}" for s in flags.values() for k, v in s.items() if v is not None] + (["--config"] if config else []) + ctx.args
        given += ["--name"] if name is not None else []  # only what was typed: `--name=` too, never a name nobody gave
        if given:
            raise ConfigError(f"--resume continues a run with its saved config; drop {', '.join(given)}")
        _check_resumable(resume)
        done = resume_run(resume, progress=not as_json)
    else:
        check_run_target(runs_dir, name)
        cfg = config_from_cli(config, flags, ctx.args)
        fresh = not runs_dir.exists()
        try:
            done = start_run(cfg, runs_dir=runs_dir, name=name, progress=not as_json)
        except BaseException:
            if fresh and runs_dir.is_dir() and not any(runs_dir.iterdir()):
                runs_dir.rmdir()  # a refused run leaves no empty runs folder behind
            raise
    print_result({**done.result.summary(), "run_dir": str(done.record)}, as_json)


def check_run_target(runs_dir: Path, name: str | None) -> None:
    """Refuse, before any work, a runs folder that is a file and a --name that is too long or already taken.

    A taken name is described as it is: a run to --resume only when it can be
    resumed, a completed one as finished, a folder without a run record (what
    `babysit check --out` leaves) as not a run.
    """
    if runs_dir.exists() and not runs_dir.is_dir():
        raise ConfigError(f"--runs-dir '{runs_dir}' is a file, not a folder; pass a folder (it is created when missing)")
    if name is None:
        return
    if not name.strip():
        raise ConfigError("run name is empty; pass a name such as --name digits-lr1e-3, or leave --name out for a generated one")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ConfigError(f"--name is {len(name)} characters; file systems allow at most {MAX_NAME_BYTES}: pick a shorter run name")
    path = runs_dir / name
    if not path.exists() or "/" in name or name in (".", ".."):
        return  # free, or a name the run record itself refuses with its rule
    holder = run_holder(path)
    if holder is not None:
        who = f"another babysit process (pid {holder})" if holder else "another babysit process"
        raise ConfigError(f"run '{path}' is being written by {who}; wait for it to end, or pick another --name")
    if holds_only_checks(path):
        return  # a `babysit check --out` folder: the run is recorded beside its checks
    if not (path / "config.json").is_file():
        raise ConfigError(f"'{path}' exists but is not a run (no config.json, e.g. a `babysit check --out` folder); pick another --name")
    status = load_run(path, probes=False).status
    if status in FINAL:
        raise ConfigError(f"run '{path}' already exists ({status}); pick another --name")
    raise ConfigError(f"run '{path}' already exists ({status}); pick another --name, or continue it with --resume {path}")


def _check_resumable(path: Path) -> None:
    """A folder that holds files but no run record gets a message saying what it is."""
    if path.is_dir() and not (path / "config.json").is_file():
        held = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
        if held:
            shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
            raise ConfigError(f"'{path}' holds no run record (only {shown}); --resume continues a run that `babysit train` recorded, see `babysit runs`")


@app.command()
@user_errors
def datasets() -> None:
    """List the built-in data sets."""
    table = Table("name", "description")
    for entry in DATASETS.entries():
        table.add_row(entry.name, entry.description)
    out.print(table)
