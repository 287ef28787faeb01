"""What a search found: the trials, the stage plans, the best configuration, importances, edge warnings.

Built from the study alone (`collect`), so a finished, resumed or still-running
search reads the same way, from any machine that can open its store.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import tomli_w
from optuna.trial import FrozenTrial, TrialState

from babysit import status as statuses
from babysit.config import RunConfig
from babysit.errors import BabysitError
from babysit.io import atomic_write_text
from babysit.tune.runner import Planner, Search, trial_config
from babysit.tune.search import EdgeWarning, StagePlan, edge_warnings
from babysit.tune.store import DUPLICATE_KEY, STALE_KEY, StudyHandle, slot_of, slot_trials


@dataclass(frozen=True)
class TrialRecord:
    """One trial as babysit reports it.

    status: one of `status.TRIAL` (completed, stopped, diverged, pruned, failed, running,
    waiting), "unknown" for a recorded value this version does not declare (stale and
    duplicate trials are kept in the study but left out of results).
    """

    number: int
    stage: int
    slot: int
    status: str
    values: dict[str, Any]
    score: float | None  # last epoch's validation accuracy (complete trials)
    epochs: int
    history: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    diverged_at: int | None = None
    reported: dict[int, float] = field(default_factory=dict)  # epoch -> validation accuracy, as reported while training

    @classmethod
    def from_trial(cls, t: FrozenTrial) -> TrialRecord:
        stage, slot = slot_of(t)
        a = t.user_attrs
        status = {
            TrialState.COMPLETE: statuses.COMPLETED,
            TrialState.RUNNING: statuses.RUNNING,
            TrialState.WAITING: statuses.WAITING,
            TrialState.FAIL: statuses.FAILED,
        }.get(t.state) or statuses.read(a.get("status", statuses.PRUNED), statuses.TRIAL)
        return cls(
            number=t.number,
            stage=stage,
            slot=slot,
            status=status,
            values=dict(a.get("config", {})),
            score=t.value if t.state == TrialState.COMPLETE else None,
            epochs=int(a.get("epochs", 0)),
            history=list(a.get("history", [])),
            reason=a.get("reason", ""),
            diverged_at=a.get("diverged_at"),
            reported=dict(t.intermediate_values),
        )

    def last(self, key: str = "val_accuracy") -> float | None:
        """The last epoch's `key` (a pruned or diverged trial still has one)."""
        return self.history[-1].get(key) if self.history else None


@dataclass
class TuneResult:
    """The outcome of a search; `best` is the best complete trial of the last stage that has one."""

    search: Search
    where: str
    trials: list[TrialRecord]
    plans: list[StagePlan]
    importance: dict[str, float]
    warnings: list[EdgeWarning]
    finished: bool
    superseded: int = 0  # trials failed as stale (re-queued) or duplicate

    @property
    def best(self) -> TrialRecord | None:
        for stage in sorted({t.stage for t in self.trials}, reverse=True):
            done = [t for t in self.trials if t.stage == stage and t.score is not None]
            if done:
                return max(done, key=lambda t: (t.score, -t.number))
        return None

    def best_config(self) -> RunConfig:
        """The base config with the best trial's values and epochs: what `babysit train` should run."""
        best = self.best
        if best is None:
            raise BabysitError("no trial completed, so there is no best configuration; see the trials' reasons (lower the learning-rate range if they diverged)")
        return trial_config(self.search.base, best.values, best.epochs)

    def export(self, path: str | Path) -> Path:
        """Write the best configuration as a TOML run config (atomically) for `babysit train --config`."""
        best = self.best
        header = f"# babysit tune: study {self.search.study}, trial {best.number} (stage {best.stage}), validation accuracy {best.score:.4f}\n"
        return atomic_write_text(path, header + tomli_w.dumps(self.best_config().to_dict()))

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars (what `babysit tune --json` prints)."""
        best = self.best
        counts: dict[str, int] = {}
        for t in self.trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        return {
            "study": self.search.study,
            "storage": self.where,
            "strategy": self.search.settings.strategy,
            "trials": counts,
            "best_trial": best.number if best else None,
            "best_val_accuracy": best.score if best else None,
            "best_values": best.values if best else None,
            "importance": self.importance,
            "edge_warnings": [str(w) for w in self.warnings],
        }

    def __repr__(self) -> str:
        best = self.best
        return f"TuneResult({self.search.study!r}, trials={len(self.trials)}, best={best.score if best else None})"


def importance(trials: list[TrialRecord], plan: StagePlan, seed: int = 0) -> dict[str, float]:
    """fANOVA importance (Hutter et al. 2014) of each parameter over one stage, in transformed space.

    Diverged and pruned trials count with their last validation accuracy: that lr=10
    diverges is exactly what makes the learning rate important. Empty with fewer than
    three scored trials or no variation.
    """
    space = plan.space
    dists = {p.study_name(k): p.distribution() for k, p in space.items()}
    frozen = []
    for t in trials:
        score = t.score if t.score is not None else t.last()
        if t.stage != plan.stage or score is None or not math.isfinite(score) or set(t.values) != set(space):
            continue
        params = {p.study_name(k): p.stored(t.values[k]) for k, p in space.items()}
        frozen.append(optuna.trial.create_trial(params=params, distributions=dists, value=score))
    if len(frozen) < 3 or len({f.value for f in frozen}) < 2:
        return {}
    study = optuna.create_study(direction="maximize")
    study.add_trials(frozen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    names = {p.study_name(k): k for k, p in space.items()}
    return {names[n]: float(v) for n, v in scores.items()}


def records(trials: list[FrozenTrial]) -> list[TrialRecord]:
    """Every slot's trial, by number (stale and duplicate trials left out)."""
    return [TrialRecord.from_trial(t) for t in sorted(slot_trials(trials).values(), key=lambda t: t.number)]


def collect(handle: StudyHandle, search: Search) -> TuneResult:
    """Read a search's results from its study."""
    all_trials = handle.trials()
    found_records = records(all_trials)
    planner = Planner(search)
    state, current, _ = planner.next_step(handle)
    last = current.stage if current is not None else search.settings.num_stages()
    plans = [planner.plan(stage, all_trials) for stage in range(1, last + 1)]
    found: list[EdgeWarning] = []
    for plan in plans:
        scored = [t for t in found_records if t.stage == plan.stage and t.score is not None]
        if scored:
            best = max(scored, key=lambda t: (t.score, -t.number))
            found += edge_warnings(plan.space, best.values, plan.stage)
    superseded = sum(1 for t in all_trials if STALE_KEY in t.system_attrs or DUPLICATE_KEY in t.system_attrs)
    weights = importance(found_records, plans[0], search.settings.seed) if plans else {}
    return TuneResult(search, handle.where, found_records, plans, weights, found, state == "done", superseded)
