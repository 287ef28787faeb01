"""`auto`: the lectures' whole procedure, unattended, within one CPU budget.

    done = bs.auto(bs.build_config({"data": {"name": "mnist1d"}, "model": {"name": "convnet"}}), budget_s=600)
    done.test_accuracy, done.report_path, done.config_path

The stages, in the lectures' order (docs/lectures.md; CS231n Neural Networks 3):
1. preflight: the checks (`check`) on the configured model; error-level findings
   stop here unless `fix` (then the range test's learning rate replaces the configured one);
2. lr range: the learning-rate range test proposes a rate; the search centres on it;
3. calibrate: one epoch of the base config measures what an epoch costs;
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
re-evaluation runs (h epochs each) and the final run (`FINAL_FACTOR` x h epochs),
sized by the search's measured cost per epoch: the final run is the model the user
gets, so it gets the largest single share. A stage that runs past its share is
stopped at the next batch by a budget guard. Since the budget sets every run's
length, a base without a learning-rate schedule gets one cosine decay over each run. If the budget buys no complete search
trial, the final run trains the base config (with the range test's rate) and says so. A final
run that diverges is retrained with the rest of the budget at half a decade lower rate.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import tomli_w
import torch
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
from babysit.workflows.recorded import start_run

SEARCH_SHARE = 0.35  # of the budget left after preflight and calibration
FINAL_FACTOR = 2  # the final run trains this many times the re-evaluation's horizon
REPORT_SHARE = 0.05  # kept back for writing the reports
RECORDED_COST = 1.2  # a recorded run (probes, checkpoints) costs about this many times a bare epoch
COARSE_TRIALS = 16  # a search of this many trials per stage also searches dropout
FINAL_ATTEMPTS = 3  # a final run that diverges is retrained at a lower rate at most twice
FINAL_LR_CUT = 10**-0.5  # half a decade on the log scale the search used


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

    @property
    def cpu_minutes(self) -> float:
        return sum(self.stages.values()) / 60.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready (what `babysit auto --json` prints and auto.json holds)."""
        return {
            "status": self.status,
            "test_accuracy": self.test_accuracy,
            "cpu_minutes": round(self.cpu_minutes, 3),
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


def _stage_sizes(per_epoch: float, left: float, top: int, seeds: int) -> dict[str, Any]:
    """The budget split into epochs: horizon, coarse epochs and trials per stage (see the module docstring)."""
    search_s = SEARCH_SHARE * left
    horizon = max(1, int((left - search_s) / (top * seeds + FINAL_FACTOR * RECORDED_COST) / per_epoch))
    search_epochs = search_s / per_epoch
    coarse = max(1, min(max(1, horizon // 2), round(search_epochs / 24)))
    # Two stages, the second training twice as long: trials * (coarse + 2 coarse) / 2 epochs in all.
    trials = max(4, int(2 * search_epochs / (3 * coarse)))
    return {"search_s": search_s, "horizon_epochs": horizon, "coarse_epochs": coarse, "trials": trials}


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
        run(trial_config(base, {}, 1), callbacks=[BudgetGuard(start + budget)], progress=False, data=data)
        clock["calibrate"] = cpu_seconds() - t0
        per_epoch = max(clock["calibrate"], 1e-3)
        left = budget - (cpu_seconds() - start)
        plan = {"budget_s": budget, "clock": "time.process_time of this process", "per_epoch_s": round(per_epoch, 3),
                "search_share": SEARCH_SHARE, "top": top, "seeds": seeds, **_stage_sizes(per_epoch, max(left, per_epoch), top, seeds)}  # fmt: skip
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
        # The search measured what an epoch really costs (with evaluation, over many configs), better than
        # calibration's one epoch with its start-up costs: size the rest by it (and the final by the re-evaluation's).
        trained = sum(len(t.history) for t in result.trials)
        per_epoch = clock["search"] / trained if trained else per_epoch
        rest = budget * (1 - REPORT_SHARE) - (t0 - start)
        final_share = FINAL_FACTOR * RECORDED_COST
        horizon = max(1, int(rest / (top * seeds + final_share) / per_epoch))
        plan.update(horizon_epochs=horizon, per_epoch_s=round(per_epoch, 4))
        deadline = t0 + rest * (top * seeds) / (top * seeds + final_share)
        rows, reevaluated_epochs = [], 0
        for values in _top_configs(result, top) if result.best is not None else []:
            scores = []
            for s in range(1, seeds + 1):
                c = trial_config(base, values, horizon)
                c = replace(c, train=replace(c.train, seed=base.train.seed + s))
                r = run(c, callbacks=[BudgetGuard(deadline), view], progress=False, data=data).result
                reevaluated_epochs += len(r.history)
                scores.append(r.history.records[-1]["val_accuracy"] if r.history.records else float("nan"))
            finite = [x for x in scores if math.isfinite(x)]
            rows.append({"values": values, "val_accuracy": scores, "mean": sum(finite) / len(finite) if finite else None})
            view.refresh(best=max((r["mean"] for r in rows if r["mean"] is not None), default=None))
        clock["reevaluate"] = cpu_seconds() - t0
        if reevaluated_epochs:
            per_epoch = clock["reevaluate"] / reevaluated_epochs
        fallback = {"values": result.best.values if result.best is not None else {}}
        chosen = max((r for r in rows if r["mean"] is not None), key=lambda r: r["mean"], default=fallback)

        view.refresh("final")
        t0 = cpu_seconds()
        left = budget * (1 - REPORT_SHARE) - (t0 - start)
        epochs = max(FINAL_FACTOR * horizon if rows else 1, int(left / (per_epoch * RECORDED_COST)))
        plan["final_epochs"] = epochs
        final_cfg = trial_config(base, chosen["values"], epochs)
        final_guard = BudgetGuard(start + budget * (1 - REPORT_SHARE))
        done = start_run(final_cfg, runs_dir=out, name="final", progress=False, data=data, callbacks=[final_guard, view])
        attempt = 1
        while done.result.status == DIVERGED:
            # The final run is several times longer than any run that ranked its rate, so a rate that was stable
            # for the horizon can still blow up; the lectures' remedy for an exploding loss is a lower rate.
            left = budget * (1 - REPORT_SHARE) - (cpu_seconds() - start)
            again = int(left / (per_epoch * RECORDED_COST))
            why = f"the final run diverged at epoch {done.result.epochs} ({done.result.stop_reason})"
            if attempt == FINAL_ATTEMPTS or again < FINAL_FACTOR * horizon:
                reason = f"{attempt} attempts" if attempt == FINAL_ATTEMPTS else "the budget left buys no rerun"
                notes.append(f"{why}, {reason}; lower train.lr in best.toml (now {final_cfg.train.lr:.3g}) and train it")
                break
            attempt += 1
            lr = final_cfg.train.lr * FINAL_LR_CUT
            notes.append(f"{why}; retrained at train.lr {lr:.3g} ({FINAL_LR_CUT:.3g} x {final_cfg.train.lr:.3g}) for {again} epochs")
            final_cfg = trial_config(base, {**chosen["values"], "train.lr": lr}, again)
            done = start_run(final_cfg, runs_dir=out, name=f"final-{attempt}", progress=False, data=data, callbacks=[final_guard, view])
        plan["final_epochs"] = final_cfg.train.epochs
        clock["final"] = cpu_seconds() - t0

        view.refresh("report")
        t0 = cpu_seconds()
        checks.save(done.record)
        config_text = f"# babysit auto: {final_cfg.data.name} {final_cfg.model.name}, {epochs} epochs\n" + tomli_w.dumps(final_cfg.to_dict())
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
        report_path = page.write(out / "report.html")
        clock["report"] = cpu_seconds() - t0
    final = AutoResult(done.result.status, done.result.test_accuracy, final_cfg, config_path, config_text, report_path, out, clock, plan, rows,
                       [str(w) for w in result.warnings] + notes, reference)  # fmt: skip
    atomic_write_text(out / "auto.json", json.dumps(json_safe(final.summary()), indent=2) + "\n")
    return final
