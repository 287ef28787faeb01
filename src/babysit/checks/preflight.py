"""`check(model, data)`: the lectures' babysitting procedure before training, as pass/warn/fail checks.

    report = bs.check(model, data, bs.Recipe(optimizer="adam", lr=1e-3))
    report.print()                      # a table of checks, then the ranked findings
    report.findings[0].fix            # the first thing to change
    report.suggested_lr                 # from the learning-rate range test

The checks run in the order of the procedure (docs/lectures.md §5): data, the
training program (your optimiser and loss, gradients reaching every layer,
examples kept apart in the batch), then initialisation, the loss at init, regularization, evaluation mode, the
(opt-in) gradient check, the learning-rate range test, overfitting a tiny
subset, and the input-independent baseline. Findings of equal severity keep
that order, so an upstream cause is named before the symptoms it explains.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table
from torch import Tensor, nn

from babysit.checks import data_checks, gradcheck, init_health, loss_checks, lr_range, precision_check, program_check, training_checks  # noqa: F401  (register)
from babysit.checks.base import CHECKS, STATUS_STYLE, CheckContext, CheckResult, CheckSettings, EvalFn
from babysit.checks.lr_range import plot_lr_range
from babysit.data.datasets import Dataset
from babysit.diagnose.findings import Finding, findings_table, rank
from babysit.errors import ConfigError, DataError
from babysit.io import atomic_write, atomic_write_json
from babysit.train.callbacks import NotebookBar
from babysit.train.state import Recipe, resolve_device
from babysit.train.trainer import seed_everything

# The file a saved preflight report goes to (in a run folder, the report reads it).
CHECK_FILE = "check.json"

PIPELINE = (
    "feature_scales",
    "data_centring",
    "data_leak",
    "class_balance",
    "duplicates",
    "program",
    "init_health",
    "initial_loss",
    "regularization",
    "eval_mode",
    "gradcheck",
    "precision",
    "lr_range",
    "overfit_tiny",
    "input_baseline",
)


@dataclass
class CheckReport:
    """The results of a preflight run, in pipeline order, with the ranked findings."""

    results: list[CheckResult]
    suggested_lr: float | None = None

    @property
    def status(self) -> str:
        """"fail" if any check failed, else "warn" if any warned, else "pass"."""
        statuses = {r.status for r in self.results}
        return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"

    @property
    def findings(self) -> list[Finding]:
        """Every finding, ranked (as everywhere: `CheckReport`, `RunReport`, `DoctorResult`), errors first, pipeline order within a severity."""
        return rank(f for r in self.results for f in r.findings)

    def result(self, name: str) -> CheckResult:
        """The result of the check called `name`."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no check '{name}' in this report; it has {[r.name for r in self.results]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: overall status, suggested lr, every check and the ranked findings."""
        return {
            "status": self.status,
            "suggested_lr": self.suggested_lr,
            "checks": [r.to_dict() for r in self.results],
            "findings": [f.to_dict() for f in self.findings],
        }

    def save(self, folder: str | Path) -> list[Path]:
        """Write check.json (`to_dict`) and, when the range test ran, its plot lr_range.png into `folder`, atomically.

        Saved into a run folder, `babysit report` puts the checks and their findings in the run's report.
        """
        folder = Path(folder)
        written = [atomic_write_json(folder / CHECK_FILE, self.to_dict())]
        sweep = next((r for r in self.results if r.name == "lr_range" and r.evidence.get("lrs")), None)
        if sweep is not None:
            fig = plot_lr_range(sweep.evidence)
            written.append(atomic_write(folder / "lr_range.png", lambda f: fig.savefig(f, format="png", dpi=100)))
        return written

    def table(self) -> Table:
        """A rich table: one row per check with its status, numbers and fix."""
        table = Table(title="preflight checks")
        table.add_column("check")
        table.add_column("status")
        table.add_column("result")
        table.add_column("fix")
        for r in self.results:
            fix = rank(r.findings)[0].fix if r.findings else ""
            table.add_row(r.name, f"[{STATUS_STYLE[r.status]}]{r.status}[/]", escape(r.summary), escape(fix))
        return table

    def _repr_html_(self) -> str:
        """In a Jupyter notebook: the findings as cards, the checks table and the learning-rate range plot."""
        from babysit.report.run_report import check_html  # the report (matplotlib) loads only when a notebook asks

        return check_html(self.to_dict(), self.findings)

    def print(self, console: Console | None = None) -> None:
        """Print the checks table, then the ranked findings (if any)."""
        console = console or Console()
        console.print(self.table())
        if self.findings:
            console.print(findings_table(self.findings, title="findings (most important first)"))

    def __repr__(self) -> str:
        counts = {s: sum(r.status == s for r in self.results) for s in ("pass", "warn", "fail", "skip")}
        first = self.findings[0].title if self.findings else "nothing wrong found"
        return f"CheckReport({self.status}: {counts}; first: {first})"


