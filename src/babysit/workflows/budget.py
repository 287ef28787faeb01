"""`auto`'s budget: the CPU clock, the guard that stops a stage at its share, and the plan of run lengths.

The plan is made from what a look at the learning curve measured (the calibration:
the base config trained as the final run will pay it, probes and records on, at a
constant rate until the validation loss stops improving, docs/lectures.md: "first
train without decay, look at the curve, then decide where to decay"):

- `per_epoch_s`, the steady cost of one recorded epoch (the median of its epochs
  after the first), and `fixed_s`, what a recorded run costs besides its epochs
  (building, checks of the record, the first epoch's start-up);
- `useful_epochs`, the epoch of the lowest validation loss when the curve stopped
  improving within the look (None when it was still improving: longer may pay).

A run is never planned longer than the curve says training pays: the horizon of the
re-evaluation is at most `useful_epochs` and the final run at most FINAL_FACTOR times
it, so 400 rows do not get thousands of epochs; the budget that frees buys more
re-evaluation seeds (a ranking with less noise) instead.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from babysit.errors import ConfigError
from babysit.status import STOPPED

FINAL_FACTOR = 2  # the final run trains this many times the re-evaluation's horizon


def cpu_seconds() -> float:
    """CPU seconds this process has used (all its threads): the clock the budget is measured on."""
    return time.process_time()


def default_budget_s() -> float:
    """10 minutes on a GPU; on a CPU 2 CPU-minutes per core, at most 10 (a 2-core laptop: 4 minutes)."""
    if torch.cuda.is_available():
        return 600.0
    return min(600.0, 120.0 * (os.cpu_count() or 1))


def parse_budget(text: str) -> float:
    """'10m', '90s', '1h' or plain seconds -> seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    try:
        seconds = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise ConfigError(f"--budget {text!r} must be a duration like 10m, 90s or 1h") from None
    if seconds <= 0:
        raise ConfigError(f"--budget must be positive, got {text!r}")
    return seconds


class BudgetGuard:
    """Stops training at the next batch once the CPU clock passes `deadline` (seconds of `cpu_seconds`)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False

    def on_batch_end(self, state: Any) -> None:
        if cpu_seconds() >= self.deadline:
            self.fired = True
            state.request_stop(STOPPED, "the auto budget of this stage is spent")


class EpochClock:
    """The CPU clock at the start of a fit and at each epoch's end: what each epoch cost."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_fit_start(self, state: Any) -> None:
        self.marks = [cpu_seconds()]

    def on_epoch_end(self, state: Any) -> None:
        self.marks.append(cpu_seconds())

    @property
    def epochs(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


@dataclass(frozen=True)
class Calibration:
    """What the look at the curve measured: a recorded epoch's steady cost, a recorded run's fixed cost, the useful length."""

    per_epoch_s: float
    fixed_s: float
    epochs: int  # complete epochs the look trained
    useful_epochs: int | None  # epoch of the lowest validation loss once it stopped improving; None: still improving

    @classmethod
    def measure(cls, total_s: float, clock: EpochClock, history: list[dict[str, Any]], plateaued: bool) -> Calibration:
        """From the look's total CPU seconds, its epoch clock and history, and whether early stopping ended it."""
        costs = clock.epochs
        steady = costs[1:] or costs  # the first epoch carries the start-up costs
        per_epoch = max(statistics.median(steady) if steady else total_s, 1e-4)
        fixed = max(0.0, total_s - per_epoch * len(costs))
        useful = None
        if plateaued and history:
            useful = int(min(history, key=lambda r: r["val_loss"] if math.isfinite(r["val_loss"]) else math.inf)["epoch"])
        return cls(per_epoch, fixed, len(costs), useful)

    def run_cost(self, epochs: int) -> float:
        """CPU seconds a recorded run of `epochs` epochs is expected to cost."""
        return self.fixed_s + epochs * self.per_epoch_s

    def epochs_for(self, seconds: float) -> int:
        """The most epochs a recorded run can train in `seconds` (0 when not even one)."""
        return max(0, int((seconds - self.fixed_s) / self.per_epoch_s))


@dataclass(frozen=True)
class Rest:
    """How the CPU left after the search is spent: re-evaluation runs of `horizon` epochs on `seeds` seeds, then the final run."""

    horizon: int
    seeds: int
    final_epochs: int
    capped: bool  # the curve, not the budget, set the length


def plan_rest(rest_s: float, bare_epoch_s: float, cal: Calibration, top: int, seeds: int) -> Rest:
    """Split `rest_s` CPU seconds between `top` x `seeds` bare re-evaluation runs of h epochs and one recorded final run of FINAL_FACTOR h.

    Solves top*seeds*h*bare + fixed + FINAL_FACTOR*h*recorded = rest for h; caps h at
    the calibration's useful epochs and then spends what the cap frees on more seeds.
    """
    room = max(0.0, rest_s - cal.fixed_s)
    horizon = max(1, int(room / (top * seeds * bare_epoch_s + FINAL_FACTOR * cal.per_epoch_s)))
    capped = cal.useful_epochs is not None and horizon > cal.useful_epochs
    if capped:
        horizon = max(1, cal.useful_epochs or 1)
        final_s = FINAL_FACTOR * horizon * cal.per_epoch_s
        seeds = max(seeds, int((room - final_s) / (top * horizon * bare_epoch_s)))
    return Rest(horizon, seeds, FINAL_FACTOR * horizon, capped)
