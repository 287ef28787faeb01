"""Your own training loop, babysat: two added lines write the run record `babysit train` writes.

    run = bs.record(model, optimizer, name="mine")            # probes and the program observer attach here
    for epoch in range(epochs):
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            run.log_step(loss, labels=y)                       # optional: divergence guard, loss checks
        run.log_epoch(train_loss=..., val_loss=..., val_accuracy=...)
    run.close()                                                # summary.json; or use `with`

Besides the per-layer probes, `watch.program.ProgramWatch` reads what the loop
does (which parameters the optimiser holds and which get gradients, whether
gradients are reset between steps, the modules' modes, the learning rate each
step used, the scores and the loss), so the diagnosis names a bug in the loop
itself (`diagnose.program_rules`). The record (runs/<name>/, docs/run-record.md)
has config.json, env.json, metrics.jsonl, probes.jsonl, events.jsonl,
program.json and summary.json, so `bs.diagnose(run)`,
`babysit report runs/<name>` and `babysit runs` read it like any other run. It has
no checkpoints (the loop owns its model), so the report leaves out the per-class table.

`record(..., tensorboard=True)` also writes TensorBoard events as the loop runs
(`report.tensorboard.LiveTensorBoard`); `record(..., scaler=scaler)` watches a float16
loop's `torch.amp.GradScaler` (`watch.precision.ScalerWatch`): `log_step` reads its
scale, counts the steps it skipped and keeps the probes of a skipped step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from babysit import status as statuses
from babysit.diagnose.findings import Finding
from babysit.diagnose.merge import merge_findings
from babysit.errors import ConfigError, did_you_mean
from babysit.train.callbacks import DivergenceGuard
from babysit.train.history import History
from babysit.train.record import RunRecord, RunRecorder, append_jsonl, create_run_dir, load_run, release_run
from babysit.watch.precision import ScalerWatch
from babysit.watch.probes import watch
from babysit.watch.program import ProgramWatch

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")
REQUIRED = ("train_loss", "val_loss")
STATUSES = tuple(sorted(statuses.RUN - {statuses.PRUNED}))  # what `close` may record


class OwnLoopRun:
    """A run record fed by a hand-written loop; build it with `babysit.record(...)`.

    Attributes: `path` (runs/<name>/), `step` (optimiser steps so far), `epoch`
    (epochs logged), `status` ("running" until `close`, "diverged" once
    `log_step` saw an explosion), `history`.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        path: Path,
        config: dict[str, Any],
        probes: str,
        divergence_factor: float,
        program: bool = True,
        where: str = "own loop",
        tensorboard: Path | None = None,
        scaler: Any = None,
    ) -> None:
        self.path = path
        self.model, self.optimizer = model, optimizer
        self.history = History()
        self.step = 0
        self.epoch = 0
        self.status, self.stop_reason = statuses.RUNNING, ""
        self.check: dict[str, Any] | None = None
        self.loss: Any = None  # the last loss given to log_step (what the guard reads)
        self._recorder = RunRecorder(path, config)
        self._guard = DivergenceGuard(divergence_factor)
        self._live = None
        self._scaler = ScalerWatch(scaler) if scaler is not None else None
        self._watch = watch(model, optimizer, preset=probes, sink=self._probe)  # checks the preset first
        self._live = _live_tensorboard(tensorboard, path)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._recorder.start(device, where)
        # Count optimiser steps through torch's own hook, so the loop needs no extra call per step.
        self._counter = optimizer.register_step_post_hook(self._count)
        self._watch.attach(model, optimizer)
        self._watch.epoch = 1
        self._program = ProgramWatch(sink=self._program_sink, where=where).attach(model, optimizer) if program else None
        self._started = self._epoch_started = time.perf_counter()

    def _probe(self, record: dict[str, Any]) -> None:
        """The watch's sink: probes.jsonl, and the live TensorBoard events when on."""
        self._recorder.probe(record)
        if self._live is not None:
            self._live.probe(record)

    def _with_precision(self, facts: dict[str, Any]) -> dict[str, Any]:
        """The program's facts, with the gradient scaler's ("precision") when one is watched."""
        return {**facts, "precision": self._scaler.facts()} if self._scaler is not None else facts

    def _program_sink(self, facts: dict[str, Any]) -> None:
        """The program observer's sink: program.json, and the live TensorBoard's diagnosis when on."""
        facts = self._with_precision(facts)
        self._recorder.program(facts)
        if self._live is not None:
            self._live.program(facts)

    def _count(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.step += 1

    # -- what the loop calls ----------------------------------------------------------

    def log_step(self, loss: torch.Tensor | float, labels: torch.Tensor | None = None) -> bool:
        """Check one batch loss, after `optimizer.step()`: for divergence (NaN/inf, or over `divergence_factor` x the first loss),
        and, on the steps the program observer watches, against what cross-entropy allows.

        Args:
            loss: the step's batch loss.
            labels: the step's labels (optional): the loss is then compared with the cross-entropy
                of the scores the model returned, and the report says that check ran.

        Returns True once the run diverged (the event is recorded; break out of
        the loop). Reading the loss syncs the device, so call it when you can afford that.
        With a gradient scaler (`record(..., scaler=...)`), call it once per iteration,
        after `scaler.update()`: its scale tells whether the step was skipped.
        """
        if self._scaler is not None and self._scaler.read():
            self._watch.skip_step()  # no optimiser hook ran: the probes of this iteration are written here
        if self._program is not None:
            self._program.observe_loss(loss, labels)
        if self.status == statuses.DIVERGED:
            return True
        self.loss = loss.detach() if isinstance(loss, torch.Tensor) else loss
        self._guard.on_batch_end(self)
        return self.status == statuses.DIVERGED

    def request_stop(self, status: str, reason: str) -> None:
        """Record that the run stops (what the divergence guard calls)."""
        self.status, self.stop_reason = status, reason
        self._recorder.event(self.step, status, reason)
        if self._live is not None:
            self._live.event(self.step, status, reason)

    def log_epoch(self, **metrics: float | torch.Tensor) -> dict[str, Any]:
        """Append one epoch's metrics to metrics.jsonl; returns the record written.

        Args:
            **metrics: train_loss and val_loss (required), train_accuracy and
                val_accuracy (numbers or 0-d tensors), lr (default: the optimiser's
                first group's rate). Unknown names are refused.
        """
        for key in metrics:
            if key not in METRICS:
                raise ConfigError(f"log_epoch got an unknown metric {key!r}{did_you_mean(key, METRICS)}; it takes {', '.join(METRICS)}")
        missing = [k for k in REQUIRED if metrics.get(k) is None]
        if missing:
            # The diagnosis reads both curves; a missing one would read as NaN, i.e. as an explosion.
            raise ConfigError(f"log_epoch needs {' and '.join(missing)} (the diagnosis compares the train and val losses); pass them")
        if self.status not in (statuses.RUNNING, statuses.DIVERGED):
            raise ConfigError(f"run '{self.path}' is closed ({self.status}); start a new one with bs.record")
        now = time.perf_counter()
        self.epoch += 1
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.step}
        for key in METRICS[:-1]:
            if metrics.get(key) is not None:
                record[key] = float(metrics[key])
        lr = metrics.get("lr")
        record["lr"] = float(lr) if lr is not None else float(self.optimizer.param_groups[0]["lr"])
        record["seconds"] = round(now - self._epoch_started, 4)
        self._epoch_started = now
        self.history.append(record)
        append_jsonl(self.path / "metrics.jsonl", record)
        self._watch.epoch = self.epoch + 1
        if self._program is not None:
            self._program.epoch_end()
        if self._live is not None:
            self._live.epoch(record)
        return record

    def attach_check(self, report: Any) -> list[Path]:
        """Save a preflight `CheckReport` (`bs.check(...)`) beside the record, as check.json (and lr_range.png)."""
        self.check = report.to_dict()
        return report.save(self.path)

    def close(self, status: str | None = None, *, stop_reason: str = "", test_loss: float | None = None, test_accuracy: float | None = None) -> None:
        """Remove the probes and write the ending event and summary.json (safe to call twice).

        Args:
            status: completed (default), stopped, diverged, failed or interrupted (`STATUSES`);
                a run that `log_step` saw diverge stays diverged.
            stop_reason: why it stopped.
            test_loss, test_accuracy: the final test scores, when the loop measured them.
        """
        if status is not None and status not in STATUSES:
            raise ConfigError(f"close(status={status!r}) must be one of {', '.join(STATUSES)}{did_you_mean(status, STATUSES)}")
        if self._counter is None:
            return
        self._watch.close()
        if self._program is not None:
            self._program.close()
        self._counter.remove()
        self._counter = None
        if self.status == statuses.DIVERGED:
            status, stop_reason = statuses.DIVERGED, self.stop_reason
        self.status = status or statuses.COMPLETED
        self.stop_reason = stop_reason
        if self.status in (statuses.FAILED, statuses.INTERRUPTED):  # as a failed `babysit train` run records it
            summary: dict[str, Any] = {"status": self.status, "stop_reason": stop_reason, "steps": self.step}
        else:
            summary = self._summary(test_loss, test_accuracy)
        self._recorder.finish(summary)
        if self._live is not None:
            self._live.finish(self.status, self.step, summary, self.findings if self._live.diagnose_live else None)

    def _summary(self, test_loss: float | None, test_accuracy: float | None) -> dict[str, Any]:
        best = self.history.best("val_accuracy")
        return {
            "status": self.status,
            "epochs": self.epoch,
            "test_loss": None if test_loss is None else float(test_loss),
            "test_accuracy": None if test_accuracy is None else float(test_accuracy),
            "best_val_accuracy": best["val_accuracy"] if best else None,
            "seconds": round(time.perf_counter() - self._started, 3),
            "stop_reason": self.stop_reason,
            "best_epoch": best["epoch"] if best else None,
            "steps": self.step,
        }

    def __enter__(self) -> OwnLoopRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if error is None:
            self.close()
        else:
            self.close(statuses.INTERRUPTED if isinstance(error, KeyboardInterrupt) else statuses.FAILED, stop_reason=f"{type(error).__name__}: {error}")

    # -- reading it back ----------------------------------------------------------------

    def record(self) -> RunRecord:
        """The run record as written so far (`babysit.load_run(self.path)`)."""
        return load_run(self.path)

    # The four parts the diagnosis reads (`diagnose.record.RecordLike`), so `bs.diagnose(run)` works.
    @property
    def metrics(self) -> list[dict[str, Any]]:
        return self.history.records

    @property
    def probes(self) -> list[dict[str, Any]]:
        return self.record().probes

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.record().events

    @property
    def summary(self) -> dict[str, Any] | None:
        return self.record().summary

    @property
    def program(self) -> dict[str, Any] | None:
        """The program observer's facts so far (program.json once written), or None when it is off."""
        return self._with_precision(self._program.facts()) if self._program is not None else self.record().program

    @property
    def findings(self) -> list[Finding]:
        """The run's diagnosis merged with the attached preflight checks, ranked (`bs.merge_findings`)."""
        return merge_findings(self.record(), self.check)

    def _repr_html_(self) -> str:
        """In a Jupyter notebook: the record so far, its findings and learning curves (plots inline)."""
        from babysit.report.run_report import run_html  # the report (matplotlib) loads only when a notebook asks

        return run_html(self.path)

    def __repr__(self) -> str:
        return f"OwnLoopRun({str(self.path)!r}, status={self.status!r}, epochs={self.epoch}, steps={self.step})"


