"""The Typer application and the error boundary every command shares."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from babysit.errors import BabysitError

app = typer.Typer(
    name="babysit",
    help="Train neural networks the CS231n way, and babysit them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

# Commands that accept dotted overrides (--train.lr=3e-4) need click to pass unknown options through.
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}


def user_errors(fn: F) -> F:
    """Turn a BabysitError into one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BabysitError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
