"""The `babysit` command line: one module per command group, all on one Typer app."""

from babysit.cli import auto, blocks, check, demo, doctor, export, lab, report, runs, train, tune  # noqa: F401  (importing registers the commands)
from babysit.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()
