"""`auto`: the lectures' whole procedure, unattended, within one CPU budget.

    done = bs.auto(bs.build_config({"data": {"name": "mnist1d"}, "model": {"name": "convnet"}}), budget_s=600)
    done.test_accuracy, done.report_path, done.config_path

The stages, in the lectures' order (docs/lectures.md; CS231n Neural Networks 3):
1. lr range: the learning-rate range test proposes a rate; the search centres on it;
2. preflight: the other checks (`check`) on the configured model; error-level findings
   stop here unless `fix` (then the range test's learning rate replaces the configured
   one). The input-baseline check's two short trainings run when they cost at most
   `BASELINE_SHARE` of the budget (priced by the range test's steps), else a note says so;
3. calibrate: two short runs of the base config measure what a run costs
   (`workflows.budget`): one bare, as a search trial trains, one recorded, as the
   final run trains (probes, checkpoints, the same batch size and augmentation),
   each until its mean epoch is known to `CALIBRATE_PRECISION`;
4. search: coarse random search on log scales over lr and weight decay (and
   dropout when the budget buys 32+ trials), then one narrowing stage around the
   best (coarse_to_fine, with its edge warnings), with divergence pruning and
   successive halving whose first rung is a third of a coarse trial (`grace_epochs`).
   The configuration as given (the profile's or the user's values) is the first trial;
   when no other first-stage trial beats it by more than chance explains (the best of
   m equally good configurations on n validation samples: `ranking.incumbent_test`;
   re-scored on k folds where the split is too small to tell and the folds could:
   `ranking.worth_folds`), or by no more than the start itself gained over the second
   half of its trial (trials that short rank speed, not where a long run ends:
   `ranking.still_rising`), the search stops there, nothing is re-evaluated, and the final run trains it with
   everything left: a search that cannot beat the recipe it started from does not
   get to spend the recipe's training time;
5. re-evaluate: the top few of the last stage retrained on more than one seed at
   half the final run's length (one successive-halving rung below it; shorter where
   that would cost more than the final run), because a
   short trial's ranking does not predict a long run (it picks too little
   regularization) and one seed's is noise;
6. final: the best mean configuration trained, recorded with probes, for as many
   epochs as the budget left buys, so that its schedule decays to its end inside the budget;
   when that is at least twice `FINAL_FACTOR` x the horizon that ranked it, an ensemble of
   independent runs at least that long instead of one run stretched past it (`workflows.members`);
7. report: the run report with the checks, a budget table and the re-evaluation,
   the search report beside it, and the exported TOML config.

The budget is CPU seconds of this process (`time.process_time`: every thread of it;
panda mode trains every trial here, so there are no child processes to add). Every run's
cost is `fixed + epochs x per_epoch`, both measured (`workflows.budget`): calibration
measures them for a bare and a recorded run, the search re-measures a bare run over all
its trials, the re-evaluation once more just before the final run. After preflight and
calibration, `REPORT_SHARE` of the budget (from `REPORT_MIN_S` to `REPORT_MAX_S`) is
kept for the report, `SEARCH_SHARE` of the rest goes to the search (its trial count from
one trial's whole cost, fixed cost included) and the remainder to the re-evaluation (h
epochs a run) and the final run (`FINAL_FACTOR` x h epochs): the final run is the model
the user gets, so it gets the largest single share, and never less than the
re-evaluation in all (10 runs of k-fold would otherwise take five sixths of the rest:
`budget.split_rest`). The search stops claiming trials once its share is spent. Before
each later stage the plan is re-made from what is left and the latest costs; the final
run's length is set, before it starts, by what is left and a recorded epoch's cost (the
bare epoch just measured x the recorded/bare ratio of calibration), so a stage that
overran shortens the final run instead of cutting it. The guard at the budget's end
stops the final run only as a last resort. Every deviation from the plan (a stage past
its share by at least one final epoch and 1% of the budget, the final run re-planned
shorter, the final run cut, the budget overrun) is listed first in the report, the
printed summary and the JSON. Since the budget sets every run's length, a base without a
learning-rate schedule gets one cosine decay over each run. If the budget buys no search
of `MIN_TRIALS` trials, the final run trains the base config (with the range test's
rate) with all of it and says so. A final run that diverges is retrained with the rest
of the budget at half a decade lower rate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import tomli_w
from optuna.trial import TrialState
from rich.console import Console
from rich.live import Live
from rich.text import Text

from babysit.build import load_data, model_from_config, run
from babysit.checks.base import CheckSettings
from babysit.checks.preflight import PIPELINE, CheckReport, check
from babysit.config import RunConfig
from babysit.errors import BabysitError, ConfigError
from babysit.io import atomic_write_text, json_safe
from babysit.optim.optimizers import FULL_BATCH, default_lr
from babysit.report.run_report import run_report
from babysit.status import COMPLETED, DIVERGED, PRUNED
from babysit.tune.defaults import default_space
from babysit.tune.report import write_report
from babysit.tune.results import TuneResult, collect
from babysit.tune.runner import Search, trial_config, work
from babysit.tune.search import TuneSettings
from babysit.tune.space import Param
from babysit.tune.store import slot_trials
from babysit.workflows.baselines import Baseline, baselines
from babysit.workflows.budget import (
    FINAL_FACTOR,
    MIN_TRIALS,
    REPORT_SHARE,
    SEARCH_SHARE,
    BudgetGuard,
    Cost,
    Enough,
    EpochMeter,
    FitToBudget,
    cpu_seconds,
    default_budget_s,
    parse_budget,  # re-exported: the CLI, the demo and bench/bench_auto.py read --budget through auto
    plan_budget,
    split_rest,
)
from babysit.workflows.members import Member, ensemble_accuracy, first_share, member_count, save_ensemble, train_members
from babysit.workflows.ranking import Incumbent, fold_count, folds, incumbent_test, ranking, still_rising, worth_folds
from babysit.workflows.recorded import start_run

BASELINE_SHARE = 0.05  # of the budget, at most, for the input-baseline check's two training runs (else it is left out)
# The final run's last-resort guard: this share of the budget past the point its plan ends at. CPU time per
# epoch drifts by tens of percent with the machine's load, so a run is cut only when its plan was badly wrong,
# and the budget is overrun by at most this much (and the report's cost past its share).
FINAL_OVERRUN_LIMIT = 0.1
CALIBRATE_SHARE = 0.02  # of the budget, at most, for each of the two calibration runs (at least CALIBRATE_EPOCHS epochs each)
CALIBRATE_EPOCHS = 3  # two epoch-to-epoch intervals after the first epoch's warm-up
CALIBRATE_MAX_EPOCHS = 1000  # the calibration runs' nominal length: their share ends them first
# A calibration run stops once the sampling noise of its mean epoch is within this share (budget.Enough): that of the
# recorded/bare ratio of the two is then within FINAL_OVERRUN_LIMIT (errors add in quadrature), the error past which a
# re-plan of the final run is a deviation. A fixed 2% of the budget measured a table's millisecond epoch hundreds of
# times over. A load that changes between the runs is not noise it can see: the final run's re-plan (FitToBudget) is.
CALIBRATE_PRECISION = FINAL_OVERRUN_LIMIT / math.sqrt(2)
COARSE_TRIALS = 16  # a search of this many trials per stage also searches dropout
FINAL_ATTEMPTS = 3  # a final run that diverges is retrained at a lower rate at most twice
FINAL_LR_CUT = 10**-0.5  # half a decade on the log scale the search used
# The final stage's share is all that is left; its last epoch and test evaluation run past it by a little in every run,
# so it is a deviation only past this share of the budget (and one final epoch); so is any other stage's overrun.
FINAL_SLACK = 0.01
# The reports' reserve is REPORT_SHARE of the budget between these bounds: the run report's figures cost 2-7
# CPU-seconds whatever the budget (measured on MNIST-1D, digits and tables at 1 to 10 CPU-minutes; matplotlib's
# first figure dominates), so 5% of 10 minutes (30 s) left 4-5% of the budget unspent.
REPORT_MIN_S = 5.0
REPORT_MAX_S = 7.5


class _Progress:
    """One live status line on stderr: stage, budget left, best so far."""

    def __init__(self, budget: float, start: float, enabled: bool) -> None:
        self.budget, self.start, self.stage, self.best = budget, start, "", None
        self.live = Live(Text(""), console=Console(stderr=True), transient=False, auto_refresh=False) if enabled else None

    def __enter__(self) -> _Progress:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.refresh()
            self.live.__exit__(*exc)

    def refresh(self, stage: str | None = None, best: float | None = None) -> None:
        self.stage = stage or self.stage
        self.best = best if best is not None else self.best
        if self.live:
            left = self.budget - (cpu_seconds() - self.start)
            best_text = f"{self.best:.4f}" if self.best is not None else "-"
            self.live.update(Text(f"auto · {self.stage} · budget left {max(0.0, left):.0f}/{self.budget:.0f} CPU-s · best val {best_text}"), refresh=True)

    def on_epoch_end(self, state: Any) -> None:
        self.refresh()


@dataclass
class AutoResult:
    """What `auto` produced: the final run, its test accuracy, the stages' CPU seconds, the files written."""

    status: str
    test_accuracy: float | None
    config: RunConfig
    config_path: Path
    config_text: str  # best.toml's text: the exported config
    report_path: Path
    out_dir: Path
    stages: dict[str, float]  # stage -> CPU seconds used
    plan: dict[str, Any]  # the budget split as planned, the costs it was planned from, and the final run's length
    reevaluated: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    baselines: list[Baseline] = field(default_factory=list)  # what a user would try first, on the same splits
    deviations: list[str] = field(default_factory=list)  # where the procedure did not go as planned, first in every output
    spent_s: float = 0.0  # CPU seconds from auto's start to its end (the stages and loading the data)
    test_views: int = 1  # the fixed flips and crops the test predictions were averaged over (data.test_augment)
    test_accuracy_single: float | None = None  # with more than one view: the one-view test accuracy

    @property
    def cpu_minutes(self) -> float:
        return sum(self.stages.values()) / 60.0

    @property
    def budget_spent(self) -> float:
        """The share of the budget spent on the budget's clock (1.0: exactly the budget)."""
        return self.spent_s / self.plan["budget_s"]

    def summary(self) -> dict[str, Any]:
        """JSON-ready (what `babysit auto --json` prints and auto.json holds); the deviations come first."""
        return {
            "deviations": self.deviations,
            "status": self.status,
            "test_accuracy": self.test_accuracy,
            **({"test_views": self.test_views, "test_accuracy_single": self.test_accuracy_single} if self.test_views > 1 else {}),
            "cpu_minutes": round(self.cpu_minutes, 3),
            "budget_spent": round(self.budget_spent, 3),
            "stage_cpu_minutes": {k: round(v / 60.0, 3) for k, v in self.stages.items()},
            "plan": self.plan,
            "config": self.config_text,
            "config_path": str(self.config_path),
            "report": str(self.report_path),
            "reevaluated": self.reevaluated,
            "warnings": self.warnings,
            "baselines": [b.to_dict() for b in self.baselines],
        }

    def __repr__(self) -> str:
        return f"AutoResult({self.status}, test_accuracy={self.test_accuracy}, {self.cpu_minutes:.1f} CPU-min, report={str(self.report_path)!r})"


