"""Search strategies and coarse-to-fine planning, as pure functions of the finished trials.

Contract: a `Strategy` (from `STRATEGIES`) proposes the hyperparameter values of
one stage's trials, `propose(space, n, seed, stage) -> [values or None]` (None:
Optuna's sampler picks at run time), and names the Optuna sampler of the study.
`plan_stage(stage, space, settings, outcomes)` turns that into a `StagePlan`:
stage 1 searches the given ranges; for a staged strategy (coarse_to_fine) each
next stage narrows every range in its transformed (log) space around the top-k
trials of the stage before, carries the best configurations over and trains
`epoch_growth` times longer (docs/lectures.md §6: coarse, few epochs, wide ranges;
then fine, narrowed, longer). Plans depend only on finished results, so every
worker and every machine computes the same plan.

Edge rule (docs/lectures.md §6): when the best value sits in the outer 10% of its
range, in transformed space, the range is probably wrong; the result says so,
and with `widen` the next stage re-centres the range on the best value (same
width, so it extends past the old edge) instead of narrowing it.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from babysit.errors import ConfigError
from babysit.registry import Registry
from babysit.tune.pruning import PRUNERS
from babysit.tune.space import Param

if TYPE_CHECKING:  # Optuna loads when a sampler is built, so the registry lists without it (`babysit blocks`, `bs.blocks`)
    import optuna

EDGE = 0.1  # the outer fraction of a range that counts as its edge
MARGIN = 0.1  # narrowed ranges extend this fraction of the old width past the top-k
MIN_SHRINK = 0.2  # a narrowed range keeps at least this fraction of the old width
# The most trials one search plans: a stage's values are planned (and a grid's counts searched)
# in memory before the first trial; 10,000 plan in about a second, 10^9 would never finish.
MAX_TRIALS = 10_000

Space = dict[str, Param]


@dataclass
class TuneSettings:
    """What to search and how: the `[tune]` table of a search file (execution settings are separate).

    Args:
        strategy: a name from `STRATEGIES`: random (default), grid, tpe, coarse_to_fine.
        trials: the whole budget, over all stages.
        epochs: epochs per trial (stage 1 of coarse_to_fine: the lectures' coarse stage, about 5).
        stages: coarse_to_fine only: number of stages; trials are split evenly between them.
        epoch_growth: each stage trains this many times longer than the one before.
        top_k: trials a stage narrows around (0: a quarter of the stage's finished trials, at least 2).
        carry: best configurations of a stage re-run (longer) in the next.
        widen: re-centre a range whose best value sits at its edge instead of narrowing it.
        prune: a name from `PRUNERS` for early stopping by validation accuracy (none, median, halving).
        grace: epochs every trial trains before a pruner may judge it (halving's first rung, median's
            warm-up; ASHA's grace period): a trial near chance after one epoch is not yet behind.
        divergence_factor: a trial whose loss exceeds this multiple of its first loss is stopped (§6: 3x).
        seed: seeds the proposals and the samplers.
    """

    strategy: str = "random"
    trials: int = 20
    epochs: int = 5
    stages: int = 2
    epoch_growth: float = 3.0
    top_k: int = 0
    carry: int = 1
    widen: bool = True
    prune: str = "none"
    grace: int = 1
    divergence_factor: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        STRATEGIES.get(self.strategy)
        PRUNERS.get(self.prune)
        checks = [
            (self.trials >= 1, f"tune.trials must be at least 1, got {self.trials}"),
            (
                self.trials <= MAX_TRIALS,
                f"tune.trials={self.trials} is more than one search plans (at most {MAX_TRIALS:,}: every trial's values "
                "are planned and stored in the study); run at most that many, or split the search into studies (--study NAME)",
            ),
            (self.epochs >= 1, f"tune.epochs must be at least 1, got {self.epochs}"),
            (self.grace >= 1, f"tune.grace must be at least 1 epoch, got {self.grace}"),
            (self.stages >= 1, f"tune.stages must be at least 1, got {self.stages}"),
            (self.epoch_growth >= 1, f"tune.epoch_growth must be >= 1 (later stages train longer), got {self.epoch_growth}"),
            (self.top_k >= 0 and self.carry >= 0, "tune.top_k and tune.carry must be >= 0"),
            (self.divergence_factor > 1, f"tune.divergence_factor must be > 1, got {self.divergence_factor}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.staged and self.trials < self.stages:
            raise ConfigError(f"tune.trials ({self.trials}) must be at least tune.stages ({self.stages})")

    @property
    def staged(self) -> bool:
        return STRATEGIES.get(self.strategy)().staged

    def num_stages(self) -> int:
        """Stages this search runs (1 unless the strategy is staged)."""
        return self.stages if self.staged else 1

    def stage_trials(self) -> list[int]:
        """The budget split evenly over the stages, the remainder to the earliest."""
        n, s = self.trials, self.num_stages()
        return [n // s + (1 if i < n % s else 0) for i in range(s)]

    def stage_epochs(self, stage: int) -> int:
        """Epochs per trial in `stage` (1-based): epochs * epoch_growth^(stage - 1)."""
        return max(1, round(self.epochs * self.epoch_growth ** (stage - 1)))


@dataclass(frozen=True)
class Outcome:
    """What planning needs of one finished trial: its stage, slot, values and score (None: no result)."""

    stage: int
    slot: int
    values: dict[str, Any]
    score: float | None


@dataclass(frozen=True)
class EdgeWarning:
    """The best value of `key` sits in the outer 10% of its range in `stage` (position 0..1, in value order)."""

    key: str
    stage: int
    value: Any
    param: Param
    position: float

    @property
    def side(self) -> str:
        return "upper" if self.position > 0.5 else "lower"

    def __str__(self) -> str:
        scale = "linear scale" if self.param.kind == "uniform" or (self.param.kind == "int_uniform" and not self.param.log) else "log scale"
        return (
            f"stage {self.stage}: best {self.key} = {self.value:.4g} sits at the {self.side} edge of "
            f"{self.param} ({self.position:.0%} along, {scale}); widen the range {'up' if self.side == 'upper' else 'down'}ward and search again"
        )


@dataclass(frozen=True)
class StagePlan:
    """One stage: its ranges, epochs, and the values of each trial slot (None: the sampler picks)."""

    stage: int
    epochs: int
    space: Space
    configs: list[dict[str, Any] | None]
    carried: int = 0
    notes: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:
        ranges = ", ".join(f"{k}={p}" for k, p in self.space.items())
        return f"StagePlan(stage={self.stage}, trials={len(self.configs)}, epochs={self.epochs}, carried={self.carried}, {ranges})"


@dataclass(frozen=True)
class Strategy:
    """A search strategy: how one stage's trials are proposed, and the Optuna sampler it needs."""

    name: str
    propose: Callable[[Space, int, int, int, int], list[dict[str, Any] | None]]
    sampler: Callable[[int], optuna.samplers.BaseSampler]
    staged: bool = False


STRATEGIES: Registry = Registry("search strategy")


def _random_configs(space: Space, n: int, seed: int, stage: int, first_slot: int) -> list[dict[str, Any] | None]:
    configs: list[dict[str, Any] | None] = []
    for i in range(n):
        # One generator per slot: a slot's values do not depend on which worker or machine runs it.
        rng = np.random.default_rng([seed, stage, first_slot + i])
        configs.append({k: p.sample(rng) for k, p in space.items()})
    return configs


# The exact grid search below visits every count tuple whose product fits the budget; past this
# many (a budget of thousands spread over many parameters) the balanced greedy grid is used instead.
GRID_VISITS = 100_000


def grid_counts(space: Space, n: int) -> list[int]:
    """Values per parameter for the largest grid of at most `n` points (ties: most balanced, then earlier keys get more).

    Exact by enumeration while that stays small (`GRID_VISITS`, every grid babysit's
    benches and lab draw); beyond it, `_balanced_counts`, which raises the smallest
    count first and so is bounded in time however many parameters there are.
    """
    caps = [min(n, int(p.size())) if math.isfinite(p.size()) else n for p in space.values()]
    ones = tuple(1 for _ in caps)
    best: tuple[int, tuple[int, ...], tuple[int, ...]] = (1, ones, ones)
    # Beyond position i, the remaining counts can multiply the product by at most this much.
    room = [math.prod(caps[i:]) for i in range(len(caps) + 1)]

    visits = 0

    def visit(i: int, counts: tuple[int, ...], product: int) -> None:
        nonlocal best, visits
        visits += 1
        if visits > GRID_VISITS:
            raise _TooManyGrids
        reach = min(n, product * room[i])
        if reach < best[0] or (reach == best[0] and counts and min(counts) < best[1][0]):
            return  # cannot reach the best product, or reaches it only with a smaller smallest count
        if i == len(caps) - 1:
            # The last count: only the largest one that fits can win (a smaller one lowers the product, the first key).
            c = min(caps[i], n // product)
            # Largest product; then leximin balance (raise the smallest count first); then earlier keys.
            best = max(best, (product * c, tuple(sorted((*counts, c))), (*counts, c)))
            return
        for c in range(1, min(caps[i], n // product) + 1):
            visit(i + 1, (*counts, c), product * c)

    if caps:
        try:
            visit(0, (), 1)
        except _TooManyGrids:  # the same budget and space always take this branch: still deterministic
            return _balanced_counts(caps, n)
    return list(best[2])


class _TooManyGrids(Exception):
    """The exact grid search passed `GRID_VISITS` count tuples."""


def _balanced_counts(caps: list[int], n: int) -> list[int]:
    """Start from one value each and keep raising the smallest count that can grow (earlier keys first) while the grid fits `n`."""
    counts = [1] * len(caps)
    product = 1
    while True:
        growable = [i for i in range(len(caps)) if counts[i] < caps[i] and product // counts[i] * (counts[i] + 1) <= n]
        if not growable:
            return counts
        i = min(growable, key=lambda j: (counts[j], j))
        product = product // counts[i] * (counts[i] + 1)
        counts[i] += 1


def _grid_configs(space: Space, n: int, seed: int, stage: int, first_slot: int) -> list[dict[str, Any] | None]:
    axes = [p.grid(c) for p, c in zip(space.values(), grid_counts(space, n))]
    return [dict(zip(space, point)) for point in itertools.product(*axes)]


def _random_sampler(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _tpe_sampler(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: parallel workers see running trials as bad, so they do not all propose the same point.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


@STRATEGIES.register("random")
def random_search() -> Strategy:
    """Random search, each range sampled uniformly in its transformed (log) space (Bergstra & Bengio 2012)."""
    return Strategy("random", _random_configs, _random_sampler)


@STRATEGIES.register("grid")
def grid_search() -> Strategy:
    """A grid of cell centres in transformed space, the largest within the budget (for the lab's comparison)."""
    return Strategy("grid", _grid_configs, _random_sampler)


@STRATEGIES.register("tpe")
def tpe_search() -> Strategy:
    """Optuna's TPE sampler over the transformed space (a model-based baseline)."""
    return Strategy("tpe", lambda space, n, seed, stage, first_slot: [None] * n, _tpe_sampler)


@STRATEGIES.register("coarse_to_fine")
def coarse_to_fine() -> Strategy:
    """Random search in stages: wide and short first, then narrowed around the best and longer (docs/lectures.md §6)."""
    return Strategy("coarse_to_fine", _random_configs, _random_sampler, staged=True)


def ranked(outcomes: list[Outcome]) -> list[Outcome]:
    """Outcomes with a score, best first (ties by slot, so every worker ranks alike)."""
    return sorted((o for o in outcomes if o.score is not None), key=lambda o: (-o.score, o.slot))


def edge_warnings(space: Space, best: dict[str, Any], stage: int) -> list[EdgeWarning]:
    """An `EdgeWarning` for each numeric parameter whose best value lies in the outer 10% of its range."""
    out = []
    for key, param in space.items():
        if not param.numeric or key not in best:
            continue
        lo, hi = param.t_range()
        pos = (param.to_t(best[key]) - lo) / (hi - lo)
        pos = 1.0 - pos if param.decreasing else pos
        if pos < EDGE or pos > 1 - EDGE:
            out.append(EdgeWarning(key, stage, best[key], param, min(max(pos, 0.0), 1.0)))
    return out


def narrow(space: Space, top: list[Outcome], carried: list[dict[str, Any]], widen: bool, stage: int) -> tuple[Space, list[str]]:
    """The next stage's ranges from the ranked `top` outcomes of `stage` (best first), and notes on what changed.

    Numeric ranges shrink, in t, to the top-k hull plus a margin (at least MIN_SHRINK of the
    old width, never outside it); with `widen`, a range whose best sits at its edge is instead
    re-centred on the best with its width kept, clipped to the kind's domain. Choices keep the
    values the top-k used (in `allowed`: Optuna's distribution keeps them all). Every range is stretched to hold the carried configurations.
    """
    if not top:
        return dict(space), [f"no trial of stage {stage} finished with a score; ranges kept"]
    edges = {w.key for w in edge_warnings(space, top[0].values, stage)}
    new: Space = {}
    notes = []
    for key, param in space.items():
        if not param.numeric:
            keep = [c for c in param.options if any(o.values[key] == c for o in top) or any(v[key] == c for v in carried)]
            new[key] = param.with_allowed(keep)  # same distribution for Optuna, fewer values to sample
            continue
        lo, hi = param.t_range()
        width = hi - lo
        dom_lo, dom_hi = param.domain()
        best_t = param.to_t(top[0].values[key])
        if key in edges and widen and (best_t - width / 2 < lo and dom_lo < lo or best_t + width / 2 > hi and dom_hi > hi):
            a, b = max(best_t - width / 2, dom_lo), min(best_t + width / 2, dom_hi)
            notes.append(f"{key}: best at the edge of {param}; re-centred on it instead of narrowing")
        else:
            ts = [param.to_t(o.values[key]) for o in top]
            a, b = min(ts) - MARGIN * width, max(ts) + MARGIN * width
            if b - a < MIN_SHRINK * width:
                mid = (a + b) / 2
                a, b = mid - MIN_SHRINK * width / 2, mid + MIN_SHRINK * width / 2
            a, b = max(a, lo), min(b, hi)
        carried_ts = [param.to_t(v[key]) for v in carried]
        a, b = min([a, *carried_ts]), max([b, *carried_ts])
        new[key] = param.with_t_range(a, b)
    return new, notes


def plan_stage(stage: int, space: Space, settings: TuneSettings, outcomes: list[Outcome], incumbent: dict[str, Any] | None = None) -> StagePlan:
    """The plan of `stage` (1-based) given the finished outcomes of the stages before it.

    `incumbent` (values for every key of `space`) takes stage 1's first slot: the configuration
    the search has to beat (a profile's or the user's own), trained like every other trial.
    """
    strategy = STRATEGIES.get(settings.strategy)()
    n = settings.stage_trials()[stage - 1]
    epochs = settings.stage_epochs(stage)
    if stage == 1:
        first = [dict(incumbent)] if incumbent is not None else []
        configs = [*first, *strategy.propose(space, n - len(first), settings.seed, stage, len(first))]
        return StagePlan(1, epochs, dict(space), configs)
    before = plan_stage(stage - 1, space, settings, outcomes, incumbent)
    ranking = ranked([o for o in outcomes if o.stage == stage - 1])
    k = settings.top_k or max(2, round(len(ranking) / 4))
    carried = [o.values for o in ranking[: min(settings.carry, n)]]
    stage_space, notes = narrow(before.space, ranking[:k], carried, settings.widen, stage - 1)
    fresh = strategy.propose(stage_space, n - len(carried), settings.seed, stage, len(carried))
    return StagePlan(stage, epochs, stage_space, [*carried, *fresh], carried=len(carried), notes=tuple(notes))
