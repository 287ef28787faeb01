"""Hugging Face `Trainer`: one callback writes the run record `babysit train` writes, and diagnoses it.

    from babysit.integrations.huggingface import Babysit
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=val,
                      compute_metrics=accuracy, callbacks=[Babysit(name="mine")])
    trainer.train()                    # ends with the findings and the report path

What it does, by Trainer event:
- `on_train_begin`: `babysit.record(model, optimizer, ...)` puts the probes and the program
  observer on the model and on the optimiser the Trainer built (the torch optimiser inside
  accelerate's wrapper), and starts runs/<name>/ (docs/run-record.md). A forward hook on the
  model reads each training forward's `loss` (and, for sequence classification, its
  `logits` against the `labels` it was given): the model needs no change.
- `on_step_end` (after each optimiser step, so once per `gradient_accumulation_steps`
  micro-batches): the step's loss goes to the divergence guard (NaN/inf, or over
  `divergence_factor` x the first loss), which sets `control.should_training_stop`.
  The step's loss is the Trainer's own: the micro-batch losses averaged, or summed where the
  Trainer passed `num_items_in_batch` (then the model already divided each by the items of
  the whole step). It is read from the model, not from the Trainer's logged loss, which
  averages over `logging_steps` and replaces NaN/inf by earlier values
  (`logging_nan_inf_filter`): a guard reading it would miss the explosion it is for.
- `on_evaluate` (the evaluation strategy decides when: each epoch, or every `eval_steps`):
  one line of metrics.jsonl: `val_loss` from `eval_loss`, `val_accuracy` from
  `eval_accuracy` (return {"accuracy": ...} from `compute_metrics`), `train_loss` and
  `train_accuracy` from the training forwards since the previous line, `lr` the rate the
  scheduler set. Each evaluation is one point of the curves the diagnosis reads.
- `on_train_end`: closes the record, runs the diagnosis, prints the findings and writes the
  HTML report (what `babysit report runs/<name>` writes), and prints its path.
Under several processes only the main one (`state.is_world_process_zero`) records.

The Trainer has no event for an exception inside `trainer.train()` (Lightning's
`on_exception`), so a run that started and never reached `on_train_end` is closed where the
code that called `trainer.train()` ends: in a notebook, when its cell ends (IPython's
`post_run_cell`), with the cell's exception; in a script, when the process ends (`atexit`),
with the uncaught exception that ended it. The record then says "failed" ("interrupted" for
Ctrl-C) and the exception is its stop reason. An exception caught around `trainer.train()`
in a process that goes on leaves the run "running" until the process ends, or until you
close it: `callback.run.close("failed", stop_reason=...)`.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from babysit.errors import ConfigError
from babysit.integrations._common import check_divergence_factor, close_failed, metric_keys, report_run
from babysit.status import DIVERGED, FAILED, RUNNING, STOPPED
from babysit.train.own_loop import OwnLoopRun, merge_config, record

try:
    import transformers
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("babysit.integrations.huggingface needs transformers: pip install 'babysit[hf]'") from e

# babysit's metric name -> the key of the Trainer's evaluation metrics it is read from, by default.
EVAL_KEYS = {"val_loss": "eval_loss", "val_accuracy": "eval_accuracy"}


def torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimiser inside the Trainer's (accelerate wraps it: `AcceleratedOptimizer.optimizer`)."""
    while not type(optimizer).__module__.startswith("torch.") and isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"Babysit needs the Trainer's torch optimiser, got {type(optimizer).__name__}")
    return optimizer


