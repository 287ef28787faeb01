"""The live view of a running search (rich, on stderr).

The trial table is read from the study, so panda and caviar look alike. In panda
the view also watches the trial being trained (babysit.watch probes, the light
preset) and shows its latest per-layer record: activation std, dead or saturated
share, and the update/weight ratio the lectures want near 1e-3 (docs/lectures.md §7).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

from babysit.status import RUNNING, WAITING, markup
from babysit.tune.results import TrialRecord, records
from babysit.tune.runner import Search
from babysit.tune.store import StudyHandle
from babysit.watch.probes import Record, Watch, watch

ROWS = 12  # the most recent trials shown
UNFINISHED = (RUNNING, WAITING)


def fmt(value: Any) -> str:
    """A hyperparameter value in 3 significant digits."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_table(search: Search, records: list[TrialRecord], rows: int = ROWS) -> Table:
    """The last `rows` trials, with a title saying how far the search is and the best so far."""
    scored = [r for r in records if r.score is not None]
    best = max(scored, key=lambda r: (r.stage, r.score)) if scored else None
    done = sum(r.status not in UNFINISHED for r in records)
    stage = max((r.stage for r in records if r.status in UNFINISHED), default=max((r.stage for r in records), default=1))
    title = (
        f"{search.study}: {search.settings.strategy}, stage {stage}/{search.settings.num_stages()}, "
        f"{done}/{search.settings.trials} trials done" + (f", best val acc {best.score:.3f} (#{best.number})" if best else "")
    )
    table = Table(title=title, title_justify="left")
    for col in ("#", "stage", "status", *search.space, "epoch", "val acc"):
        table.add_column(col, justify="right" if col not in ("status",) else "left")
    for r in records[-rows:]:
        style = "bold" if best is not None and r.number == best.number else ""
        status = markup(r.status)
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


def probe_table(number: int, record: Record) -> Table:
    """One probe record of the trial being trained: a row per probed layer."""
    table = Table(title=f"trial #{number}, step {record['step']}: probes (update/weight ratio: ~1e-3 is healthy)", title_justify="left")
    for col in ("layer", "act std", "dead / saturated", "update ratio"):
        table.add_column(col, justify="right")
    for name, stats in record["layers"].items():
        share = stats.get("dead_fraction", stats.get("saturated_fraction"))
        ratio = record["params"].get(f"{name}.weight", {}).get("update_ratio")
        table.add_row(name, f"{stats['act_std']:.3g}", "" if share is None else f"{share:.0%}", "" if ratio is None else f"{ratio:.1e}")
    return table


class LiveView:
    """The live view, refreshed at most `hz` times a second; a context manager and (panda) a training callback.

    Args:
        probes: watch each trial trained in this process; pass `callbacks()` to its training.
    """

    def __init__(self, handle: StudyHandle, search: Search, console: Console | None = None, hz: float = 4.0, probes: bool = False) -> None:
        self.handle, self.search = handle, search
        self.console = console or Console(stderr=True)
        self.period = 1.0 / hz
        self._last = 0.0
        self._live: Live | None = None
        self.watch: Watch | None = watch(preset="light", sink=self._on_probe) if probes else None
        self.probe: Record | None = None

    def callbacks(self) -> list[object]:
        """Training callbacks for the trials run in this process: the probes, then this view."""
        return [self.watch, self] if self.watch is not None else [self]

    def on_fit_start(self, state) -> None:
        self.probe = None  # a new trial: the last one's probes no longer apply

    def on_epoch_end(self, state) -> None:
        self.refresh()

    def _on_probe(self, record: Record) -> None:
        self.probe = record
        self.refresh()

    def render(self) -> RenderableType:
        found = records(self.handle.trials())
        table = trial_table(self.search, found)
        running = [r for r in found if r.status == RUNNING]
        if self.probe is None or not running:
            return table
        return Group(table, probe_table(running[-1].number, self.probe))

    def refresh(self) -> None:
        now = time.monotonic()
        if self._live is None or now - self._last < self.period:
            return
        self._last = now
        self._live.update(self.render())

    def __enter__(self) -> LiveView:
        self._live = Live(self.render(), console=self.console, refresh_per_second=4, transient=True)
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __repr__(self) -> str:
        return f"LiveView({self.search.study!r})"
