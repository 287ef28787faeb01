"""Every status babysit writes, declared once: a fit's, a run record's and a search trial's.

One vocabulary, three subsets of it:

    FIT      what `fit` returns and a trial's run ends with: completed, stopped, diverged, pruned
    RUN      what a run record's summary.json holds: FIT, interrupted (Ctrl-C, SIGTERM) or failed
    TRIAL    what `babysit tune` reports of a trial: FIT, failed, running or waiting

A producer refuses a status outside its subset (`check`: a bug in babysit, not a
user's error). A reader of a record on disk maps anything it does not know to
"unknown" (`read`), and never builds rich markup from the recorded text: `style`
gives the markup's style from the declaration, and the text shown is the
declared name, so a record cannot inject markup into the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Status:
    """One status: its name (what files hold), what it means, and its terminal style."""

    name: str
    means: str
    style: str

    def __str__(self) -> str:
        return self.name


STATUSES: dict[str, Status] = {}


def _declare(name: str, means: str, style: str) -> str:
    if name in STATUSES:
        raise ValueError(f"status {name!r} is declared twice")
    STATUSES[name] = Status(name, means, style)
    return name


RUNNING = _declare("running", "training now", "cyan")
WAITING = _declare("waiting", "a trial queued and not yet claimed by a worker", "dim")
COMPLETED = _declare("completed", "trained every planned epoch", "green")
STOPPED = _declare("stopped", "stopped early by a rule (early stopping, a budget)", "yellow")
DIVERGED = _declare("diverged", "stopped because the loss became NaN/inf or exceeded its divergence factor", "red")
PRUNED = _declare("pruned", "a trial stopped by the search's pruner", "yellow")
INTERRUPTED = _declare("interrupted", "stopped by Ctrl-C or SIGTERM; it can be resumed", "yellow")
FAILED = _declare("failed", "ended by an error", "red")
INCOMPLETE = _declare("incomplete", "a run record without a summary: killed, or still running", "yellow")
DAMAGED = _declare("damaged", "a run folder whose record files cannot be read", "red")
UNKNOWN = _declare("unknown", "a status this version of babysit does not declare (read from disk)", "magenta")

FIT = frozenset({COMPLETED, STOPPED, DIVERGED, PRUNED})
RUN = FIT | {INTERRUPTED, FAILED}
TRIAL = FIT | {FAILED, RUNNING, WAITING}
# A run that cannot be continued: it trained to its end, or resuming would repeat its divergence.
FINAL = frozenset({COMPLETED, DIVERGED})


def check(value: str, allowed: frozenset[str], what: str) -> str:
    """`value` when `allowed` declares it; a ValueError otherwise (a producer writing an undeclared status is a bug)."""
    if value not in allowed:
        raise ValueError(f"{what} status must be one of {', '.join(sorted(allowed))}, got {value!r}")
    return value


def read(value: object, allowed: frozenset[str]) -> str:
    """A status read back from disk: itself when `allowed` declares it, else "unknown"."""
    return value if isinstance(value, str) and value in allowed else UNKNOWN


def style(value: str) -> str:
    """The rich style of a declared status ("" for anything else)."""
    found = STATUSES.get(value)
    return found.style if found is not None else ""


def markup(value: str) -> str:
    """Rich markup showing a status: a declared name in its style, anything else as "unknown"."""
    found = STATUSES.get(value, STATUSES[UNKNOWN])
    return f"[{found.style}]{found.name}[/]"
