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
5. when an error is found and more than one candidate cause has an automatic
   fix, each is tested by a look of its own with that fix (`diagnose.confirm`):
   the one that raised the validation accuracy beyond its noise, the most, is
   named first as confirmed, with the numbers (confirm.json in the run folder).

With `fix=True` (`workflows.repair`): the top error-level root cause's fix is
applied to the config, the model or the data (a confirmed cause's experiment is
its first round), steps 1-4 run again, and the two looks are compared; a fix is
kept only when the validation accuracy rose beyond its noise; up to `rounds` times, stopping when nothing error-level
remains, when there is no automatic fix (the finding's fix says what to change),
or when a fix did not help (evidence that the diagnosis was wrong).

The model and data are the config's, or your own: `model=` (any nn.Module; doctor
trains a copy, your module is left untouched) and `data=` (a prepared `Dataset`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from torch import nn

from babysit.build import load_data, model_from_config
from babysit.checks.base import CheckSettings
from babysit.checks.preflight import CheckReport, check
from babysit.config import RunConfig, without_profile
from babysit.data.datasets import Dataset
from babysit.diagnose import confirm
from babysit.diagnose.findings import Finding, root_causes
from babysit.errors import ConfigError, DataError
from babysit.report.run_report import RunReport, run_report
from babysit.train.callbacks import DivergenceGuard
from babysit.train.record import RunRecorder, create_run_dir, release_run, tee
from babysit.train.trainer import fit
from babysit.watch.probes import watch
from babysit.watch.program import ProgramWatch
from babysit.workflows.recorded import live_failed, live_tensorboard, start_run
from babysit.workflows.repair import Plan, RepairRound, best_val_accuracy, look_summary, plan_repair, repair_helped


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
    experiments: list[confirm.Experiment] = field(default_factory=list)

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
    live = None
    try:
        live = live_tensorboard(path, None) if cfg.watch.tensorboard else None
        program = ProgramWatch(sink=tee(recorder.program, live.program if live else None), where="fit", loss_known=True)
        with watch(preset=cfg.watch.probes, sink=tee(recorder.probe, live.probe if live else None)) as probes:
            fit(copy.deepcopy(model), data, cfg.train, callbacks=[DivergenceGuard(cfg.watch.divergence_factor), probes, program, recorder,
                                                                  *([live] if live else [])], progress=progress)  # fmt: skip
    except BaseException as error:
        if live is not None:
            live_failed(live, recorder, error)
        if recorder.started:
            recorder.fail(error)
        raise
    finally:
        release_run(path)
    return path


def _look(
    cfg: RunConfig, model: nn.Module | None, data: Dataset, runs_dir: str | Path, name: str | None,
    settings: CheckSettings | None, progress: bool, write_report: bool, retune: bool = False,
) -> DoctorResult:  # fmt: skip
    """One look: the preflight checks, the short probed run, check.json, the report.

    With `retune`, the run trains at the range test's proposed rate (a change of scale, a
    re-initialisation or standardised inputs, invalidates the rate that was tuned before it).
    """
    net = model if model is not None else model_from_config(cfg.model, data, seed=cfg.train.seed)
    preflight = check(net, data, cfg.train, settings=settings, progress=progress)
    if retune and preflight.suggested_lr is not None:
        cfg = replace(cfg, train=replace(cfg.train, lr=float(f"{preflight.suggested_lr:.2g}")))
    if model is None:
        run_dir = start_run(cfg, runs_dir=runs_dir, name=name, progress=progress, data=data).record
    else:
        run_dir = _train_own_model(cfg, model, data, runs_dir, name, progress)
    preflight.save(run_dir)
    report = run_report(run_dir, data=data, per_class=model is None)
    return DoctorResult(run_dir, preflight, report, report.write() if write_report else None, cfg)


def _confirm(
    done: DoctorResult, model: nn.Module | None, data: Dataset, own_data: bool, runs_dir: str | Path,
    settings: CheckSettings | None, progress: bool, write_report: bool,
) -> tuple[DoctorResult, dict[str, tuple[Plan, DoctorResult]]]:  # fmt: skip
    """Test each candidate cause of an error-level look by fixing it in a look of its own (`diagnose.confirm`).

    Returns the look with the verdicts in its findings and report, and the looks run, by cause
    (a repair round reuses the one it would otherwise run again).
    """
    tried: dict[str, tuple[Plan, DoctorResult]] = {}
    if not any(f.severity == "error" for f in done.findings):
        return done, tried

    def look(f: Finding, i: int) -> tuple[str, float | None, str] | None:
        plan = plan_repair(f, done.config, model, data, done.check, own_data=own_data)
        if not plan.applied:
            return None
        # The cause alone: no learning-rate retune here (it would answer a learning-rate fault too).
        after = _look(plan.cfg, plan.model, plan.data, runs_dir, f"{done.run_dir.name}-why{i}", settings, progress, False)
        if not plan.retune:
            tried[f.rule] = (plan, after)  # the repair round would run this very look again
        return plan.change, best_val_accuracy(after), str(after.run_dir)

    experiments = confirm.run_experiments(done.findings, best_val_accuracy(done), len(data.val), look)
    if not experiments:
        return done, tried
    confirm.save(done.run_dir, experiments)
    report = replace(done.report, findings=confirm.apply(done.findings, experiments))
    path = report.write() if write_report else None
    return replace(done, report=report, report_path=path, experiments=experiments), tried


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
    confirm_causes: bool = True,
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
        confirm_causes: when the look finds an error and more than one candidate cause with an
            automatic fix, test each in a look of its own and name the one whose fix restored
            learning first (`diagnose.confirm`; one look of CPU per candidate).
    """
    if model is not None and not isinstance(model, nn.Module):
        raise ConfigError(f"doctor(model=...) takes a torch nn.Module, got {type(model).__name__}")
    if data is not None and not isinstance(data, Dataset):
        raise DataError(f"doctor(data=...) takes a babysit Dataset (e.g. bs.prepare(bs.load_dataset('digits'))), got {type(data).__name__}")
    if rounds < 0:
        raise ConfigError(f"doctor rounds must be 0 or more, got {rounds}")
    own_data = data is not None
    if own_data and data.name != cfg.data.name:
        # The config's data name was left at its default: its data set's tuned recipe is not this data's.
        cfg, removed = without_profile(cfg)
        if removed and progress:
            Console(stderr=True).print(f"doctor: your data ({data.name}) is not {cfg.data.name}: the {cfg.data.name} profile's "
                      f"{', '.join(removed)} are left at babysit's defaults (set them in the config to use them)")  # fmt: skip
    data = data if data is not None else load_data(cfg.data)
    done = _look(cfg, model, data, runs_dir, name, settings, progress, write_report)
    tried: dict[str, tuple[Plan, DoctorResult]] = {}
    if confirm_causes:
        done, tried = _confirm(done, model, data, own_data, runs_dir, settings, progress, write_report)
    if not fix:
        return done
    repairs: list[RepairRound] = []
    stopped = f"stopped after {rounds} round(s)"
    for i in range(1, rounds + 1):
        errors = root_causes(done.findings)
        if not errors:
            stopped = "nothing error-level remains"
            break
        if i == 1 and errors[0].rule in tried:
            plan, after = tried[errors[0].rule]  # the experiment already ran this repair's look
        else:
            plan = plan_repair(errors[0], cfg, model, data, done.check, own_data=own_data)
            if not plan.applied:
                stopped = f"no automatic fix for {plan.rule}: {plan.change}"
                break
            after = _look(plan.cfg, plan.model, plan.data, runs_dir, f"{done.run_dir.name}-fix{i}" if name is None else f"{name}-fix{i}",
                          settings, progress, write_report, plan.retune)  # fmt: skip
            plan = replace(plan, cfg=after.config)
        helped = repair_helped(done, after, len(plan.data.val))
        repairs.append(RepairRound(i, plan.rule, plan.change, look_summary(done), look_summary(after), helped, str(after.run_dir)))
        if not helped:
            stopped = f"the fix for {plan.rule} did not help (evidence the diagnosis was wrong); kept the first look's set-up"
            break
        cfg, model, data, done = plan.cfg, plan.model, plan.data, after
    done.repairs, done.stopped, done.config = repairs, stopped, cfg
    return done
