"""PyTorch Lightning: one callback writes the run record `babysit train` writes, and diagnoses it.

    from babysit.integrations.lightning import Babysit
    trainer = L.Trainer(max_epochs=10, callbacks=[Babysit(name="mine")])
    trainer.fit(module, train_loader, val_loader)      # ends with the findings and the report path

What it does, by Lightning hook:
- `on_fit_start`: `babysit.record(module, trainer.optimizers[0], ...)` puts the probes
  on the module and its (first) optimiser and starts runs/<name>/ (docs/run-record.md).
- `on_train_batch_end`: the divergence guard reads the batch loss (`training_step`'s
  returned tensor, or its "loss" entry); at NaN/inf or over `divergence_factor` x the
  first loss it records the divergence and sets `trainer.should_stop`. Under a
  multi-process strategy the decision is agreed across ranks
  (`strategy.reduce_boolean_decision`), so every rank stops at the same batch.
- `on_train_epoch_end` (after the epoch's validation): one line of metrics.jsonl, read
  from `trainer.callback_metrics` under the keys `train_loss`, `val_loss`,
  `train_accuracy`, `val_accuracy` and `lr` (each also as `<key>_epoch`, what
  `self.log(key, on_step=True, on_epoch=True)` stores). Log them from your module
  (`self.log("train_loss", loss, on_epoch=True)`, `self.log("val_loss", ...)`), or
  name your own keys: `Babysit(metrics={"val_accuracy": "val_acc"})`. train_loss and
  val_loss are required; lr defaults to the optimiser's first group's rate.
- `on_fit_end`: closes the record, runs the diagnosis, prints the findings, writes the
  HTML report (what `babysit report runs/<name>` writes) and prints its path.
- `on_exception` (an exception inside `trainer.fit`, or Ctrl-C): closes the record as
  "failed" ("interrupted"), with the exception as its stop reason, so `babysit runs` says so.
Under DDP only global rank 0 records and reports; the other ranks run the guard on
their own losses and take part in the stop decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from babysit.errors import ConfigError
from babysit.integrations._common import check_divergence_factor, close_failed, metric_keys, report_run
from babysit.status import DIVERGED, RUNNING, STOPPED
from babysit.train.callbacks import DivergenceGuard
from babysit.train.own_loop import REQUIRED, OwnLoopRun, merge_config, record

try:
    import lightning.pytorch as pl
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("babysit.integrations.lightning needs PyTorch Lightning: pip install 'babysit[lightning]'") from e


class _RankGuard:
    """The divergence guard on a rank that keeps no record: only the verdict, no events."""

    def __init__(self, factor: float) -> None:
        self._guard = DivergenceGuard(factor)
        self.step, self.loss, self.diverged = 0, None, False

    def check(self, loss: torch.Tensor | float) -> bool:
        self.step += 1
        self.loss = loss
        self._guard.on_batch_end(self)
        return self.diverged

    def request_stop(self, status: str, reason: str) -> None:
        self.diverged = True


class Babysit(pl.Callback):
    """A Lightning callback that babysits `trainer.fit`: probes, divergence guard, run record, diagnosis.

    Args:
        name: the run's folder name under `runs_dir`; None generates `own-<module>-<date>-<time>`.
        runs_dir: the folder holding run records.
        metrics: babysit's metric name -> the key your module logs, for the names that
            differ (e.g. {"val_accuracy": "val_acc"}); the others are read as named.
        probes: the probe preset: 'off', 'light' (default) or 'full'.
        divergence_factor: stop at a batch loss over this multiple of the first one.
        config: your settings, saved in config.json (as `babysit.record` takes them).
        report: at the end of fit, print the findings and write the HTML report.
        tensorboard: True (or a folder) also writes TensorBoard events while fit runs, in
            runs/<name>/tensorboard (or that folder): metrics, probes, findings as they fire.

    Attributes: `run` (the `OwnLoopRun`, on rank 0 once fit started), `report_path`.
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        runs_dir: str | Path = "runs",
        metrics: dict[str, str] | None = None,
        probes: str = "light",
        divergence_factor: float = 3.0,
        config: dict[str, Any] | None = None,
        report: bool = True,
        tensorboard: bool | str | Path = False,
    ) -> None:
        self.keys = metric_keys(metrics, "Babysit(metrics=...)")
        check_divergence_factor(divergence_factor)
        self.name, self.runs_dir, self.probes = name, runs_dir, probes
        self.divergence_factor, self.config, self.report = divergence_factor, config, report
        self.tensorboard = tensorboard
        self.run: OwnLoopRun | None = None
        self.report_path: Path | None = None
        self._rank_guard: _RankGuard | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.optimizers:
            raise ConfigError("Babysit needs an optimiser: configure_optimizers() returned none")
        if not trainer.is_global_zero:
            self._rank_guard = _RankGuard(self.divergence_factor)
            return
        config: dict[str, Any] = {"train": {"epochs": trainer.max_epochs}, "lightning": {"version": pl.__version__}}
        merge_config(config, self.config)
        self.run = record(
            pl_module,
            trainer.optimizers[0],
            name=self.name,
            runs_dir=self.runs_dir,
            config=config,
            probes=self.probes,
            divergence_factor=self.divergence_factor,
            where="lightning",
            tensorboard=self.tensorboard,
            # 16-mixed precision: the plugin's GradScaler tells which steps it skipped.
            scaler=getattr(trainer.precision_plugin, "scaler", None),
        )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # training_step returned nothing: manual optimisation or a skipped batch
            return
        diverged = self.run.log_step(loss) if self.run is not None else self._rank_guard.check(loss)
        if trainer.world_size > 1:
            # Any rank's explosion stops all of them: a rank that stopped alone would hang the others' all-reduce.
            diverged = trainer.strategy.reduce_boolean_decision(diverged, all=False)
        if diverged:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is None or trainer.sanity_checking:
            return
        logged = trainer.callback_metrics
        values = {}
        for name, key in self.keys.items():
            value = logged.get(key, logged.get(f"{key}_epoch"))
            if value is not None:
                values[name] = float(value)
        missing = [self.keys[m] for m in REQUIRED if m not in values]
        if missing and self.run.status == DIVERGED:
            return  # the stopped epoch may lack a validation pass; the divergence event says what happened
        if missing:
            raise ConfigError(
                f"Babysit reads {' and '.join(repr(k) for k in missing)} from trainer.callback_metrics, which has "
                f"{', '.join(sorted(logged)) or 'nothing'}; log them with self.log(...), or name your keys with Babysit(metrics={{...}})"
            )
        self.run.log_epoch(**values)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is None:
            return
        if self.run.status == RUNNING and trainer.should_stop:
            self.run.close(STOPPED, stop_reason="trainer.should_stop was set (e.g. by EarlyStopping)")
        else:
            self.run.close()
        if self.report:
            self.report_path = report_run(self.run)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.run is not None:
            close_failed(self.run, exception, "")

    def __repr__(self) -> str:
        renamed = {k: v for k, v in self.keys.items() if k != v}
        return f"Babysit(name={self.name!r}, runs_dir={str(self.runs_dir)!r}, probes={self.probes!r}, metrics={renamed})"
