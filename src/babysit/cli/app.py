"""The Typer application and the error boundary every command shares."""

from __future__ import annotations

import datetime
import errno
import functools
import sys
import os
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from babysit.errors import BabysitError
from babysit.io import USER_ERRNOS, atomic_write_text, store_error
from babysit.secrets import mask, mask_argv
from babysit.signals import exit_code, interrupts_as_exceptions, signal_name

EXIT_USER = 2  # bad input: a config, a flag, a file
EXIT_CRASH = 3  # a bug in babysit: one line and a crash log, never a bare traceback


def crash_dir() -> Path:
    """Where crash logs go: the user's own cache folder ($XDG_CACHE_HOME/babysit/crash, else ~/.cache/babysit/crash).

    Never the shared temp folder, which every user of the machine can read; the
    folder is made owner-only (0700) and each log is 0600.
    """
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "babysit" / "crash"


def write_crash_log(exc: BaseException, argv: Sequence[str] | None = None) -> Path:
    """Write the traceback of an unexpected exception to a fresh owner-only file in `crash_dir()`, atomically.

    The command line and the traceback are masked (`babysit.secrets`): a storage URL's
    password or a token never reaches the file.
    """
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    folder = crash_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)  # also when an older babysit made it with the default mode
    path = folder / f"babysit-crash-{stamp}-{os.getpid()}.log"
    argv = mask_argv(list(sys.argv if argv is None else argv))
    text = f"babysit {' '.join(argv)}\n\n" + mask("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return atomic_write_text(path, text, mode=0o600)


def report_crash(exc: BaseException, argv: Sequence[str] | None = None) -> int:
    """Print one line naming an unexpected exception and where its traceback went; return exit code 3."""
    try:
        where = f"the traceback is in {write_crash_log(exc, argv)}"
    except OSError as e:  # the temp folder itself is unwritable: still one line
        where = f"no crash log written ({e.strerror or e})"
    err.print(f"[bold red]internal error:[/] {escape(type(exc).__name__)}: {escape(mask(str(exc)))[:300]}; {escape(where)}; please report it", highlight=False, soft_wrap=True)
    return EXIT_CRASH


class BoundaryGroup(typer.core.TyperGroup):
    """The one error boundary of the CLI: every way out of a command ends in one line and a known exit code.

    Typer's own usage errors (`--lr fast`) become one line and exit 2 instead of a
    boxed panel; babysit's errors exit 2; anything else is a bug and exits 3 with a
    crash log. Overriding `main` covers both the console script and CliRunner.
    """

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        try:
            with interrupts_as_exceptions():  # SIGTERM takes Ctrl-C's path: record "interrupted", exit 143
                rv = super().main(args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except typer.TyperException as e:  # click's usage errors: bad flag type, unknown command, missing value
            ctx = getattr(e, "ctx", None)
            hint = f" (see `babysit {ctx.info_name} --help`)" if ctx is not None and ctx.parent is not None else " (see `babysit --help`)"
            err.print(f"[bold red]error:[/] {escape(mask(e.format_message()))}{hint}", highlight=False, soft_wrap=True)
            code = EXIT_USER if e.exit_code in (1, 2) else e.exit_code
        except (typer.Abort, KeyboardInterrupt) as e:  # click turns a KeyboardInterrupt outside a command into Abort
            code = report_interrupt(e)
        except BabysitError as e:
            err.print(f"[bold red]error:[/] {escape(mask(str(e)))}", highlight=False, soft_wrap=True)
            code = EXIT_USER
        except OSError as e:  # a path on the user's disk in the way (full, read-only, a file for a folder): theirs to fix
            if e.filename is None and e.errno not in USER_ERRNOS:  # e.g. a full disk inside Optuna's journal write has no file name
                code = report_crash(e, argv)
            else:
                action = "write" if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else "use"
                err.print(f"[bold red]error:[/] {escape(mask(str(store_error(e, action=action))))}", highlight=False, soft_wrap=True)
                code = EXIT_USER
        except Exception as e:  # noqa: BLE001  (the boundary: a bug still gets one line, a log and exit 3)
            code = report_crash(e, argv)
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=BoundaryGroup,
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
            err.print(f"[bold red]error:[/] {escape(mask(str(e)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USER) from None
        except KeyboardInterrupt as e:
            raise typer.Exit(report_interrupt(e)) from None

    return wrapper  # type: ignore[return-value]


def report_interrupt(error: BaseException) -> int:
    """One line saying which signal stopped the command and what was kept (the notes a command added); the exit code 128 + signal."""
    notes = "; ".join(escape(n) for n in getattr(error, "__notes__", []))
    err.print(f"[yellow]interrupted[/] ({signal_name(error)}){': ' + notes if notes else ''}", highlight=False, soft_wrap=True)
    return exit_code(error)
