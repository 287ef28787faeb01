"""`auto`: the lectures' whole procedure, unattended, within one CPU budget.

    done = bs.auto(bs.build_config({"data": {"name": "mnist1d"}, "model": {"name": "convnet"}}), budget_s=600)
    done.test_accuracy, done.report_path, done.config_path

The stages, in the lectures' order (docs/lectures.md; CS231n Neural Networks 3):
1. preflight: the checks (`check`) on the configured model; error-level findings
   stop here unless `fix` (then the range test's learning rate replaces the configured one);
2. lr range: the learning-rate range test proposes a rate; the search centres on it;
3. calibrate: a look at the curve: the base config, recorded as the final run will be
   (probes, checkpoints, same batch size and augmentation), at a constant rate until
   its validation loss stops improving or its share is spent: it measures what a
   recorded epoch costs and how long training pays (`workflows.budget`);
4. search: coarse random search on log scales over lr and weight decay (and
   dropout when the budget buys 16+ trials), then one narrowing stage around the
   best (coarse_to_fine, with its edge warnings), with divergence pruning and
   successive halving;
5. re-evaluate: the top few of the last stage retrained on more than one seed at
   half the final run's length (one successive-halving rung below it), because a
   short trial's ranking does not predict a long run (it picks too little
   regularization) and one seed's is noise;
6. final: the best mean configuration trained with the rest of the budget
   (`FINAL_FACTOR` times the horizon it was ranked at), recorded with probes;
7. report: the run report with the checks, a budget table and the re-evaluation,
   the search report beside it, and the exported TOML config.

The budget is CPU seconds of this process (`time.process_time`: every thread of
it; panda mode trains every trial here, so there are no child processes to add).
After preflight and calibration the rest is split: `SEARCH_SHARE` to the search,
`REPORT_SHARE` of the whole kept for the reports, the remainder over the
re-evaluation runs (h epochs each, at the search's measured cost of a bare epoch) and
the final run (at least `FINAL_FACTOR` x h epochs, at the calibration's cost of a
recorded one): the final run is the model the user gets, so it gets the largest single
share. When the curve stopped improving within the look, no run is planned longer than
it pays (h at most its useful epochs, the final run `FINAL_FACTOR` x h) and the
search gets what that frees. A stage that runs past its share is stopped at the next
batch by a budget guard; the final run's guard is the budget's end, and a final run
stopped before its schedule ends, or trained past the budget, is a deviation, listed
first in the report and in the JSON. Since the budget sets every run's
length, a base without a learning-rate schedule gets one cosine decay over each run. If the budget buys no complete search
trial, the final run trains the base config (with the range test's rate) and says so. A final
run that diverges is retrained with the rest of the budget at half a decade lower rate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import tomli_w
from rich.console import Console
from rich.live import Live
from rich.text import Text

from babysit.build import load_data, model_from_config, run
from babysit.checks.preflight import PIPELINE, CheckReport, check
from babysit.config import RunConfig
from babysit.errors import BabysitError, ConfigError
from babysit.io import atomic_write_text, json_safe
from babysit.optim.optimizers import FULL_BATCH
from babysit.report.run_report import run_report
from babysit.status import DIVERGED, STOPPED
from babysit.tune.defaults import default_space
from babysit.tune.report import write_report
from babysit.tune.results import TuneResult, collect
from babysit.tune.runner import Execution, Search, execute, trial_config
from babysit.tune.search import TuneSettings
from babysit.workflows.baselines import Baseline, baselines
from babysit.workflows.budget import FINAL_FACTOR, BudgetGuard, Calibration, EpochClock, Rest, cpu_seconds, default_budget_s, parse_budget, plan_rest
from babysit.workflows.recorded import start_run

SEARCH_SHARE = 0.35  # of the budget left after preflight and calibration (more when the curve caps the runs' length)
REPORT_SHARE = 0.05  # kept back for writing the reports; the final run's slack when its cost was misjudged
CALIBRATE_SHARE = 0.1  # the look at the curve stops at this share of the budget left, if the curve has not stopped first
CALIBRATE_PATIENCE = 10  # epochs without a new lowest validation loss that end the look (unless the recipe sets train.patience)
LOOK_EPOCHS = 10_000  # the look's nominal length: its share of the budget or its patience ends it first
COARSE_TRIALS = 16  # a search of this many trials per stage also searches dropout
FINAL_ATTEMPTS = 3  # a final run that diverges is retrained at a lower rate at most twice
FINAL_LR_CUT = 10**-0.5  # half a decade on the log scale the search used


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
    plan: dict[str, Any]  # the budget split as planned
    reevaluated: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    baselines: list[Baseline] = field(default_factory=list)  # what a user would try first, on the same splits
    deviations: list[str] = field(default_factory=list)  # where the procedure did not go as planned (a run cut short, the budget overrun)

    @property
    def cpu_minutes(self) -> float:
        return sum(self.stages.values()) / 60.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready (what `babysit auto --json` prints and auto.json holds)."""
        return {
            "deviations": self.deviations,  # first: what did not go as planned
            "status": self.status,
            "test_accuracy": self.test_accuracy,
            "cpu_minutes": round(self.cpu_minutes, 3),
            "budget_spent": round(sum(self.stages.values()) / self.plan["budget_s"], 3),
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


def _preflight(cfg: RunConfig, data: Any, fix: bool, clock: dict[str, float]) -> tuple[CheckReport, RunConfig]:
    """The checks, then the range test (timed apart); stop on errors unless `fix`."""
    t0 = cpu_seconds()
    model = model_from_config(cfg.model, data, seed=cfg.train.seed)
    first = check(model, data, cfg.train, only=[n for n in PIPELINE if n != "lr_range"], progress=False)
    clock["preflight"] = cpu_seconds() - t0
    t0 = cpu_seconds()
    lr = check(model, data, cfg.train, only=["lr_range"], progress=False)
    clock["lr_range"] = cpu_seconds() - t0
    report = CheckReport(first.results + lr.results, suggested_lr=lr.suggested_lr)
    errors = [f for f in report.findings if f.severity == "error"]
    if errors and not fix:
        raise BabysitError(f"preflight found {len(errors)} error(s), first: {errors[0].title}; fix it ({errors[0].fix}) or pass --fix")
    if report.suggested_lr is not None:
        cfg = replace(cfg, train=replace(cfg.train, lr=report.suggested_lr))  # the lectures start from the range test's rate
    return report, cfg


def _stage_sizes(cal: Calibration, left: float, top: int, seeds: int) -> dict[str, Any]:
    """The search's share and shape from the calibration (see the module docstring and `workflows.budget`).

    A bare search epoch costs at most a recorded one, so planning with the recorded cost
    errs towards a search that ends under its share; the rest is re-planned from what it measured.
    """
    per_epoch = cal.per_epoch_s
    if cal.useful_epochs is None:
        search_s = SEARCH_SHARE * left
        horizon = max(1, cal.epochs_for((left - search_s) / (top * seeds + FINAL_FACTOR)) if left > search_s else 1)
    else:  # the curve caps every run's length: whatever the capped runs leave buys more search trials
        horizon = cal.useful_epochs
        search_s = max(SEARCH_SHARE * left, left - cal.run_cost((top * seeds + FINAL_FACTOR) * horizon))
    search_epochs = search_s / per_epoch
    coarse = max(1, min(max(1, horizon // 2), round(search_epochs / 24)))
    # Two stages, the second training twice as long: trials * (coarse + 2 coarse) / 2 epochs in all.
    trials = max(4, int(2 * search_epochs / (3 * coarse)))
    return {"search_s": search_s, "horizon_epochs": horizon, "coarse_epochs": coarse, "trials": trials}


def _calibrate(base: RunConfig, data: Any, out: Path, deadline: float, view: _Progress) -> Calibration:
    """The look at the curve: `base` as the final run pays it (recorded, probes on) at a constant rate, until
    the validation loss stops improving or the CPU clock passes `deadline` (docs/lectures.md: first train
    without decay, look at the curve, then decide where to decay)."""
    patience = base.train.patience or CALIBRATE_PATIENCE
    look = trial_config(base, {"train.schedule": "none", "train.patience": patience, "train.monitor": "val_loss"}, LOOK_EPOCHS)
    clock, guard = EpochClock(), BudgetGuard(deadline)
    t0 = cpu_seconds()
    done = start_run(look, runs_dir=out, name="calibrate", progress=False, data=data, callbacks=[guard, clock, view])
    plateaued = done.result.status == STOPPED and not guard.fired
    return Calibration.measure(cpu_seconds() - t0, clock, done.result.history.records, plateaued)


def _final(base: RunConfig, values: dict[str, Any], data: Any, out: Path, cal: Calibration, sized: Rest, aim: float, end: float,
           view: _Progress, notes: list[str], deviations: list[str]) -> tuple[Any, RunConfig]:  # fmt: skip
    """The final run, sized to finish by `aim` (CPU clock) with the calibration's recorded cost; `end` is the budget's end.

    When the curve capped the plan, the final run trains `sized.final_epochs` at most; otherwise all the
    budget buys. Its guard stops it at `end` only: the report's share is its slack. Anything that keeps it
    from finishing its schedule inside the budget is added to `deviations`.
    """
    buyable = cal.epochs_for(aim - cpu_seconds())
    epochs = min(sized.final_epochs, buyable) if sized.capped else buyable
    if epochs < 1:
        # The budget is spent: a model still has to come out, so one epoch trains past it, and says so.
        epochs, end = 1, math.inf
        deviations.append(f"the budget was spent before the final run (it would buy {buyable} epochs); the final run trained 1 epoch past the budget: give a larger --budget")
    final_cfg = trial_config(base, values, epochs)
    guard = BudgetGuard(end)
    done = start_run(final_cfg, runs_dir=out, name="final", progress=False, data=data, callbacks=[guard, view])
    attempt = 1
    while done.result.status == DIVERGED:
        # The final run is longer than any run that ranked its rate, so a rate that was stable for the
        # horizon can still blow up; the lectures' remedy for an exploding loss is a lower rate.
        again = cal.epochs_for(aim - cpu_seconds())
        again = min(again, sized.final_epochs) if sized.capped else again
        why = f"the final run diverged at epoch {done.result.epochs} ({done.result.stop_reason})"
        if attempt == FINAL_ATTEMPTS or again < max(1, sized.horizon):
            reason = f"{attempt} attempts" if attempt == FINAL_ATTEMPTS else "the budget left buys no rerun"
            notes.append(f"{why}, {reason}; lower train.lr in best.toml (now {final_cfg.train.lr:.3g}) and train it")
            break
        attempt += 1
        lr = final_cfg.train.lr * FINAL_LR_CUT
        notes.append(f"{why}; retrained at train.lr {lr:.3g} ({FINAL_LR_CUT:.3g} x {final_cfg.train.lr:.3g}) for {again} epochs")
        final_cfg = trial_config(base, {**values, "train.lr": lr}, again)
        done = start_run(final_cfg, runs_dir=out, name=f"final-{attempt}", progress=False, data=data, callbacks=[guard, view])
    if done.result.status == STOPPED:
        by = "the budget" if guard.fired else done.result.stop_reason
        deviations.append(f"the final run was stopped at epoch {done.result.epochs} of {final_cfg.train.epochs} by {by}: its schedule did not finish "
                          f"(the rate had not decayed); train best.toml to finish it")  # fmt: skip
    return done, final_cfg


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _top_configs(result: TuneResult, k: int) -> list[dict[str, Any]]:
    """The values of the k best complete trials, later (longer) stages first, distinct values."""
    done = sorted((t for t in result.trials if t.score is not None), key=lambda t: (-t.stage, -t.score, t.number))
    picked: list[dict[str, Any]] = []
    for t in done:
        if t.values not in picked:
            picked.append(t.values)
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
    data = load_data(cfg.data)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _Progress(budget, start, progress) as view:
        view.refresh("preflight")
        checks, base = _preflight(cfg, data, fix, clock)
        t0 = cpu_seconds()
        reference = baselines(data)
        if reference:
            clock["baselines"] = cpu_seconds() - t0
        notes: list[str] = []
        if base.train.schedule == "none" and base.train.optimizer not in FULL_BATCH:
            # auto picks every run's length from the budget, so the rate must follow the length: one cosine
            # decay to 0 over each run (docs/lectures.md: anneal the learning rate) instead of a constant rate.
            base = replace(base, train=replace(base.train, schedule="cosine"))
            notes.append("the base config has no schedule; auto decays the rate with one cosine over each run (set train.schedule to choose another)")

        view.refresh("calibrate")
        t0 = cpu_seconds()
        cal = _calibrate(base, data, out, t0 + CALIBRATE_SHARE * max(budget - (t0 - start), 0.0), view)
        clock["calibrate"] = cpu_seconds() - t0
        left = budget * (1 - REPORT_SHARE) - (cpu_seconds() - start)
        plan = {"budget_s": budget, "clock": "time.process_time of this process", "per_epoch_s": round(cal.per_epoch_s, 4),
                "fixed_s": round(cal.fixed_s, 3), "useful_epochs": cal.useful_epochs, "search_share": SEARCH_SHARE, "top": top, "seeds": seeds,
                **_stage_sizes(cal, max(left, 0.0), top, seeds)}  # fmt: skip
        if left <= 0:
            # The checks and calibration spent the budget: a search would only overrun it.
            plan["search_s"] = 0.0

        view.refresh("search")
        found = default_space(base, proposal=checks.suggested_lr, dropout=plan["trials"] >= 2 * COARSE_TRIALS and base.model.script is None)
        settings = TuneSettings(strategy="coarse_to_fine", trials=plan["trials"], epochs=plan["coarse_epochs"], stages=2,
                                epoch_growth=2.0, prune="halving", seed=seed)  # fmt: skip
        job = Search(base, found.space, settings, None, "", out / "tune")
        t0 = cpu_seconds()
        guard = BudgetGuard(t0 + plan["search_s"])
        handle = execute(job, Execution("panda", 1), data, on_change=lambda: view.refresh(), callbacks=[guard, view])
        result = collect(handle, job)
        clock["search"] = cpu_seconds() - t0
        notes += found.notes
        if result.best is None and not guard.fired:
            raise BabysitError("no search trial completed (all diverged or failed); see the search report in " + str(out / "tune"))
        if result.best is None:
            spent = f"the checks and calibration spent the budget ({budget - left:.1f} of {budget:g} CPU-s)" if left <= 0 else f"the search share ({plan['search_s']:.0f} CPU-s)"
            notes.append(f"{spent} bought no complete trial; the final run trains the base config; give a larger --budget")
        else:
            view.refresh(best=result.best.score)
        write_report(result, out / "search.html")

        view.refresh("re-evaluate")
        t0 = cpu_seconds()
        # The search measured what a bare epoch costs (with evaluation, over many configs); the calibration what a
        # recorded one costs: the re-evaluation runs bare, the final run recorded.
        trained = sum(len(t.history) for t in result.trials)
        bare = clock["search"] / trained if trained else cal.per_epoch_s
        rest = budget * (1 - REPORT_SHARE) - (t0 - start)
        sized = plan_rest(rest, bare, cal, top, seeds)
        horizon = sized.horizon
        plan.update(bare_epoch_s=round(bare, 4), horizon_epochs=horizon, reevaluation_seeds=sized.seeds, capped_by_curve=sized.capped)
        deadline = t0 + max(0.0, rest - cal.run_cost(sized.final_epochs))  # everything but the final run's cost
        rows = []
        for values in _top_configs(result, top) if result.best is not None else []:
            scores = []
            for s in range(1, sized.seeds + 1):
                c = trial_config(base, values, horizon)
                c = replace(c, train=replace(c.train, seed=base.train.seed + s))
                r = run(c, callbacks=[BudgetGuard(deadline), view], progress=False, data=data).result
                scores.append(r.history.records[-1]["val_accuracy"] if r.history.records else float("nan"))
            finite = [x for x in scores if math.isfinite(x)]
            rows.append({"values": values, "val_accuracy": scores, "mean": sum(finite) / len(finite) if finite else None})
            view.refresh(best=max((r["mean"] for r in rows if r["mean"] is not None), default=None))
        clock["reevaluate"] = cpu_seconds() - t0
        fallback = {"values": result.best.values if result.best is not None else {}}
        chosen = max((r for r in rows if r["mean"] is not None), key=lambda r: r["mean"], default=fallback)

        view.refresh("final")
        t0 = cpu_seconds()
        deviations: list[str] = []
        done, final_cfg = _final(base, chosen["values"], data, out, cal, sized, start + budget * (1 - REPORT_SHARE), start + budget, view, notes, deviations)
        plan["final_epochs"] = final_cfg.train.epochs
        clock["final"] = cpu_seconds() - t0

        view.refresh("report")
        t0 = cpu_seconds()
        checks.save(done.record)
        config_text = f"# babysit auto: {final_cfg.data.name} {final_cfg.model.name}, {final_cfg.train.epochs} epochs\n" + tomli_w.dumps(final_cfg.to_dict())
        config_path = atomic_write_text(out / "best.toml", config_text)
        report = run_report(done.record, data=data)
        page = report.page()
        sec = page.section("babysit auto: budget and search")
        sec.text(f"budget {budget:.0f} CPU-seconds ({plan['clock']}); search report: search.html; config: best.toml")
        sec.table(["stage", "CPU seconds"], [[k, f"{v:.1f}"] for k, v in clock.items()])
        sec.table(["planned", "value"], [[k, str(v)] for k, v in plan.items()])
        sec.table(["re-evaluated configuration", f"val accuracy per seed ({horizon} epochs)", "mean"],
                  [[json.dumps(json_safe(r["values"])), ", ".join(f"{x:.4f}" for x in r["val_accuracy"]), "" if r["mean"] is None else f"{r['mean']:.4f}"] for r in rows])  # fmt: skip
        if reference:
            final_val = done.result.history.records[-1].get("val_accuracy") if done.result.history.records else None
            shown = [["babysit auto (this run)", _pct(final_val), _pct(done.result.test_accuracy), f"{clock['final']:.1f}"]]
            sec.table(["model", "val accuracy", "test accuracy", "CPU seconds"], shown + [[b.name, _pct(b.val_accuracy), _pct(b.test_accuracy), f"{b.cpu_s:.2f}"] for b in reference])
        for w in result.warnings:
            sec.text(f"edge: {w}", "sev-warning")
        page.sections.insert(0, page.sections.pop())
        if deviations:  # what did not go as planned comes before everything else
            dev = page.section("babysit auto: deviations from the plan")
            for d in deviations:
                dev.text(d, "sev-error")
            page.sections.insert(0, page.sections.pop())
        report_path = page.write(out / "report.html")
        clock["report"] = cpu_seconds() - t0
    final = AutoResult(done.result.status, done.result.test_accuracy, final_cfg, config_path, config_text, report_path, out, clock, plan, rows,
                       [str(w) for w in result.warnings] + notes, reference, deviations)  # fmt: skip
    atomic_write_text(out / "auto.json", json.dumps(json_safe(final.summary()), indent=2) + "\n")
    return final
