"""`babysit lab`: list the lecture experiments, or run one and show its numbers and claims."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from babysit.cli.app import OVERRIDES, app, err, out, user_errors
from babysit.config import parse_value
from babysit.errors import ConfigError


def _parse_options(args: list[str]) -> dict[str, object]:
    """`--name value` / `--name=value` pairs into typed keyword options."""
    options: dict[str, object] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument '{arg}'; experiment options look like --epochs 5 (see `babysit lab NAME --help-options`)")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise ConfigError(f"option --{key} needs a value")
            value, i = args[i + 1], i + 1
        options[key.replace("-", "_")] = parse_value(value)
        i += 1
    return options


@app.command(context_settings=OVERRIDES)
@user_errors
def lab(
    ctx: typer.Context,
    name: Optional[str] = typer.Argument(None, help="Experiment to run; omit to list them."),
    out_dir: Path = typer.Option(Path("runs/lab"), "--out", help="Folder for the figures and HTML pages."),
    show_options: bool = typer.Option(False, "--help-options", help="List the experiment's options and defaults."),
) -> None:
    """Reproduce a lecture experiment: `babysit lab` lists them, `babysit lab init --units 200` runs one."""
    from babysit.lab import EXPERIMENTS, run_experiment
    from babysit.lab.result import experiment_options

    if name is None:
        table = Table("experiment", "what it reproduces", title="babysit lab")
        for entry in EXPERIMENTS.entries():
            table.add_row(entry.name, entry.description)
        out.print(table)
        return
    if show_options:
        table = Table("option", "default", title=f"options of `babysit lab {name}`")
        for key, default in experiment_options(name).items():
            table.add_row(f"--{key.replace('_', '-')}", repr(default))
        out.print(table)
        return
    options = _parse_options(ctx.args)
    with err.status(f"running lab experiment '{name}'..."):
        result = run_experiment(name, out_dir=out_dir, **options)
    out.print(f"[bold]{result.title}[/]  ({result.lecture})", highlight=False)
    for t in result.tables:
        table = Table(*t.header, title=t.title)
        for row in t.rows:
            table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
        out.print(table)
    claims = Table("lecture claim", "holds", "evidence", title="claims checked")
    for c in result.claims:
        claims.add_row(c.text, "[green]yes[/]" if c.holds else "[red]NO[/]", c.evidence)
    out.print(claims)
    out.print(f"figures and page: {out_dir / name / 'index.html'}")