def _live_tensorboard(log_dir: Path | None, run_dir: Path) -> Any:
    """The live TensorBoard writer beside a recorded loop, or None."""
    if log_dir is None:
        return None
    from babysit.report.tensorboard import LiveTensorBoard  # tensorboard and the diagnosis load only when asked for

    return LiveTensorBoard(log_dir, run_dir=run_dir)


def merge_config(sections: dict[str, Any], config: dict[str, Any] | None) -> dict[str, Any]:
    """Merge a user's `config` into `sections` (in place, and returned): a dict value is a section, a plain value a train setting."""
    for key, value in (config or {}).items():
        if isinstance(value, dict):
            sections.setdefault(key, {}).update(value)
        else:
            sections.setdefault("train", {})[key] = value
    return sections


def record(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    name: str | None = None,
    runs_dir: str | Path = "runs",
    config: dict[str, Any] | None = None,
    probes: str = "light",
    divergence_factor: float = 3.0,
    program: bool = True,
    where: str = "own loop",
    tensorboard: bool | str | Path = False,
    scaler: Any = None,
) -> OwnLoopRun:
    """Start a run record for your own training loop: probes on `model`/`optimizer`, metrics by `log_epoch`.

    Args:
        model, optimizer: what your loop trains; the probes hook into both
            (forward hooks, optimiser step hooks), and are removed by `close`.
        name: the run's folder name under `runs_dir`; None generates `own-<model>-<date>-<time>`.
        runs_dir: the folder holding run records.
        config: your settings, saved in config.json: `{"section": {key: value}}`, or flat
            keys, which go to the "train" section (e.g. {"batch_size": 64, "epochs": 10}).
        probes: the probe preset: 'off', 'light' (default) or 'full'.
        divergence_factor: `log_step` stops at a loss over this multiple of the first one.
        program: watch the program itself (`watch.program`): the bugs of a hand-written loop
            (zero_grad, optimiser coverage, detached layers, eval mode, the schedule, the loss,
            examples mixed across the batch) are named by the diagnosis.
        where: who runs the loop, as the record and the report say it ("own loop"; the framework
            callbacks say "lightning" or "hugging face trainer").
        tensorboard: True (or a folder) also writes TensorBoard events as the loop runs, in
            runs/<name>/tensorboard (or that folder): metrics per `log_epoch`, the probes, and
            each finding as it fires (`report.tensorboard.LiveTensorBoard`; needs the tensorboard extra).
        scaler: the `torch.amp.GradScaler` of a float16 loop: `log_step` reads its scale each
            iteration, so the steps it skips are counted (program.json's "precision") and the
            probes of a skipped step are kept; the diagnosis names a scaler that keeps skipping.

    Example:
        >>> with bs.record(model, optimizer, name="mine") as run:   # doctest: +SKIP
        ...     for epoch in range(10):
        ...         train_one_epoch(model, optimizer)
        ...         run.log_epoch(train_loss=loss, val_accuracy=acc)
        >>> bs.diagnose(run)                                          # doctest: +SKIP
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"record(model, optimizer): optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    group = optimizer.param_groups[0]
    sections: dict[str, dict[str, Any]] = {
        "data": {"name": "own"},
        "model": {"name": type(model).__name__},
        "train": {
            "optimizer": type(optimizer).__name__.lower(),
            **{k: group[k] for k in ("lr", "momentum", "weight_decay") if isinstance(group.get(k), (int, float))},
        },
        "watch": {"probes": probes, "divergence_factor": divergence_factor},
    }
    merge_config(sections, config)
    path = create_run_dir(runs_dir, name, stem=f"own-{type(model).__name__.lower()}")
    try:
        board = (path / "tensorboard" if tensorboard is True else Path(tensorboard)) if tensorboard is not False else None
        return OwnLoopRun(model, optimizer, path=path, config=sections, probes=probes, divergence_factor=divergence_factor, program=program,
                          where=where, tensorboard=board, scaler=scaler)  # fmt: skip
    except BaseException:
        release_run(path)
        if not any(path.iterdir()):
            path.rmdir()  # a bad setting: leave no empty run behind
        raise