def _validate(model: nn.Module, data: Dataset, device: torch.device) -> None:
    """Refuse inputs no check can run on, naming the problem (before any check spends time)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"check() needs a torch nn.Module, got {type(model).__name__}")
    if not isinstance(data, Dataset):
        raise DataError(f"check() needs a babysit Dataset (e.g. bs.prepare(bs.load_dataset('digits'))), got {type(data).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("the model has no trainable parameters; nothing to check or train")
    x = data.train.x[:2].to(device)
    try:
        with torch.no_grad():
            scores = copy.deepcopy(model).to(device).eval()(x)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise DataError(f"the model fails on inputs shaped {tuple(x.shape)}: {first}; make its input layer match the data") from None
    if scores.ndim != 2 or scores.shape[1] != data.num_classes:
        raise ConfigError(
            f"the model returns shape {tuple(scores.shape)} for {len(x)} samples, but the data has {data.num_classes} classes; "
            f"its last layer must output ({len(x)}, {data.num_classes}) class scores"
        )


def check(
    model: nn.Module,
    data: Dataset,
    recipe: Recipe | None = None,
    *,
    eval_fn: EvalFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    settings: CheckSettings | None = None,
    only: Iterable[str] | None = None,
    progress: bool = True,
) -> CheckReport:
    """Run the preflight checks on copies of `model`; the model itself is left untouched.

    Args:
        model: any module mapping (N, *input_shape) inputs to (N, num_classes) scores.
        data: a prepared `Dataset` (its preprocessing is what the data checks judge).
        recipe: the training recipe to judge (optimizer, lr, batch size, weight decay); `Recipe()` by default.
        eval_fn: your evaluation function `eval_fn(model, x) -> scores`, to check it sets eval mode;
            by default the model's own eval-mode behaviour is checked.
        optimizer: the optimiser your loop will use: the program check names trainable parameters
            it does not hold and tensors it holds that the model does not use (a copy of the model).
        loss_fn: your loss, `loss_fn(scores, labels) -> scalar`: the program check reads which formula
            it computes (a softmax before cross-entropy, nll_loss of raw scores, a log of log-probabilities);
            cross-entropy by default (the other checks always use cross-entropy).
        settings: budgets (`CheckSettings`); set `gradcheck=True` for the numerical gradient check.
        only: names of checks to run (see `CHECKS`); all by default, always in pipeline order.
        progress: show a progress bar on stderr.
    """
    recipe = recipe or Recipe()
    settings = settings or CheckSettings()
    device = resolve_device(recipe.device)
    _validate(model, data, device)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"check(optimizer=...) takes a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if loss_fn is not None and not callable(loss_fn):
        raise ConfigError(f"check(loss_fn=...) takes a function loss_fn(scores, labels) -> scalar tensor, got {type(loss_fn).__name__}")
    names = list(PIPELINE)
    if only is not None:
        wanted = list(only)
        for name in wanted:
            CHECKS.get(name)  # a typo fails here, with a suggestion
        names = [n for n in PIPELINE if n in wanted]
    ctx = CheckContext(model, data, recipe, settings, device, eval_fn, optimizer=optimizer, loss_fn=loss_fn)
    results = []
    console = Console(stderr=True)
    if progress and console.is_jupyter:  # rich's live bar needs ipywidgets there: one line updated in place instead
        line = NotebookBar(len(names), "checks")
        for i, name in enumerate(names):
            line.update(i, f"check {name}")
            results.append(_run_check(name, ctx, recipe))
        line.update(len(names), "checks done")
        return CheckReport(results, suggested_lr=ctx.lr)
    bar = Progress(TextColumn("[bold]check[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, transient=True, disable=not progress)
    with bar:
        task = bar.add_task("", total=len(names))
        for name in names:
            bar.update(task, description=name)
            results.append(_run_check(name, ctx, recipe))
            bar.advance(task)
    return CheckReport(results, suggested_lr=ctx.lr)


def _run_check(name: str, ctx: CheckContext, recipe: Recipe) -> CheckResult:
    """One check of the pipeline, from the recipe's seed, timed."""
    seed_everything(recipe.seed)
    start = time.perf_counter()
    result = CHECKS.get(name)(ctx)
    result.seconds = time.perf_counter() - start
    return result
