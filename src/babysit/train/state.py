"""The training state: how to train (`Recipe`), what a run in progress shows callbacks
(`TrainState`) and what a finished run produced (`FitResult`).

These are plain dataclasses, apart from the loop in `train.trainer` that fills them,
so checks, callbacks and workflows can use them without importing the loop.
"""

from __future__ import annotations

import math
import inspect
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from babysit.data.datasets import Dataset
from babysit.errors import ConfigError, did_you_mean
from babysit.optim.averaging import AVERAGING
from babysit.optim.optimizers import FULL_BATCH, OPTIMIZERS, default_lr
from babysit.optim.schedules import SCHEDULES
from babysit.registry import accepted_options, section_options
from babysit.status import COMPLETED, FIT, RUNNING, check
from babysit.train.blocks import recipe_callbacks
from babysit.train.history import History

PRECISIONS = ("fp32", "bf16")


@dataclass
class Recipe:
    """How to train: the `[train]` section of a config.

    Args:
        optimizer: a name from `OPTIMIZERS` (sgd, momentum, adam, ...).
        lr: learning rate (> 0); None picks the optimiser's default (adam 1e-3, sgd 0.1, momentum 0.01).
        epochs: passes over the training split.
        batch_size: samples per mini-batch (lbfgs ignores it: one full-batch step per epoch).
        momentum: mu for momentum-type optimisers.
        beta1, beta2, eps: Adam's constants (lectures' defaults 0.9, 0.999, 1e-8).
        weight_decay: L2 strength added to the gradient (lambda * w).
        seed: seeds init, shuffling and dropout; same seed, same numbers on the CPU.
        device: "auto" (CUDA when available), "cpu" or "cuda[:i]".
        rho: RMSProp's cache decay (0.9, 0.99, 0.999).
        schedule: a name from `SCHEDULES` (none, step, exponential, inverse_time, cyclic),
            stepped per epoch, or warmup, cosine, onecycle, stepped per batch over the whole run; `period` (epochs per step or cycle), `gamma` (step factor)
            and `decay_rate` (k of a0*e^-kt and a0/(1+kt)) are its options.
        momentum_final: anneal momentum linearly from `momentum` to this over the epochs
            (e.g. 0.5 -> 0.99); momentum and nesterov only.
        l1: L1 strength lambda (lambda * sum |w| over weight matrices, added to the loss).
        max_norm: c of the max-norm constraint ||w|| <= c per unit, applied after each step.
        averaging: a name from `AVERAGING` (none, polyak, ema): evaluate averaged weights.
        ema_decay: per-step decay of the "ema" average.
        warmup_epochs: linear warm-up length (epochs) of the per-batch "warmup" and "cosine" schedules.
        label_smoothing: eps of label smoothing: the training target is (1 - eps) one-hot + eps / C
            (Szegedy 2016); validation and test losses stay plain cross-entropy.
        clip_grad_norm: rescale the whole gradient to this L2 norm when it is larger (before each step).
        patience: stop (status "stopped") after this many epochs without a new best `monitor`.
        monitor: what early stopping watches, "val_loss" (lower is better) or "val_accuracy".
        body_lr_factor: lr of every layer but the head, as a fraction of lr (transfer
            learning: 0.1 fine-tunes the body gently, 0 freezes it).
        precision: "fp32", or "bf16" for bf16 autocast of the forward pass (CPU or CUDA)
            (refused on the CPU, where it would be slow and is not what it is for).
    """

    optimizer: str = "adam"
    lr: float | None = None
    epochs: int = 10
    batch_size: int = 100
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    rho: float = 0.99
    schedule: str = "none"
    period: int = 5
    gamma: float = 0.5
    decay_rate: float = 0.1
    momentum_final: float | None = None
    l1: float = 0.0
    max_norm: float | None = None
    averaging: str = "none"
    ema_decay: float = 0.99
    body_lr_factor: float = 1.0
    precision: str = "fp32"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    clip_grad_norm: float | None = None
    patience: int | None = None
    monitor: str = "val_loss"

    def __post_init__(self) -> None:
        OPTIMIZERS.get(self.optimizer)
        if self.lr is None:
            self.lr = default_lr(self.optimizer)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"train.lr must be a positive number, got {self.lr}")
        if self.epochs < 1:
            raise ConfigError(f"train.epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be at least 1, got {self.batch_size}")
        if not 0 <= self.seed < 2**32:  # numpy's generators take 0 .. 2**32-1
            raise ConfigError(f"train.seed must be in [0, 2**32), got {self.seed}")
        for name in ("momentum", "beta1", "beta2"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"train.{name} must be in [0, 1), got {value}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if self.eps <= 0:
            raise ConfigError(f"train.eps must be > 0, got {self.eps}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}{did_you_mean(self.precision, PRECISIONS)}")
        self._check_blocks()
        self._check_unused_keys()

    def _check_blocks(self) -> None:
        """Validate the schedule, regularization, averaging and transfer settings."""
        recipe_callbacks(self)  # their constructors check names and ranges
        if not 0.0 <= self.rho < 1.0:
            raise ConfigError(f"train.rho must be in [0, 1), got {self.rho}")
        if self.momentum_final is not None and self.optimizer not in ("momentum", "nesterov"):
            raise ConfigError(f"train.momentum_final anneals momentum; optimizer '{self.optimizer}' has none, use momentum or nesterov")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"train.label_smoothing must be in [0, 1) (0.1 is usual), got {self.label_smoothing}")
        if self.l1 < 0:
            raise ConfigError(f"train.l1 must be >= 0, got {self.l1}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ConfigError(f"train.clip_grad_norm must be > 0 (or unset for no clipping), got {self.clip_grad_norm}")
        if not 0.0 <= self.body_lr_factor <= 1.0:
            raise ConfigError(f"train.body_lr_factor must be in [0, 1] (0.1 to fine-tune, 0 to freeze), got {self.body_lr_factor}")
        if self.body_lr_factor != 1.0 and self.optimizer in FULL_BATCH:
            raise ConfigError(f"optimizer '{self.optimizer}' takes one learning rate for all layers; leave train.body_lr_factor at 1")

    def optimizer_options(self) -> dict[str, Any]:
        """The hyperparameters the chosen optimiser takes (beyond lr)."""
        return accepted_options(OPTIMIZERS.get(self.optimizer), self._optimizer_keys())

    def _optimizer_keys(self) -> dict[str, Any]:
        """This recipe's values of every key some optimiser takes (momentum, betas, eps, weight_decay, rho)."""
        taken = {p for name in OPTIMIZERS.names() for p in inspect.signature(OPTIMIZERS.get(name)).parameters} - {"params", "lr"}
        return {k: v for k, v in asdict(self).items() if k in taken}

    def _check_unused_keys(self) -> None:
        """Refuse L2 the optimiser would drop; a warning line for other keys the chosen blocks do not use."""
        factory = OPTIMIZERS.get(self.optimizer)
        if self.weight_decay and "weight_decay" not in accepted_options(factory, {"weight_decay": 0}):
            raise ConfigError(
                f"optimizer '{self.optimizer}' takes no weight_decay, so train.weight_decay={self.weight_decay:g} would train "
                "without L2; set it to 0 or pick an optimizer that applies it (sgd, momentum, adam, ...)"
            )
        defaults = {f.name: f.default for f in fields(Recipe)}
        section_options(factory, self._optimizer_keys(), section="train", defaults=defaults, what=f"optimizer '{self.optimizer}'", stacklevel=5)
        schedule = {k: getattr(self, k) for k in ("period", "gamma", "decay_rate")}
        section_options(SCHEDULES.get(self.schedule), schedule, section="train", defaults=defaults, what=f"schedule '{self.schedule}'", stacklevel=5)
        averaging = {"ema_decay": self.ema_decay}
        section_options(AVERAGING.get(self.averaging), averaging, section="train", defaults=defaults, what=f"averaging '{self.averaging}'", stacklevel=5)


@dataclass
class FitResult:
    """What a run produced: status, per-epoch history and the final test metrics."""

    status: str  # one of babysit.status.FIT
    epochs: int
    history: History
    test_loss: float
    test_accuracy: float
    seconds: float
    stop_reason: str = ""
    program: dict[str, Any] | None = None  # the program observer's facts (`watch.program`), read by `diagnose`
    test_views: int = 1  # the fixed views of the augmentation the test predictions were averaged over (`data.test_augment`)
    test_accuracy_single: float | None = None  # with more than one view: the test accuracy of the unaugmented inputs alone

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars (what `babysit train --json` prints).

        `test_loss` / `test_accuracy` are those of the weights the run ended with
        (the last epoch's, or their average when `train.averaging` is on), the
        same weights as `final_val_accuracy`; `best_val_accuracy` is the best
        epoch's (`best_epoch`), whose weights were not kept, so it is not the
        epoch the test numbers belong to. With `test_views` > 1 the test
        predictions are averaged over that many fixed flips and crops, and
        `test_accuracy_single` is the accuracy of one view (the inputs as they are).
        """
        best = self.history.best("val_accuracy")
        last = self.history.records[-1] if len(self.history) else {}
        return {
            "status": self.status,
            "epochs": self.epochs,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "final_val_accuracy": last.get("val_accuracy"),
            "best_val_accuracy": best["val_accuracy"] if best else None,
            "best_epoch": best["epoch"] if best else None,
            "seconds": round(self.seconds, 3),
            "stop_reason": self.stop_reason,
            **({"test_views": self.test_views, "test_accuracy_single": self.test_accuracy_single} if self.test_views > 1 else {}),
        }

    def _repr_html_(self) -> str:
        """In a Jupyter notebook: the summary, the diagnosis of the history and the learning curves (plots inline)."""
        from babysit.report.run_report import fit_html  # the report (matplotlib) loads only when a notebook asks

        return fit_html(self)


@dataclass
class TrainState:
    """The narrow view callbacks get of a run in progress."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    recipe: Recipe
    data: Dataset
    device: torch.device
    total_steps: int
    history: History = field(default_factory=History)
    epoch: int = 0
    step: int = 0
    loss: Tensor | None = None
    stop: bool = False
    status: str = RUNNING
    stop_reason: str = ""
    result: FitResult | None = None
    # The module validation and test evaluate: the model itself, or its parameter average.
    eval_model: nn.Module | None = None
    generator: torch.Generator | None = None  # the shuffling RNG, saved in checkpoints
    callbacks: list[object] = field(default_factory=list)  # this fit's callbacks, whose state checkpoints save

    @property
    def steps_per_epoch(self) -> int:
        """The optimiser steps of one whole epoch (an epoch a stop cut short has fewer)."""
        return self.total_steps // max(1, self.recipe.epochs)

    def replan(self, epochs: int) -> None:
        """Change the run's length to `epochs` (more than those done) while it trains: the loop runs to it and
        every callback with `on_replan` (the per-batch schedules, the progress bar) stretches to it.

        What a budget re-plans with once the run has measured its own epochs' cost, so its schedule
        still ends at its last step instead of being cut (`babysit auto`'s final run).
        """
        if epochs <= len(self.history):
            raise ValueError(f"a run re-planned to {epochs} epochs has already trained {len(self.history)}")
        per_epoch = self.steps_per_epoch
        self.recipe = replace(self.recipe, epochs=epochs)
        self.total_steps = per_epoch * epochs
        for cb in self.callbacks:
            method = getattr(cb, "on_replan", None)
            if method is not None:
                method(self)

    def request_stop(self, status: str, reason: str) -> None:
        """End training after the current batch, recording why (what a callback calls); `status` is one of `status.FIT`."""
        self.stop, self.status, self.stop_reason = True, check(status, FIT - {COMPLETED}, "a stopped fit's"), reason

    def __post_init__(self) -> None:
        if self.eval_model is None:
            self.eval_model = self.model


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as given (checked)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"train.device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA GPU is available; use 'auto' or 'cpu'")
    return dev