def _preflight(cfg: RunConfig, data: Any, fix: bool, budget: float, clock: dict[str, float], notes: list[str]) -> tuple[CheckReport, RunConfig]:
    """The range test, then the other checks (timed apart; the range test's steps price the input baseline's); stop on errors unless `fix`.

    The input-baseline check trains the model twice (real and all-zero inputs, 150 steps each: 10
    CPU-seconds of the MNIST-1D convnet, a sixth of a one-minute budget). When that would take more
    than `BASELINE_SHARE` of the budget it is left out and a note says so: fewer steps would make a
    weaker test that could fail a model that simply had not learnt yet.
    """
    t0 = cpu_seconds()
    model = model_from_config(cfg.model, data, seed=cfg.train.seed)
    lr = check(model, data, cfg.train, only=["lr_range"], progress=False)
    clock["lr_range"] = cpu_seconds() - t0
    t0 = cpu_seconds()
    baseline_s = 2 * CheckSettings.baseline_steps * clock["lr_range"] / CheckSettings.sweep_steps
    skip = {"lr_range"} | ({"input_baseline"} if baseline_s > BASELINE_SHARE * budget else set())
    if "input_baseline" in skip:
        notes.append(f"the input-baseline check was left out: its two trainings (about {baseline_s:.1f} CPU-s, priced by the range test's steps) "
                     f"would take more than {BASELINE_SHARE:.0%} of the budget; run `babysit check` for it")  # fmt: skip
    first = check(model, data, cfg.train, only=[n for n in PIPELINE if n not in skip], progress=False)
    clock["preflight"] = cpu_seconds() - t0
    report = CheckReport(first.results + lr.results, suggested_lr=lr.suggested_lr)
    errors = [f for f in report.findings if f.severity == "error"]
    if errors and not fix:
        raise BabysitError(f"preflight found {len(errors)} error(s), first: {errors[0].title}; fix it ({errors[0].fix}) or pass --fix")
    if report.suggested_lr is not None:
        cfg = replace(cfg, train=replace(cfg.train, lr=report.suggested_lr))  # the lectures start from the range test's rate
    return report, cfg