class _TrainingForwards:
    """A forward hook on the model that sums what its training forwards return: the loss, and correct predictions.

    Loss: the model's `loss` output. Accuracy: only where `logits` is (N, C) and `labels` is (N,)
    (sequence classification); a token or language-model head shifts or masks its labels, so its
    accuracy is left out rather than guessed.
    """

    def __init__(self, model: nn.Module) -> None:
        self.step_loss: torch.Tensor | float = 0.0  # summed on the device: read once per optimiser step
        self.micro = 0  # this optimiser step's micro-batches
        self.labels: torch.Tensor | None = None  # the labels of the step's last micro-batch
        self.losses: list[float] = []  # each optimiser step's loss since the last metrics line
        self.correct = self.counted = 0
        self.scaled = False  # the Trainer passed num_items_in_batch: each loss is already a share of the step's
        self._handle = model.register_forward_hook(self._on_forward, with_kwargs=True)

    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if not module.training or not torch.is_grad_enabled():
            return  # an evaluation pass
        loss = output.get("loss") if isinstance(output, Mapping) else None
        if isinstance(loss, torch.Tensor):
            self.step_loss = self.step_loss + loss.detach().float()
            self.micro += 1
            self.scaled = kwargs.get("num_items_in_batch") is not None
        logits, labels = output.get("logits") if isinstance(output, Mapping) else None, kwargs.get("labels")
        self.labels = labels if isinstance(labels, torch.Tensor) else None
        classes = isinstance(labels, torch.Tensor) and not labels.is_floating_point()  # not a regression head's targets
        if isinstance(logits, torch.Tensor) and classes and logits.ndim == 2 and labels.shape == logits.shape[:1]:
            self.correct += int((logits.detach().argmax(1) == labels).sum())
            self.counted += len(labels)

    def end_step(self) -> tuple[float | None, torch.Tensor | None]:
        """The loss of the optimiser step just taken (None when the model returned none), and its labels.

        The labels come only with a step of one micro-batch: then the loss is the cross-entropy of that
        batch's scores, which the program observer checks it against; a step of several mixes batches.
        Reading the loss syncs the device once per optimiser step, as the divergence guard must.
        """
        if not self.micro:
            return None, None
        loss = float(self.step_loss) if self.scaled else float(self.step_loss) / self.micro
        labels = self.labels if self.micro == 1 else None
        self.step_loss, self.micro, self.labels = 0.0, 0, None
        self.losses.append(loss)
        return loss, labels

    def take(self) -> dict[str, float]:
        """train_loss (and train_accuracy when measured) since the last call; empty when no step ran."""
        taken: dict[str, float] = {}
        if self.losses:
            taken["train_loss"] = sum(self.losses) / len(self.losses)
        if self.counted:
            taken["train_accuracy"] = self.correct / self.counted
        self.losses, self.correct, self.counted = [], 0, 0
        return taken

    def remove(self) -> None:
        self._handle.remove()


