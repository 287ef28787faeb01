"""`doctor`: the whole babysitting procedure on one configured model, ending in a report, and optionally a verified repair.

    done = bs.doctor(bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 5}}))
    done.report_path        # runs/<name>/report.html
    done.findings[0]        # the most important finding, or none
    done = bs.doctor(cfg, fix=True)   # repair the top root cause, rerun, compare (`done.repairs`)

The steps, in the lectures' order (docs/lectures.md §5, then §7):
1. the preflight checks (`check`) on the configured model and data;
2. a short recorded training run with probes (divergence guard, per-layer
   probes, the run record), as long as `cfg.train.epochs`;
3. the checks saved as check.json in the run folder, beside the record;
4. the report (`run_report`): the run's diagnosis merged with the checks'
   findings, the curves and the per-layer plots, written as report.html.
A failed check does not stop the run: the run's probes are evidence too, and
the report shows both.

With `fix=True` (`workflows.repair`): the top error-level root cause's fix is
applied to the config, the model or the data, steps 1-4 run again, and the two
looks are compared; up to `rounds` times, stopping when nothing error-level
remains, when there is no automatic fix (the finding's fix says what to change),
or when a fix did not help (evidence that the diagnosis was wrong).

The model and data are the config's, or your own: `model=` (any nn.Module; doctor
trains a copy, your module is left untouched) and `data=` (a prepared `Dataset`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from babysit.build import load_data, model_from_config
from babysit.checks.base import CheckSettings
from babysit.checks.preflight import CheckReport, check
from babysit.config import RunConfig
from babysit.data.datasets import Dataset
from babysit.diagnose.findings import Finding, root_causes
from babysit.errors import ConfigError, DataError
from babysit.report.run_report import RunReport, run_report
from babysit.train.callbacks import DivergenceGuard
from babysit.train.record import RunRecorder, create_run_dir, release_run
from babysit.train.trainer import fit
from babysit.watch.probes import watch
from babysit.workflows.recorded import start_run
from babysit.workflows.repair import RepairRound, look_summary, plan_repair, repair_helped


@dataclass
class DoctorResult:
    """What `doctor` produced: the run folder, the preflight report and the run report (of the last look, after repairs).

    `repairs` holds one `RepairRound` per applied fix (before/after), in order;
    `stopped` says why repairing stopped ("" when `fix` was off).
    """

    run_dir: Path
    check: CheckReport
    report: RunReport
    report_path: Path | None
    config: RunConfig | None = None
    repairs: list[RepairRound] = field(default_factory=list)
    stopped: str = ""

    @property
    def findings(self) -> list[Finding]:
        """The ranked findings of the checks and the run together (the report's)."""
        return self.report.findings

    def __repr__(self) -> str:
        first = self.findings[0].title if self.findings else "nothing wrong found"
        fixed = f"; {len(self.repairs)} repair round(s)" if self.repairs else ""
        return f"DoctorResult({str(self.report_path)!r}; {len(self.findings)} findings; first: {first}{fixed})"


def _train_own_model(cfg: RunConfig, model: nn.Module, data: Dataset, runs_dir: str | Path, name: str | None, progress: bool) -> Path:
    """The short recorded run of a user's module (a copy): guard, probes and the record, as `start_run` does for a config."""
    path = create_run_dir(runs_dir, name, stem=f"{data.name}-{type(model).__name__.lower()}")
    config = cfg.to_dict()
    config["model"] = {"name": "object", "class": type(model).__name__}  # an object, not a config: nothing to rebuild from
    config["data"] = {**config["data"], "name": data.name}
    recorder = RunRecorder(path, config)
    try:
        with watch(preset=cfg.watch.probes, sink=recorder.probe) as probes:
            fit(copy.deepcopy(model), data, cfg.train, callbacks=[DivergenceGuard(cfg.watch.divergence_factor), probes, recorder], progress=progress)
    except BaseException as error:
        if recorder.started:
            recorder.fail(error)
        raise
    finally:
        release_run(path)
    return path


def _look(
    cfg: RunConfig, model: nn.Module | None, data: Dataset, runs_dir: str | Path, name: str | None,
    settings: CheckSettings | None, progress: bool, write_report: bool,
) -> DoctorResult:  # fmt: skip
    """One look: the preflight checks, the short probed run, check.json, the report."""
    net = model if model is not None else model_from_config(cfg.model, data, seed=cfg.train.seed)
    preflight = check(net, data, cfg.train, settings=settings, progress=progress)
    if model is None:
        run_dir = start_run(cfg, runs_dir=runs_dir, name=name, progress=progress, data=data).record
    else:
        run_dir = _train_own_model(cfg, model, data, runs_dir, name, progress)
    preflight.save(run_dir)
    report = run_report(run_dir, data=data, per_class=model is None)
    return DoctorResult(run_dir, preflight, report, report.write() if write_report else None, cfg)


def doctor(
    cfg: RunConfig,
    *,
    model: nn.Module | None = None,
    data: Dataset | None = None,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    settings: CheckSettings | None = None,
    progress: bool = True,
    fix: bool = False,
    rounds: int = 3,
    write_report: bool = True,
) -> DoctorResult:
    """Check, train briefly with probes, diagnose and report on the model and data `cfg` describes; with `fix`, repair and verify.

    Args:
        cfg: the run's config (a built-in model, or model 'script' with model.script);
            keep `cfg.train.epochs` small, it is a look, not the real training.
        model: your own network instead of the config's model (doctor trains a copy).
        data: a prepared data set instead of the one `cfg.data` loads.
        runs_dir: the folder holding run records; each look goes to `runs_dir/<name>/`
            (repair rounds to `<name>-fix1`, `<name>-fix2`, ...).
        name: the run's folder name; None generates `<data>-<model>-<date>-<time>`.
        settings: budgets of the preflight checks (`CheckSettings(gradcheck=True)` adds the gradient check).
        progress: show progress bars on stderr.
        fix: apply the top error-level root cause's fix, look again and compare (see the module docstring).
        rounds: at most this many repair rounds.
        write_report: write report.html for each look (off: the findings only, faster).
    """
    if model is not None and not isinstance(model, nn.Module):
        raise ConfigError(f"doctor(model=...) takes a torch nn.Module, got {type(model).__name__}")
    if data is not None and not isinstance(data, Dataset):
        raise DataError(f"doctor(data=...) takes a babysit Dataset (e.g. bs.prepare(bs.load_dataset('digits'))), got {type(data).__name__}")
    if rounds < 0:
        raise ConfigError(f"doctor rounds must be 0 or more, got {rounds}")
    own_data = data is not None
    data = data if data is not None else load_data(cfg.data)
    done = _look(cfg, model, data, runs_dir, name, settings, progress, write_report)
    if not fix:
        return done
    repairs: list[RepairRound] = []
    stopped = f"stopped after {rounds} round(s)"
    for i in range(1, rounds + 1):
        errors = root_causes(done.findings)
        if not errors:
            stopped = "nothing error-level remains"
            break
        plan = plan_repair(errors[0], cfg, model, data, done.check, own_data=own_data)
        if not plan.applied:
            stopped = f"no automatic fix for {plan.rule}: {plan.change}"
            break
        after = _look(plan.cfg, plan.model, plan.data, runs_dir, f"{done.run_dir.name}-fix{i}" if name is None else f"{name}-fix{i}",
                      settings, progress, write_report)  # fmt: skip
        helped = repair_helped(plan.rule, done, after, len(plan.data.val))
        repairs.append(RepairRound(i, plan.rule, plan.change, look_summary(done), look_summary(after), helped, str(after.run_dir)))
        if not helped:
            stopped = f"the fix for {plan.rule} did not help (evidence the diagnosis was wrong); kept the first look's set-up"
            break
        cfg, model, data, done = plan.cfg, plan.model, plan.data, after
    done.repairs, done.stopped, done.config = repairs, stopped, cfg
    return done