def _calibrate(base: RunConfig, data: Any, out: Path, share: float, end: float, view: _Progress) -> tuple[Cost, Cost]:
    """What a bare run (a search trial) and a recorded run (the final run: probes, checkpoints) cost.

    Two runs of `base`, each until its mean epoch is known to `CALIBRATE_PRECISION`, for at most `share` CPU seconds
    and at least `CALIBRATE_EPOCHS` epochs (and never past `end`).
    """
    costs = []
    for recorded in (False, True):
        meter, t0 = EpochMeter(), cpu_seconds()
        callbacks = [BudgetGuard(end), Enough(CALIBRATE_EPOCHS, t0 + share, CALIBRATE_PRECISION), meter, view]
        cfg = trial_config(base, {}, CALIBRATE_MAX_EPOCHS)
        if recorded:
            start_run(cfg, runs_dir=out, name="calibrate", progress=False, data=data, callbacks=callbacks)
        else:
            run(cfg, callbacks=callbacks, progress=False, data=replace(data, test_views=()))  # as a trial tests: one view
        cost = meter.cost(cpu_seconds() - t0)
        assert cost is not None  # fit ends every epoch it starts, a stopped one included
        costs.append(cost)
    return costs[0], costs[1]


def _past(used: float, share: float, epoch_s: float, budget: float) -> bool:
    """Whether a stage that spent `used` CPU-s of its `share` passed it by one final-run epoch and `FINAL_SLACK` of the budget."""
    return used - share >= max(epoch_s, FINAL_SLACK * budget)


def _overran(stage: str, used: float, share: float, epoch_s: float, budget: float, deviations: list[str]) -> None:
    """Record `stage` as a deviation when it spent more than its share by at least one final-run epoch (what it cost the final run)
    and `FINAL_SLACK` of the budget: a table's 0.035 s epoch made 0.1 s past an 18.6 s share one."""
    if _past(used, share, epoch_s, budget):
        deviations.append(f"the {stage} stage spent {used:.1f} CPU-s of its {share:.1f} s share; the final run lost about {int((used - share) // epoch_s)} epochs to it")


def _final(base: RunConfig, values: dict[str, Any], data: Any, out: Path, epochs: int, cost: Cost, aim: float, end: float, view: _Progress,
           notes: list[str], deviations: list[str]) -> tuple[Any, RunConfig, BudgetGuard]:  # fmt: skip
    """The final run of `epochs` epochs; its guard stops it at `end` only as a last resort.

    If it diverges it is retrained at a lower rate for what `cost` says fits before `aim` (CPU clock);
    a divergence it cannot retrain is a deviation (its schedule did not finish).
    """
    final_cfg = trial_config(base, values, epochs)
    guard, fitted = BudgetGuard(end), FitToBudget(aim)
    done = start_run(final_cfg, runs_dir=out, name="final", progress=False, data=data, callbacks=[fitted, guard, view])
    _replanned(fitted, aim, notes, deviations)
    attempt = 1
    while done.result.status == DIVERGED:
        # The final run is longer than any run that ranked its rate, so a rate that was stable for the
        # horizon can still blow up; the lectures' remedy for an exploding loss is a lower rate.
        again = cost.epochs_for(aim - cpu_seconds())
        why = f"the final run diverged at epoch {done.result.epochs} ({done.result.stop_reason})"
        if attempt == FINAL_ATTEMPTS or again < 1:
            reason = f"{attempt} attempts" if attempt == FINAL_ATTEMPTS else "the budget left buys no rerun"
            deviations.append(f"{why} of {final_cfg.train.epochs}, {reason}: its schedule did not finish; lower train.lr in best.toml "
                              f"(now {final_cfg.train.lr:.3g}) and train it")  # fmt: skip
            break
        attempt += 1
        lr = final_cfg.train.lr * FINAL_LR_CUT
        notes.append(f"{why}; retrained at train.lr {lr:.3g} ({FINAL_LR_CUT:.3g} x {final_cfg.train.lr:.3g}) for {again} epochs")
        final_cfg = trial_config(base, {**values, "train.lr": lr}, again)
        fitted = FitToBudget(aim)
        done = start_run(final_cfg, runs_dir=out, name=f"final-{attempt}", progress=False, data=data, callbacks=[fitted, guard, view])
        _replanned(fitted, aim, notes, deviations)
    if fitted.changes:  # the length it re-planned itself to is the one best.toml trains
        final_cfg = replace(final_cfg, train=replace(final_cfg.train, epochs=fitted.changes[-1][2]))
    return done, final_cfg, guard