class Babysit(TrainerCallback):
    """A Hugging Face `TrainerCallback` that babysits `trainer.train()`: probes, program observer, divergence guard, run record, diagnosis.

    Args:
        name: the run's folder name under `runs_dir`; None generates `own-<model>-<date>-<time>`.
        runs_dir: the folder holding run records.
        metrics: babysit's metric name -> the Trainer's evaluation key, for the names that differ
            from `EVAL_KEYS` (e.g. {"val_accuracy": "eval_acc"} when compute_metrics returns "acc").
        probes: the probe preset: 'off', 'light' (default) or 'full'.
        divergence_factor: stop at a step loss over this multiple of the first one.
        config: your settings, saved in config.json (as `babysit.record` takes them).
        report: at the end of training, print the findings and write the HTML report.
        tensorboard: True (or a folder) also writes TensorBoard events while training runs
            (runs/<name>/tensorboard; as `babysit.record` does).

    Attributes: `run` (the `OwnLoopRun`, on the main process once training started), `report_path`.
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
        self.keys = {**metric_keys(metrics, "Babysit(metrics=...)"), **EVAL_KEYS, **(metrics or {})}  # the user's names win
        check_divergence_factor(divergence_factor)
        self.name, self.runs_dir, self.probes = name, runs_dir, probes
        self.divergence_factor, self.config, self.report = divergence_factor, config, report
        self.tensorboard = tensorboard
        self.run: OwnLoopRun | None = None
        self.report_path: Path | None = None
        self._forwards: _TrainingForwards | None = None
        self._shell: Any = None  # the IPython shell whose cell runs trainer.train(), if any

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if str(args.eval_strategy) in ("no", "IntervalStrategy.NO"):
            raise ConfigError(
                "Babysit writes a metrics line at each evaluation and the diagnosis compares train and validation losses, "
                "but TrainingArguments(eval_strategy='no') never evaluates: set eval_strategy='epoch' (or 'steps' with eval_steps) and pass eval_dataset"
            )
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        if model is None or optimizer is None:
            raise ConfigError("Babysit needs the Trainer's model and optimiser at on_train_begin (transformers passes both); this Trainer passed none")
        optimizer = torch_optimizer(optimizer)
        sections: dict[str, Any] = {
            "train": {
                "lr": args.learning_rate,  # the scheduler may already have lowered the group's rate (warm-up starts at 0)
                "epochs": args.num_train_epochs,
                "batch_size": args.per_device_train_batch_size,
                "gradient_accumulation_steps": args.gradient_accumulation_steps,
                "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
                "warmup_steps": args.warmup_steps,
                "max_grad_norm": args.max_grad_norm,
            },
            "transformers": {"version": transformers.__version__, "eval_strategy": str(getattr(args.eval_strategy, "value", args.eval_strategy))},
        }
        merge_config(sections, self.config)
        self.run = record(model, optimizer, name=self.name, runs_dir=self.runs_dir, config=sections, probes=self.probes, divergence_factor=self.divergence_factor,
                          where="hugging face trainer", tensorboard=self.tensorboard)
        self._forwards = _TrainingForwards(model)
        self._watch_for_an_unended_run()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.run is None or self.run.status != RUNNING:
            return
        loss, labels = self._forwards.end_step()
        if loss is not None and self.run.log_step(loss, labels=labels):
            control.should_training_stop = True

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.run is None or self.run.status not in (RUNNING, DIVERGED):
            return  # not recording, or an evaluation after training (trainer.evaluate())
        metrics = metrics or {}
        values = self._forwards.take()
        if not values:
            return  # an evaluation before any training step (eval_on_start): no training loss to pair with
        for name in ("val_loss", "val_accuracy"):
            if metrics.get(self.keys[name]) is not None:
                values[name] = float(metrics[self.keys[name]])
        if "val_loss" not in values:
            if self.run.status == DIVERGED:
                return
            error = ConfigError(
                f"Babysit reads the validation loss from the evaluation metrics' {self.keys['val_loss']!r}, which has "
                f"{', '.join(sorted(metrics)) or 'nothing'}; pass labels in eval_dataset, or name the key with Babysit(metrics={{'val_loss': ...}})"
            )
            self._end()
            self.run.close(FAILED, stop_reason=str(error))  # the Trainer has no exception hook: the record says so here
            raise error
        self.run.log_epoch(**values)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.run is None:
            return
        self._end()
        if self.run.status == RUNNING and control.should_training_stop and state.global_step < state.max_steps:
            self.run.close(STOPPED, stop_reason="control.should_training_stop was set (e.g. by EarlyStoppingCallback)")
        else:
            self.run.close()
        if self.report:
            self.report_path = report_run(self.run)

    # -- a trainer.train() that raised: no on_train_end comes ----------------------------------

    def _watch_for_an_unended_run(self) -> None:
        """Close the run where the code that called trainer.train() ends, if on_train_end has not: the notebook cell, or the process."""
        atexit.register(self._at_exit)
        ipython = sys.modules.get("IPython")  # only a notebook or IPython session has it loaded
        self._shell = ipython.get_ipython() if ipython is not None else None
        if self._shell is not None:
            self._shell.events.register("post_run_cell", self._after_cell)

    def _end(self) -> None:
        """Training ended (on_train_end, or the run is being closed by one of the hooks below): take off the forward hook and the end watchers."""
        self._forwards.remove()
        atexit.unregister(self._at_exit)
        if self._shell is not None:
            with contextlib.suppress(ValueError):  # already unregistered
                self._shell.events.unregister("post_run_cell", self._after_cell)
            self._shell = None

    def _after_cell(self, result: Any) -> None:
        """IPython's post_run_cell: the cell that ran trainer.train() ended without on_train_end; its exception is why."""
        self._end()
        close_failed(self.run, getattr(result, "error_in_exec", None), "the notebook cell running trainer.train() ended before on_train_end")

    def _at_exit(self) -> None:
        """The process ends without on_train_end: the uncaught exception that ends it, when it came through the Trainer, is why."""
        self._end()
        close_failed(self.run, _raised_in_transformers(getattr(sys, "last_value", None)),
                     "the process ended inside trainer.train() (an exception caught outside it, or sys.exit)")  # fmt: skip

    def __repr__(self) -> str:
        renamed = {k: v for k, v in self.keys.items() if k != v and EVAL_KEYS.get(k) != v}
        return f"Babysit(name={self.name!r}, runs_dir={str(self.runs_dir)!r}, probes={self.probes!r}, metrics={renamed})"


def _raised_in_transformers(error: BaseException | None) -> BaseException | None:
    """`error` when its traceback passes through transformers (the Trainer), else None: an older, unrelated exception is not blamed."""
    tb = error.__traceback__ if error is not None else None
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("transformers."):
            return error
        tb = tb.tb_next
    return None
