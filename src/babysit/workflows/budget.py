"""`auto`'s budget: the CPU clock, the guard, what a run costs (measured), and the plan made from it.

A run's CPU cost is `fixed + epochs x per_epoch`, both measured, never assumed:

- `per_epoch` is the mean CPU cost of an epoch after a run's first: training, validation
  and, in a recorded run, that epoch's probes, checkpoints and records (`EpochMeter`, between
  consecutive epoch ends);
- `fixed` is what a run costs besides its epochs (building the model, the first batch's
  warm-up, the test evaluation, and in a search Optuna's bookkeeping): a stage's CPU seconds
  minus its epochs x per_epoch, over its runs;

Calibration measures both for a bare run (how search trials and re-evaluation runs train) and
for a recorded one (how the final run trains); the recorded/bare ratio of their epochs carries
the later, larger measurements of bare epochs (the search's, the re-evaluation's, under the
load of the moment) over to the final run.

The plan (`plan_budget`): of the CPU left after the checks and calibration, `REPORT_SHARE` of
the budget is kept for the reports and `SEARCH_SHARE` goes to the search; the rest is split
between `top x seeds` re-evaluation runs of h epochs (bare) and the final run of
`FINAL_FACTOR x h` epochs (recorded), solving
`rest = top*seeds*(bare.fixed + h*bare.epoch) + recorded.fixed + FINAL_FACTOR*h*recorded.epoch`
for h, with the re-evaluation never costing more than the final run (`split_rest`). The
search's trial count comes from the cost of one trial, fixed cost included, so a cheap
epoch never buys hundreds of trials whose fixed costs eat the budget. When the search
share buys fewer than `MIN_TRIALS` one-epoch trials there is no search and no re-evaluation:
the final run gets everything.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from babysit.errors import ConfigError
from babysit.status import STOPPED
from babysit.tune.search import MAX_TRIALS

SEARCH_SHARE = 0.35  # of the CPU left after the checks and calibration (and the reports' share)
REPORT_SHARE = 0.05  # of the budget, kept for writing the run report after the final run
FINAL_FACTOR = 2  # the final run trains this many times the re-evaluation's horizon
MIN_TRIALS = 4  # a coarse-to-fine search of fewer trials (two stages) ranks nothing worth its cost
COARSE_EPOCHS_PER = 24  # stage 1's epochs are about the search's epochs / this (16 trials over two stages)
REPLAN_AT = tuple(i / 20 for i in range(1, 20))  # shares of its planned epochs at which a run fitted to the budget re-plans: every 5%
REPLAN_MIN_EPOCHS = 3  # two epoch-to-epoch intervals after the first epoch's warm-up, at least
# How many standard errors of the mean epoch a re-plan must be out by: sqrt(2 ln m) for the m = 19 looks a run takes
# (the expected largest of m standard normals), so that noise alone rarely moves a run that was planned right.
REPLAN_Z = math.sqrt(2 * math.log(len(REPLAN_AT)))
REPLAN_TOLERANCE = 0.02  # a new length within this share of the planned one is not worth a kink in the schedule
STAGE_WORK = 1.5  # two stages, the second twice as long: a trial trains 1.5 x the coarse epochs on average, unpruned


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

    def __repr__(self) -> str:
        return f"BudgetGuard(deadline={self.deadline:.2f}, fired={self.fired})"


@dataclass(frozen=True)
class Cost:
    """What one run costs on the CPU clock: `fixed_s + epochs x per_epoch_s`.

    A recorded run's checkpoints are written at most 1% of its time (`train.checkpoint.Checkpointer`),
    so its epochs cost the same at epoch 2,000 as at epoch 20: the cost is linear in the epochs.
    """

    per_epoch_s: float
    fixed_s: float

    def of(self, epochs: int, runs: int = 1) -> float:
        """CPU seconds of `runs` runs of `epochs` epochs each."""
        return runs * (self.fixed_s + epochs * self.per_epoch_s)

    def epochs_for(self, seconds: float) -> int:
        """The most epochs one run can train in `seconds` (0 when they do not pay its fixed cost and one epoch)."""
        return _most(lambda e: self.of(e) <= seconds)

    def for_samples(self, measured_on: int, used_on: int) -> Cost:
        """This cost, measured on epochs of `measured_on` training samples, for epochs of `used_on` (an epoch costs in proportion to its samples)."""
        return Cost(self.per_epoch_s * used_on / measured_on, self.fixed_s)

    def to_dict(self) -> dict[str, float]:
        return {k: float(f"{v:.4g}") for k, v in asdict(self).items()}


def _most(fits: Callable[[int], bool]) -> int:
    """The largest n >= 1 with fits(n) (fits is monotone: true up to some n), 0 when fits(1) is false."""
    if not fits(1):
        return 0
    low, high = 1, 2
    while fits(high):
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def _intervals(marks: list[float]) -> list[float]:
    """The CPU seconds between consecutive epoch ends of one run (`marks`: its start, then each epoch's end), the
    first epoch left out: it carries the run's warm-up."""
    return [b - a for a, b in zip(marks[1:], marks[2:])]


def _later_half(intervals: list[float]) -> list[float]:
    """The later half of a run's epoch intervals: a recorded run probes its first steps densely and saves more often early."""
    return intervals[len(intervals) // 2 :]


class EpochMeter:
    """A training callback: the CPU clock at each run's start and at each whole epoch's end, to split a stage's cost.

    An epoch that a stop cut short (a divergence guard, the stage's budget guard: `fit` still ends
    it, evaluation included) is not an epoch's cost: a search trial that diverges a few batches
    into its second epoch has one interval after its warm-up, and that one is a few batches long.
    Such an epoch ends its run's marks and counts, as the share of its steps it trained, only
    towards the epochs the stage's fixed cost is split from.
    """

    def __init__(self) -> None:
        self.runs: list[list[float]] = []
        self.cut_epochs = 0.0  # the trained share of each epoch a stop cut short, summed
        self._epoch_step = 0

    def on_fit_start(self, state: Any) -> None:
        self.runs.append([cpu_seconds()])

    def on_epoch_start(self, state: Any) -> None:
        self._epoch_step = state.step

    def on_epoch_end(self, state: Any) -> None:
        steps, whole = state.step - self._epoch_step, state.steps_per_epoch
        if state.stop and steps < whole:
            self.cut_epochs += steps / whole
        else:
            self.runs[-1].append(cpu_seconds())

    @property
    def epochs(self) -> float:
        """The epochs these runs trained: each whole one, and the share of each one a stop cut short."""
        return sum(len(r) - 1 for r in self.runs) + self.cut_epochs

    def cost(self, total_s: float) -> Cost | None:
        """`total_s`, the CPU seconds of the stage these runs trained in, as fixed + epochs x per_epoch (None: no epoch).

        An epoch's cost is the mean between consecutive epoch ends over the later half of each
        run (a recorded run probes its first steps densely and saves a best checkpoint more often
        early on: that extra lands in the fixed cost). Runs that all stopped after one epoch have
        only first epochs, which carry the warm-up: the estimate errs high.
        """
        late = [d for r in self.runs for d in _later_half(_intervals(r))]
        first = [r[1] - r[0] for r in self.runs if len(r) > 1]
        if not first:
            # Only epochs a stop cut short (the budget spent inside a first epoch): their seconds over their share
            # of an epoch, warm-up and all, which errs high as a first epoch does.
            return Cost(max(total_s / self.cut_epochs, 1e-6), 0.0) if self.cut_epochs else None
        per_epoch = max(sum(late) / len(late) if late else sum(first) / len(first), 1e-6)
        return Cost(per_epoch, max(0.0, (total_s - self.epochs * per_epoch) / len(self.runs)))

    def __repr__(self) -> str:
        return f"EpochMeter({len(self.runs)} runs, {self.epochs:g} epochs)"


def _noise(samples: list[float]) -> float:
    """How far the mean of `samples` may be off by noise alone: `REPLAN_Z` standard errors, widened to Student's t for few samples."""
    if len(samples) < 2:
        return math.inf
    from scipy.stats import norm, t

    z = float(t.ppf(norm.cdf(REPLAN_Z), df=len(samples) - 1))
    return z * statistics.stdev(samples) / math.sqrt(len(samples))


class FitToBudget:
    """A training callback: at `REPLAN_AT` shares of its planned epochs, re-plan the run from its own epochs' CPU cost so it ends at `end`.

    A run's length is fixed before it starts from an epoch measured elsewhere (calibration, the
    search), and an epoch's CPU cost drifts by tens of percent with the machine's load, the probes
    and the checkpoints: planned from that alone the final run was cut or left a third of the
    budget unspent. Measured on the run itself (the mean of its epochs after the first), the epochs left to `end` set its new
    length; `TrainState.replan` stretches its schedule to it, so the schedule still decays to its end.
    A new length inside `REPLAN_Z` standard errors of that mean (or `REPLAN_TOLERANCE` of the plan) is
    noise, not worth a kink in the schedule, and is not taken. `changes` lists each re-plan as
    (epoch, planned, re-planned, CPU-s per epoch).
    """

    def __init__(self, end: float) -> None:
        self.end = end
        self.marks: list[float] = []
        self.changes: list[tuple[int, int, int, float]] = []
        self._checks = 0

    def on_fit_start(self, state: Any) -> None:
        self.marks = [cpu_seconds()]

    def on_epoch_end(self, state: Any) -> None:
        now = cpu_seconds()
        self.marks.append(now)
        done, planned = len(self.marks) - 1, state.recipe.epochs
        if self._checks >= len(REPLAN_AT) or done < max(REPLAN_MIN_EPOCHS, REPLAN_AT[self._checks] * planned) or state.stop:
            return
        self._checks += 1
        deltas = _intervals(self.marks)
        per_epoch = max(statistics.fmean(deltas), 1e-9)
        left = int(max(self.end - now, 0.0) // per_epoch)
        epochs = done + left
        noise = left * _noise(deltas) / per_epoch  # the epochs left, as far off as the noise of the mean epoch puts them
        if epochs > done and abs(epochs - planned) > max(REPLAN_TOLERANCE * planned, noise):
            state.replan(epochs)
            self.changes.append((done, planned, epochs, per_epoch))

    def __repr__(self) -> str:
        return f"FitToBudget(end={self.end:.2f}, changes={self.changes})"


class Enough:
    """A training callback that ends a calibration run once it has `min_epochs` epochs and either its CPU clock passed
    `until` or its mean epoch is known to within `precision` (relative).

    Known to within: `_noise` of the later half of its epochs (those `EpochMeter` averages) over their mean.
    A table's epoch of a few milliseconds varies by a quarter from one epoch to the next, so a fixed
    share of the budget measured it hundreds of times over; a convnet's epoch is known after a few.
    Checked at epoch counts 25% apart, so the check costs nothing next to a millisecond epoch.
    """

    def __init__(self, min_epochs: int, until: float, precision: float = 0.0) -> None:
        self.min_epochs, self.until, self.precision = min_epochs, until, precision
        self.marks: list[float] = []
        self._next = min_epochs

    def on_fit_start(self, state: Any) -> None:
        self.marks, self._next = [cpu_seconds()], self.min_epochs

    def on_epoch_end(self, state: Any) -> None:
        now = cpu_seconds()
        self.marks.append(now)
        epochs = len(self.marks) - 1
        if epochs < self.min_epochs:
            return
        if now >= self.until:
            state.request_stop(STOPPED, "calibrated: its share of the budget is spent")
        elif epochs >= self._next:
            self._next = math.ceil(1.25 * epochs)
            late = _later_half(_intervals(self.marks))
            if len(late) >= 2 and _noise(late) <= self.precision * statistics.fmean(late):
                state.request_stop(STOPPED, f"calibrated: its mean epoch is known to within {self.precision:.0%}")

    def __repr__(self) -> str:
        return f"Enough(min_epochs={self.min_epochs}, until={self.until:.2f}, precision={self.precision})"


@dataclass
class Plan:
    """The budget split into CPU seconds per stage and run lengths (see the module docstring).

    `trials` is 0 when the search share buys fewer than `MIN_TRIALS` one-epoch trials;
    `horizon` is 0 when the rest buys no re-evaluation run (the final run then gets all of it).
    """

    search_s: float
    trials: int
    coarse_epochs: int
    horizon: int
    reevaluate_s: float
    final_epochs: int
    final_s: float

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def split_rest(rest: float, bare: Cost, recorded: Cost, runs: int) -> tuple[int, int]:
    """The re-evaluation's horizon h and the final run's epochs that `rest` CPU seconds buy.

    The largest h with runs x bare.of(h) + recorded.of(FINAL_FACTOR x h) <= rest, unless the
    re-evaluation would then cost more than the final run: it only chooses the final run's
    configuration, and the final run is the model the user gets (k-fold's 10 runs took twice to
    six times the final run's CPU). Then h is the most that leaves the final run at least as much
    as the re-evaluation, and the final run gets all the rest. When that buys no epoch of
    re-evaluation (h < 1), h is 0 and the final run gets all of `rest`.
    """
    h = _most(lambda h: bare.of(h, runs) + recorded.of(FINAL_FACTOR * h) <= rest) if runs else 0
    if h >= 1 and bare.of(h, runs) > recorded.of(FINAL_FACTOR * h):
        h = _most(lambda h: bare.of(h, runs) <= recorded.of(recorded.epochs_for(rest - bare.of(h, runs))))
        if h >= 1:
            return h, recorded.epochs_for(rest - bare.of(h, runs))
    if h < 1:
        return 0, recorded.epochs_for(rest)
    return h, FINAL_FACTOR * h


def plan_budget(left: float, bare: Cost, recorded: Cost, runs: int) -> Plan:
    """Split `left` CPU seconds (after the checks, calibration and the reports' share) over search, re-evaluation, final.

    `runs` is the number of re-evaluation runs (top x seeds). The search gets `SEARCH_SHARE`,
    shaped as stage-1 epochs `e` (about 1/`COARSE_EPOCHS_PER` of the epochs it buys, at most half
    the horizon) and trials `search_s / (bare.fixed + STAGE_WORK x e x bare.epoch)`; fewer than
    `MIN_TRIALS` one-epoch trials means no search, and everything goes to the final run.
    """
    search_s = SEARCH_SHARE * left
    horizon, final = split_rest(left - search_s, bare, recorded, runs)
    coarse = max(1, min(max(1, horizon // 2), round(search_s / bare.per_epoch_s / COARSE_EPOCHS_PER)))
    trials = int(search_s // (bare.fixed_s + STAGE_WORK * coarse * bare.per_epoch_s))
    if trials < MIN_TRIALS:
        coarse = 1
        trials = int(search_s // (bare.fixed_s + STAGE_WORK * bare.per_epoch_s))
    trials = min(trials, MAX_TRIALS)
    if trials < MIN_TRIALS:  # no search worth its cost: the final run trains the base config with everything
        final = recorded.epochs_for(left)
        return Plan(0.0, 0, 0, 0, 0.0, final, recorded.of(final))
    return Plan(search_s, trials, coarse, horizon, bare.of(horizon, runs) if horizon else 0.0, final, recorded.of(final))
