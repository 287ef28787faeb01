"""The live table of a running search (rich, on stderr), read from the study so panda and caviar look alike."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from babysit.tune.results import TrialRecord, records
from babysit.tune.runner import Search
from babysit.tune.store import StudyHandle

ROWS = 12  # the most recent trials shown
STYLE = {"complete": "green", "diverged": "red", "pruned": "yellow", "failed": "red", "running": "cyan", "waiting": "dim"}


def fmt(value: Any) -> str:
    """A hyperparameter value in 3 significant digits."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_table(search: Search, records: list[TrialRecord], rows: int = ROWS) -> Table:
    """The last `rows` trials, with a title saying how far the search is and the best so far."""
    scored = [r for r in records if r.score is not None]
    best = max(scored, key=lambda r: (r.stage, r.score)) if scored else None
    done = sum(r.status not in ("running", "waiting") for r in records)
    stage = max((r.stage for r in records if r.status in ("running", "waiting")), default=max((r.stage for r in records), default=1))
    title = (
        f"{search.study}: {search.settings.strategy}, stage {stage}/{search.settings.num_stages()}, "
        f"{done}/{search.settings.trials} trials done" + (f", best val acc {best.score:.3f} (#{best.number})" if best else "")
    )
    table = Table(title=title, title_justify="left")
    for col in ("#", "stage", "status", *search.space, "epoch", "val acc"):
        table.add_column(col, justify="right" if col not in ("status",) else "left")
    for r in records[-rows:]:
        style = "bold" if best is not None and r.number == best.number else ""
        status = f"[{STYLE.get(r.status, '')}]{r.status}[/]"
        # A running trial's progress comes from the epochs it has reported so far.
        acc = r.score if r.score is not None else (r.reported[max(r.reported)] if r.reported else None)
        table.add_row(
            str(r.number),
            str(r.stage),
            status,
            *(fmt(r.values[k]) if k in r.values else "" for k in search.space),
            f"{len(r.reported)}/{r.epochs}",
            f"{acc:.3f}" if acc is not None else "",
            style=style,
        )
    return table


class LiveView:
    """A rich Live table refreshed at most `hz` times a second; use as a context manager."""

    def __init__(self, handle: StudyHandle, search: Search, console: Console | None = None, hz: float = 4.0) -> None:
        self.handle, self.search = handle, search
        self.console = console or Console(stderr=True)
        self.period = 1.0 / hz
        self._last = 0.0
        self._live: Live | None = None

    def refresh(self) -> None:
        now = time.monotonic()
        if self._live is None or now - self._last < self.period:
            return
        self._last = now
        self._live.update(trial_table(self.search, records(self.handle.trials())))

    def __enter__(self) -> LiveView:
        self._live = Live(trial_table(self.search, records(self.handle.trials())), console=self.console, refresh_per_second=4, transient=True)
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __repr__(self) -> str:
        return f"LiveView({self.search.study!r})"