def starting_values(cfg: RunConfig, space: dict[str, Param]) -> dict[str, Any]:
    """`cfg`'s own values of the searched keys (an unset learning rate: the optimiser's default): where the search starts.

    A log-scale key set to 0 (no weight decay) starts at its range's low end, which a log scale
    has instead of zero (1e-6 of L2 changes nothing a run can measure).
    """
    raw = cfg.to_dict()
    values = {}
    for key, param in space.items():
        section, name = key.split(".", 1)
        value = raw[section].get(name)
        if key == "train.lr" and value is None:
            value = default_lr(cfg.train.optimizer)
        if param.kind == "log_uniform" and isinstance(value, (int, float)) and value <= 0:
            value = param.low
        values[key] = value
    return values


def covering(space: dict[str, Param], values: dict[str, Any]) -> dict[str, Param]:
    """`space` with each numeric range widened to take `values` (a configured rate may sit outside the range test's span)."""
    out = {}
    for key, param in space.items():
        value = values.get(key)
        if param.numeric and isinstance(value, (int, float)) and (param.kind != "log_uniform" or value > 0):
            lo, hi = param.t_range()
            t = param.to_t(value)
            param = param.with_t_range(min(lo, t), max(hi, t)) if not lo <= t <= hi else param
        out[key] = param
    return out


def grace_epochs(coarse: int) -> int:
    """The epochs a coarse trial trains before successive halving may judge it: a third of its length.

    Judged at epoch 1 a trial is still near chance and its rank says little about where its
    schedule ends (62 of 76 pruned trials were cut there); at a third of the schedule the rate
    has warmed up and the curves have separated. The first rung is then the only one inside a
    coarse trial, and a second-stage trial (twice as long) meets it and the one 3x later.
    """
    return max(1, round(coarse / 3))


def first_stage_verdict(trials: list[Any], first: int, n: int, chance: float) -> tuple[Incumbent | None, dict[str, Any]]:
    """The incumbent test once the first stage's `first` slots have all finished (slot 0 is the incumbent), and the best other
    trial's values; (None, {}) before.

    A trial the pruner stopped counts with the last accuracy it reported: it was compared, so it
    counts among the configurations the best was picked from. The incumbent's own curve says
    whether the trials were long enough to judge (`ranking.still_rising`; `chance`: 1 / classes).
    """
    slots = slot_trials(trials)
    stage = [slots.get((1, i)) for i in range(first)]
    if not all(t is not None and t.state.is_finished() for t in stage):
        return None, {}
    scores = [_last_score(t) for t in stage]
    others = [(x, t) for x, t in zip(scores[1:], stage[1:]) if x is not None]
    best = max(others, key=lambda o: o[0])[1].user_attrs.get("config", {}) if others else {}
    curve = [v for _, v in sorted(stage[0].intermediate_values.items())]
    return incumbent_test(scores[0], [x for x, _ in others], n, still_rising(curve, chance)), best


def _folds_verdict(base: RunConfig, incumbent: dict[str, Any], best: dict[str, Any], epochs: int, data: Any, seed: int, trials: int,
                   callbacks: list[Any]) -> Incumbent:  # fmt: skip
    """The incumbent test again on k-fold cross-validation: the start and the best first-stage trial, each on every fold at the stage's length.

    The best was picked from `trials` on the split, but its fold scores are measured afresh, so the
    margin is that of one comparison on the pooled samples; the start's late gain is its mean over its folds.
    """
    k = fold_count(data)
    curves: list[list[list[float]]] = []
    for values in (incumbent, best):
        runs = [run(trial_config(base, values, epochs), callbacks=callbacks, progress=False, data=fold).result.history.records
                for fold in folds(data, k, seed)]  # fmt: skip
        curves.append([[r["val_accuracy"] for r in records] for records in runs])
    means = [sum(c[-1] for c in runs) / len(runs) for runs in curves]
    rising = sum(still_rising(c, 1 / data.num_classes) for c in curves[0]) / k
    pooled = len(data.train.y) + len(data.val.y)
    verdict = incumbent_test(means[0], [means[1]], pooled, rising)
    return replace(verdict, trials=trials, folds=k)


def _last_score(trial: Any) -> float | None:
    """A trial's last validation accuracy: its value, or for a pruned one the last it reported (None: it failed)."""
    if trial.state == TrialState.COMPLETE:
        return trial.value
    reported = trial.intermediate_values
    return reported[max(reported)] if trial.state == TrialState.PRUNED and reported else None


def _replanned(fitted: FitToBudget, aim: float, notes: list[str], deviations: list[str]) -> None:
    """Say how the final run re-planned itself; one that had to shorten by more than FINAL_OVERRUN_LIMIT is a deviation."""
    for epoch, planned, epochs, per_epoch in fitted.changes:
        said = (f"the final run re-planned itself at epoch {epoch} from {planned} to {epochs} epochs: its own epochs cost "
                f"{per_epoch:.4f} CPU-s, so {epochs} end at the budget's end; its schedule was stretched to match")  # fmt: skip
        (deviations if epochs < (1 - FINAL_OVERRUN_LIMIT) * planned else notes).append(said)


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _top_configs(result: TuneResult, k: int, start: dict[str, Any] | None = None) -> list[tuple[dict[str, Any], float]]:
    """The values and scores of the k most promising trials, distinct values, never `start`'s (the first stage judged it).

    Later (longer) stages first; within one, the trials successive halving let train furthest, then the
    validation accuracy where they stopped (a pruned trial's last report). A stage whose pruner stopped
    all but one trial still has runners-up, ranked at the rung they reached: at 10 CPU-minutes on
    2,000-sample MNIST-1D only the winner and the start had completed, and the re-evaluation spent
    half its runs on a start the first stage had already beaten by 19 points.
    """
    reached = {t.number: (max(t.reported), t.reported[max(t.reported)]) for t in result.trials if t.status in (COMPLETED, PRUNED) and t.reported}
    order = sorted((t for t in result.trials if t.number in reached), key=lambda t: (-t.stage, -reached[t.number][0], -reached[t.number][1], t.number))
    picked: list[tuple[dict[str, Any], float]] = []
    for t in order:
        if t.values != start and t.values not in [values for values, _ in picked]:
            picked.append((t.values, t.score if t.score is not None else reached[t.number][1]))
    return picked[:k]


