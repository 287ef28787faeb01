"""`doctor`: the whole babysitting procedure on one configured model, ending in a report.

    done = bs.doctor(bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 5}}))
    done.report_path        # runs/<name>/report.html
    done.findings[0]        # the most important finding, or none

The steps, in the lectures' order (docs/lectures.md §5, then §7):
1. the preflight checks (`check`) on the configured model and data;
2. a short recorded training run with probes (`start_run`: divergence guard,
   per-layer probes, checkpoints, the run record), as long as `cfg.train.epochs`;
3. the checks saved as check.json in the run folder, beside the record;
4. the report (`run_report`): the run's diagnosis merged with the checks'
   findings, the curves and the per-layer plots, written as report.html.
A failed check does not stop the run: the run's probes are evidence too, and
the report shows both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from babysit.checks.base import CheckSettings
from babysit.checks.preflight import CheckReport, check
from babysit.config import RunConfig
from babysit.diagnose.findings import Finding
from babysit.report.run_report import RunReport, run_report
from babysit.build import load_data, model_from_config
from babysit.workflows.recorded import start_run


@dataclass
class DoctorResult:
    """What `doctor` produced: the run folder, the preflight report and the written run report."""

    run_dir: Path
    check: CheckReport
    report: RunReport
    report_path: Path

    @property
    def findings(self) -> list[Finding]:
        """The ranked findings of the checks and the run together (the report's)."""
        return self.report.findings

    def __repr__(self) -> str:
        first = self.findings[0].title if self.findings else "nothing wrong found"
        return f"DoctorResult({str(self.report_path)!r}; {len(self.findings)} findings; first: {first})"


def doctor(
    cfg: RunConfig,
    *,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    settings: CheckSettings | None = None,
    progress: bool = True,
) -> DoctorResult:
    """Check, train briefly with probes, diagnose and report on the model and data `cfg` describes.

    Args:
        cfg: the run's config (a built-in model, or model 'script' with model.script);
            keep `cfg.train.epochs` small, it is a look, not the real training.
        runs_dir: the folder holding run records; the run goes to `runs_dir/<name>/`.
        name: the run's folder name; None generates `<data>-<model>-<date>-<time>`.
        settings: budgets of the preflight checks (`CheckSettings(gradcheck=True)` adds the gradient check).
        progress: show progress bars on stderr.
    """
    data = load_data(cfg.data)
    preflight = check(model_from_config(cfg.model, data, seed=cfg.train.seed), data, cfg.train, settings=settings, progress=progress)
    run = start_run(cfg, runs_dir=runs_dir, name=name, progress=progress, data=data)
    preflight.save(run.record)
    report = run_report(run.record, data=data)
    return DoctorResult(run.record, preflight, report, report.write())