def auto(
    cfg: RunConfig,
    *,
    budget_s: float | None = None,
    out_dir: str | Path = "runs/auto",
    fix: bool = False,
    top: int = 2,
    seeds: int = 2,
    seed: int | None = None,
    progress: bool = True,
) -> AutoResult:
    """Check, range-test, search, re-evaluate and train the best of `cfg`'s model family within `budget_s` CPU seconds.

    Args:
        cfg: the base run config: data, model family (or model.script) and anything fixed
            (a schedule by name, augmentation); train.lr and weight decay are searched.
        budget_s: CPU seconds of this process for everything; default `default_budget_s()`.
        out_dir: where the search store, the final run, report.html, best.toml and auto.json go.
        fix: go on past error-level preflight findings, with the range test's learning rate.
        top, seeds: re-evaluate the `top` best configurations on `seeds` seeds each.
        seed: seeds the whole procedure: the checks' model, the search's proposals and trials, the
            re-evaluation (seeds seed+1 .. seed+seeds) and the final run; default cfg.train.seed.
            The data split keeps data.seed: every seed sees the same data.
        progress: the live status line on stderr.
    """
    budget = float(budget_s if budget_s is not None else default_budget_s())
    if top < 1 or seeds < 1:
        raise ConfigError(f"auto needs top >= 1 and seeds >= 1, got top={top}, seeds={seeds}")
    seed = cfg.train.seed if seed is None else seed
    cfg = replace(cfg, train=replace(cfg.train, seed=seed))  # one seed, one procedure: the final run included
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = cpu_seconds()
    clock: dict[str, float] = {}
    notes: list[str] = []
    deviations: list[str] = []
    data = load_data(cfg.data)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report_s = min(max(REPORT_SHARE * budget, REPORT_MIN_S), REPORT_MAX_S)
    end = start + budget - report_s  # every run ends by here; the reports take the rest

    def left() -> float:
        return end - cpu_seconds()

    with _Progress(budget, start, progress) as view:
        view.refresh("preflight")
        checks, base = _preflight(cfg, data, fix, budget, clock, notes)
        t0 = cpu_seconds()
        reference = baselines(data)
        if reference:
            clock["baselines"] = cpu_seconds() - t0
        if base.train.schedule == "none" and base.train.optimizer not in FULL_BATCH:
            # auto picks every run's length from the budget, so the rate must follow the length: one cosine
            # decay to 0 over each run (docs/lectures.md: anneal the learning rate) instead of a constant rate.
            base = replace(base, train=replace(base.train, schedule="cosine"))
            notes.append("the base config has no schedule; auto decays the rate with one cosine over each run (set train.schedule to choose another)")

        view.refresh("calibrate")
        t0 = cpu_seconds()
        bare, recorded = _calibrate(base, data, out, CALIBRATE_SHARE * budget, start + budget, view)
        bare_cal = bare
        clock["calibrate"] = cpu_seconds() - t0
        ratio = recorded.per_epoch_s / bare.per_epoch_s  # what probes and records add to an epoch, measured

        def as_recorded(measured: Cost) -> Cost:
            """A recorded run's cost from a bare epoch measured later (under the load of the moment) and calibration's ratio."""
            return Cost(measured.per_epoch_s * ratio, recorded.fixed_s)

        runs, before_search = top * seeds, max(left(), 0.0)
        planned = plan_budget(before_search, bare, recorded, runs)
        plan: dict[str, Any] = {
            "budget_s": budget, "clock": "time.process_time of this process", "report_share": REPORT_SHARE, "report_s": round(report_s, 3), "search_share": SEARCH_SHARE,
            "calibrated": {"bare": bare.to_dict(), "recorded": recorded.to_dict(), "recorded_over_bare": round(ratio, 3)},
            "planned": planned.to_dict(), "top": top, "seeds": seeds, "trials": planned.trials, "coarse_epochs": planned.coarse_epochs,
        }  # fmt: skip

        view.refresh("search")
        t0 = cpu_seconds()
        result, searched = None, None
        verdict: Incumbent | None = None
        if planned.trials:
            found = default_space(base, proposal=checks.suggested_lr, dropout=planned.trials >= 2 * COARSE_TRIALS and base.model.script is None)
            # The search starts from the configuration it was given (the profile's or the user's values), its first trial.
            incumbent = starting_values(base if any(f.severity == "error" for f in checks.findings) else cfg, found.space)
            settings = TuneSettings(strategy="coarse_to_fine", trials=planned.trials, epochs=planned.coarse_epochs, stages=2,
                                    epoch_growth=2.0, prune="halving", grace=grace_epochs(planned.coarse_epochs), seed=seed)  # fmt: skip
            job = Search(base, covering(found.space, incumbent), settings, None, "", out / "tune", incumbent=incumbent)
            guard, meter, first = BudgetGuard(t0 + planned.search_s), EpochMeter(), settings.stage_trials()[0]

            def stop(trials: list[Any]) -> bool:
                # Once its share is spent the search claims no more trials (their fixed costs alone would overrun it);
                # once its first stage is done, a search that did not beat where it started stops there.
                nonlocal verdict
                if verdict is None:
                    verdict, best = first_stage_verdict(trials, first, len(data.val.y), 1 / data.num_classes)
                    if verdict is not None and worth_folds(verdict, len(data.train.y) + len(data.val.y)) and fold_count(data) >= 2:
                        verdict = _folds_verdict(base, incumbent, best, settings.epochs, data, seed, verdict.trials, [guard, view])
                return cpu_seconds() >= guard.deadline or (verdict is not None and verdict.holds)

            work(job, data, on_change=lambda: view.refresh(), callbacks=[guard, meter, view], stop_when=stop)
            searched = meter.cost(cpu_seconds() - t0)
            result = collect(job.open(), job)
            notes += found.notes
            if verdict is not None:
                notes.append(verdict.describe())
                plan["incumbent"] = {"values": incumbent, **verdict.to_dict()}
            if guard.fired:
                notes.append(f"the search's share ({planned.search_s:.1f} CPU-s) ended it before all {planned.trials} planned trials finished")
            if result.best is None and not guard.fired:
                raise BabysitError("no search trial completed (all diverged or failed); see the search report in " + str(out / "tune"))
            if result.best is not None:
                view.refresh(best=result.best.score)
        searched_s = cpu_seconds() - t0  # the trials and their results: what the search's share pays for
        _overran("search", searched_s, planned.search_s, recorded.per_epoch_s, budget, deviations)
        if result is None or result.best is None:
            why = (f"the checks and calibration spent the budget ({budget - left() - report_s:.1f} of {budget:g} CPU-s)" if left() <= 0
                   else f"the search's share ({SEARCH_SHARE:.0%} of what was left: {SEARCH_SHARE * max(left(), 0.0):.1f} CPU-s, one trial "
                        f"{bare.of(1):.2f} s)" if not planned.trials else f"the search's share ({planned.search_s:.1f} CPU-s)")  # fmt: skip
            notes.append(f"{why} bought no complete search trial; the final run trains the base config (with the range test's rate) "
                         "for all the budget left; give a larger --budget for a search")  # fmt: skip
        if result is not None:
            write_report(result, out / "search.html")  # before the final run is planned, so its cost is planned around
        clock["search"] = cpu_seconds() - t0

        view.refresh("re-evaluate")
        t0 = cpu_seconds()
        # The search measured a bare run's cost over many runs, under the load of the moment: re-plan the rest from it.
        bare = searched or bare
        held = verdict is not None and verdict.holds
        beaten = job.incumbent if verdict is not None and not held else None  # the start lost its first stage: not a candidate
        top_trials = _top_configs(result, top, beaten) if result is not None and result.best is not None else []
        if held:
            top_trials = [(job.incumbent, verdict.score)]  # the search did not beat where it started: nothing to re-evaluate
        configs = [] if held else [values for values, _ in top_trials]
        # A validation split too small to resolve a percentage point ranks by k-fold cross-validation instead; top
        # configurations within its noise of each other are not re-evaluated at all (workflows.ranking).
        rank = ranking([score for _, score in top_trials], data) if configs else None
        # The start is not re-evaluated beside them: the first stage's verdict already discounted what a short trial owes
        # to learning fast (its lead had to pass the start's own late gain, `still_rising`), so a start that lost there
        # lost by more than a longer run closes; re-scoring it took a third of the re-evaluation.
        trainings = [(s, data) for s in range(1, seeds + 1)]  # (seed offset, data) of each configuration's runs
        if rank is not None:
            notes.append(rank.describe())
            plan["ranking"] = rank.to_dict()
            if rank.method == "kfold":
                trainings = list(enumerate(folds(data, rank.folds, seed), start=1))
            if rank.method == "none":
                configs = []
        if configs and len(configs) * len(trainings) != runs and planned.horizon:
            # k-fold ranks with another number of runs than the plan's seeds: the plan, made again with them (from the
            # same costs and budget), is what the final run is held to.
            h, final = split_rest(before_search - planned.search_s, bare_cal, recorded, len(configs) * len(trainings))
            planned = replace(planned, horizon=h, reevaluate_s=bare_cal.of(h, len(configs) * len(trainings)) if h else 0.0, final_epochs=final,
                              final_s=recorded.of(final))  # fmt: skip
            plan["planned"] = planned.to_dict()
        runs = len(configs) * len(trainings)
        horizon, _ = split_rest(max(left(), 0.0), bare, as_recorded(bare), runs) if configs else (0, 0)
        reevaluate_s = bare.of(horizon, runs) if horizon else 0.0
        deadline, meter, rows = t0 + reevaluate_s, EpochMeter(), []
        if configs and not horizon:
            notes.append("the budget left after the search buys no re-evaluation run; the final run trains the search's best")
        for values in configs if horizon else []:
            scores = []
            for s, on in trainings:
                if cpu_seconds() >= deadline:
                    break
                c = trial_config(base, values, horizon)
                c = replace(c, train=replace(c.train, seed=base.train.seed + s))
                cut = BudgetGuard(deadline)
                r = run(c, callbacks=[cut, meter, view], progress=False, data=replace(on, test_views=())).result  # ranked on val
                if cut.fired:  # a run stopped short is not scored beside complete ones
                    break
                scores.append(r.history.records[-1]["val_accuracy"] if r.history.records else float("nan"))
            if scores:
                rows.append({"values": values, "val_accuracy": scores})
        # Every configuration is ranked on the same seeds or folds: those all of them completed.
        common = min((len(r["val_accuracy"]) for r in rows), default=0)
        if configs and horizon and not rows:
            notes.append(f"the re-evaluation's share ({reevaluate_s:.1f} CPU-s) ended it early, before any configuration completed a run: "
                         "the final run trains the search's best")  # fmt: skip
        elif rows and (common < len(trainings) or len(rows) < len(configs)):
            notes.append(f"the re-evaluation's share ({reevaluate_s:.1f} CPU-s) ended it early: {len(rows)} configurations ranked on the "
                         f"{common} {'folds' if rank is not None and rank.method == 'kfold' else 'seeds'} each of them completed, of {len(trainings)} planned")  # fmt: skip
        for row in rows:
            finite = [x for x in row["val_accuracy"][:common] if math.isfinite(x)]
            row["mean"] = sum(finite) / len(finite) if finite else None
        view.refresh(best=max((r["mean"] for r in rows if r["mean"] is not None), default=None))
        clock["reevaluate"] = cpu_seconds() - t0
        measured = meter.cost(clock["reevaluate"])  # the latest measure of an epoch, on the configurations the final run picks from
        if measured is not None and rank is not None and rank.method == "kfold":
            # A fold's epoch trains (k-1)/k of train+val, the final run's the train split: an epoch costs in proportion to its samples.
            measured = measured.for_samples(len(trainings[0][1].train.y), len(data.train.y))
        bare = measured or bare
        final_cost = as_recorded(bare)
        _overran("re-evaluation", clock["reevaluate"], reevaluate_s, final_cost.per_epoch_s, budget, deviations)
        plan.update(horizon_epochs=horizon, reevaluate_s=round(reevaluate_s, 3))
        fallback = {"values": top_trials[0][0] if top_trials else {}}  # the search's best of its longest stage
        chosen = max((r for r in rows if r["mean"] is not None), key=lambda r: r["mean"], default=fallback)

        view.refresh("final")
        t0 = cpu_seconds()
        # The final run's length comes from what is left and a recorded epoch's cost measured now, so its
        # schedule decays to its end inside the budget; its guard is a last resort (FINAL_OVERRUN_LIMIT).
        epochs = final_cost.epochs_for(left())
        final_end = end + FINAL_OVERRUN_LIMIT * budget
        if epochs < planned.final_epochs:
            deviations.append(f"the final run was re-planned from {planned.final_epochs} to {epochs} epochs before it started "
                              f"(a recorded epoch now costs {final_cost.per_epoch_s:.3f} CPU-s, calibration measured {recorded.per_epoch_s:.3f}; "
                              f"{max(left(), 0.0):.1f} s were left for it, {planned.final_s:.1f} s planned)")  # fmt: skip
        if epochs < 1:
            # The budget is spent: a model still has to come out, so one epoch trains past the budget, and says so.
            epochs, final_end = 1, math.inf
            deviations.append("the budget was spent before the final run; it trained 1 epoch past the budget: give a larger --budget")
        plan.update(final_epochs_planned=planned.final_epochs, final_epochs=epochs, final_epoch_s=round(final_cost.per_epoch_s, 4))
        # A budget that buys many times the length the re-evaluation validated trains an ensemble of runs about
        # FINAL_FACTOR x that long instead of one run stretched over all of it (workflows.members).
        count = member_count(epochs, horizon if rows else 0)
        first_end = end
        if count > 1:  # the first run's share: all the runs as long, the others bare
            epochs = max(1, first_share(left(), count, final_cost, bare))
            first_end = t0 + final_cost.of(epochs)  # final_epochs stays what the stage bought in all, which a re-plan is judged by
        done, final_cfg, final_guard = _final(base, chosen["values"], data, out, epochs, final_cost, first_end, final_end, view, notes, deviations)
        # final_epochs: its length when it started; final_epochs_replanned: the length its own epochs' cost re-planned it to.
        plan.update(final_epochs_replanned=final_cfg.train.epochs, final_epochs_trained=done.result.epochs)
        test_accuracy, test_single = done.result.test_accuracy, done.result.test_accuracy_single
        if count > 1 and done.result.status == COMPLETED:
            seeds_after = [base.train.seed + seeds + k for k in range(1, count)]  # apart from the re-evaluation's seeds
            extra = train_members(base, chosen["values"], data, seeds_after, bare, end, final_end, horizon, [view], notes)
            first = Member(final_cfg.train.seed, done.result.epochs, done.result.status, done.result.test_accuracy, done.model)
            if extra:
                test_accuracy, test_single = ensemble_accuracy([first.model, *(m.model for m in extra)], data)
                save_ensemble(out / "ensemble.pt", final_cfg, [first, *extra])
            plan["ensemble"] = {"planned": count, "epochs": epochs, "members": [first.to_dict(), *(m.to_dict() for m in extra)],
                                "test_accuracy": test_accuracy, "horizon_epochs": horizon, "saved": "ensemble.pt" if extra else None}  # fmt: skip
        clock["final"] = cpu_seconds() - t0
        final_share = max(end - t0, final_cost.of(epochs))  # all that was left when it started
        if final_guard.fired:
            deviations.append(f"the final run was cut at epoch {done.result.epochs} of {final_cfg.train.epochs} by the last-resort guard "
                              f"({FINAL_OVERRUN_LIMIT:.0%} of the budget past its planned end): its schedule did not finish "
                              f"(an epoch cost more than the {final_cost.per_epoch_s:.3f} CPU-s planned); train best.toml to finish it")  # fmt: skip
        elif final_end != math.inf and _past(clock["final"], final_share, final_cost.per_epoch_s, budget):
            # The last epoch and the test evaluation pass its share by a little in every run.
            deviations.append(f"the final stage spent {clock['final']:.1f} CPU-s of its {final_share:.1f} s share: it ran "
                              f"{clock['final'] - final_share:.1f} s into the reports' reserve")  # fmt: skip

        view.refresh("report")
        t0 = cpu_seconds()
        checks.save(done.record)
        ensemble = plan.get("ensemble") or {}
        trained = ensemble.get("members", [])
        config_text = f"# babysit auto: {final_cfg.data.name} {final_cfg.model.name}, {final_cfg.train.epochs} epochs\n"
        if len(trained) > 1:
            config_text += (f"# delivered as an ensemble of {len(trained)} runs of this config, train.seed {', '.join(str(m['seed']) for m in trained)} "
                            f"(weights: ensemble.pt, read by babysit.load_ensemble)\n")  # fmt: skip
        config_text += tomli_w.dumps(final_cfg.to_dict())
        config_path = atomic_write_text(out / "best.toml", config_text)
        report = run_report(done.record, data=data)
        page = report.page()
        sec = page.section("babysit auto: budget and search")
        for d in deviations:  # what did not go as planned comes before everything else
            sec.text(f"deviation from the plan: {d}", "sev-error")
        sec.text(f"budget {budget:.0f} CPU-seconds ({plan['clock']}); search report: search.html; config: best.toml")
        if len(trained) > 1:
            sec.text(f"delivered: the mean of the class probabilities of {len(trained)} independent runs of the chosen configuration (ensemble.pt), "
                     f"test accuracy {_pct(test_accuracy)}; the curves and checks below are the first run's (test {_pct(done.result.test_accuracy)})")  # fmt: skip
            sec.table(["ensemble member", "train.seed", "epochs", "test accuracy"],
                      [[str(i + 1), str(m["seed"]), str(m["epochs"]), _pct(m["test_accuracy"])] for i, m in enumerate(trained)])  # fmt: skip
        sec.text(split_text(plan))
        sec.table(["stage", "CPU seconds"], [[k, f"{v:.1f}"] for k, v in clock.items()])
        sec.table(["planned", "value"], [[k, json.dumps(json_safe(v)) if isinstance(v, dict) else str(v)] for k, v in plan.items()])
        if rank is not None:
            sec.text(f"ranking: {rank.describe()}")
        per = "fold" if rank is not None and rank.method == "kfold" else "seed"
        sec.table(["re-evaluated configuration", f"val accuracy per {per} ({horizon} epochs)", "mean"],
                  [[json.dumps(json_safe(r["values"])), ", ".join(f"{x:.4f}" for x in r["val_accuracy"]), "" if r["mean"] is None else f"{r['mean']:.4f}"] for r in rows])  # fmt: skip
        if reference:
            final_val = done.result.history.records[-1].get("val_accuracy") if done.result.history.records else None
            shown = [["babysit auto (this run)", _pct(final_val), _pct(test_accuracy), f"{clock['final']:.1f}"]]
            sec.table(["model", "val accuracy", "test accuracy", "CPU seconds"], shown + [[b.name, _pct(b.val_accuracy), _pct(b.test_accuracy), f"{b.cpu_s:.2f}"] for b in reference])
        for w in result.warnings if result is not None else []:
            sec.text(f"edge: {w}", "sev-warning")
        page.sections.insert(0, page.sections.pop())
        report_path = page.write(out / "report.html")
        clock["report"] = cpu_seconds() - t0
    spent = cpu_seconds() - start
    if spent > budget:
        # Known only once the report is written, so the JSON line and the printed summary say it, not report.html.
        deviations.append(f"auto spent {spent:.1f} CPU-s, {spent / budget:.0%} of the {budget:g} s budget (the report took {clock['report']:.1f} s of its {report_s:.1f} s share)")
    final = AutoResult(done.result.status, test_accuracy, final_cfg, config_path, config_text, report_path, out, clock, plan, rows,
                       [str(w) for w in (result.warnings if result is not None else [])] + notes, reference, deviations, spent,
                       done.result.test_views, test_single)  # fmt: skip
    atomic_write_text(out / "auto.json", json.dumps(json_safe(final.summary()), indent=2) + "\n")
    return final


def split_text(plan: dict[str, Any]) -> str:
    """How the budget was split, in one sentence (the report's and the CLI's)."""
    p = plan["planned"]
    start = plan.get("incumbent") or {}
    if start.get("holds"):
        samples = f"{start['n']} {'samples of train+val over ' + str(start['folds']) + ' folds' if start.get('folds') else 'validation samples'}"
        why = (f"no trial beat the starting configuration by more than the {start['margin']:.1%} chance explains on {samples}" if not start.get("too_short")
               else f"no trial beat the starting configuration by more than the {start['rising']:.1%} it gained itself over its trial's second half "
                    f"(trials this short rank how fast a configuration learns, not where it ends)")  # fmt: skip
        return (f"split: the search stopped after its first stage ({start['trials'] + 1} trials of {plan['coarse_epochs']} epochs): {why}, so nothing was "
                f"re-evaluated and the final run trained the starting configuration for {plan['final_epochs_trained']} epochs ({p['final_epochs']} planned "
                f"before the search); {plan['report_s']:.1f} CPU-s kept for the reports")  # fmt: skip
    ensemble = plan.get("ensemble") or {}
    if len(ensemble.get("members", [])) > 1:
        lengths = [m["epochs"] for m in ensemble["members"]]
        final = (f"the final stage, an ensemble of {len(lengths)} runs of {min(lengths)}-{max(lengths)} epochs (the budget bought at least two "
                 f"final runs of {FINAL_FACTOR}x the {plan['horizon_epochs']} epochs that ranked the configuration: independent runs, "
                 f"their predictions averaged)")  # fmt: skip
    else:
        final = f"the final run, {FINAL_FACTOR}x as long or longer ({plan['final_epochs_trained']} epochs trained, {p['final_epochs']} planned)"
    if not plan["trials"]:
        return f"split: no search (its share bought fewer than {MIN_TRIALS} one-epoch trials); the final run trained {plan['final_epochs_trained']} epochs ({p['final_epochs']} planned)"
    return (f"split: search {plan['search_share']:.0%} of what the checks and calibration left ({plan['trials']} trials, {plan['coarse_epochs']} then "
            f"{2 * plan['coarse_epochs']} epochs, {p['search_s']:.1f} CPU-s), then re-evaluation runs of {plan['horizon_epochs']} epochs "
            f"({plan['reevaluate_s']:.1f} CPU-s in all, at most the final run's) and {final}, sized by measured epoch and run costs; "
            f"{plan['report_s']:.1f} CPU-s ({plan['report_s'] / plan['budget_s']:.0%} of the budget) kept for the reports")  # fmt: skip
