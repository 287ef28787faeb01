"""`fit`: one readable training loop, with callbacks at five named events.

    result = fit(model, data, Recipe(optimizer="adam", lr=1e-3, epochs=10))

Works with any `nn.Module` mapping (N, *input_shape) to (N, C) class scores and
any `Dataset` (or three (x, y) tensor pairs wrapped in one). Evaluation always
runs in eval mode (dropout off, batch-norm running statistics), and the final
test evaluation happens once, at the end.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from babysit.data.datasets import Dataset
from babysit.data.loader import batches, num_batches
from babysit.errors import ConfigError, did_you_mean
from babysit.nn.regularize import l1_penalty
from babysit.optim.optimizers import FULL_BATCH, OPTIMIZERS, build_optimizer, default_lr
from babysit.train.blocks import full_batch_closure, recipe_callbacks, trainable_parameters
from babysit.train.callbacks import ProgressBar, emit
from babysit.train.checkpoint import restore_callback_states, restore_training_state
from babysit.train.history import History


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
            stepped per epoch; `period` (epochs per step or cycle), `gamma` (step factor)
            and `decay_rate` (k of a0*e^-kt and a0/(1+kt)) are its options.
        momentum_final: anneal momentum linearly from `momentum` to this over the epochs
            (e.g. 0.5 -> 0.99); momentum and nesterov only.
        l1: L1 strength lambda (lambda * sum |w| over weight matrices, added to the loss).
        max_norm: c of the max-norm constraint ||w|| <= c per unit, applied after each step.
        averaging: a name from `AVERAGING` (none, polyak, ema): evaluate averaged weights.
        ema_decay: per-step decay of the "ema" average.
        body_lr_factor: lr of every layer but the head, as a fraction of lr (transfer
            learning: 0.1 fine-tunes the body gently, 0 freezes it).
        precision: "fp32", or "bf16" for bf16 autocast of the forward pass on CUDA
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

    def _check_blocks(self) -> None:
        """Validate the schedule, regularization, averaging and transfer settings."""
        recipe_callbacks(self)  # their constructors check names and ranges
        if not 0.0 <= self.rho < 1.0:
            raise ConfigError(f"train.rho must be in [0, 1), got {self.rho}")
        if self.momentum_final is not None and self.optimizer not in ("momentum", "nesterov"):
            raise ConfigError(f"train.momentum_final anneals momentum; optimizer '{self.optimizer}' has none, use momentum or nesterov")
        if self.l1 < 0:
            raise ConfigError(f"train.l1 must be >= 0, got {self.l1}")
        if not 0.0 <= self.body_lr_factor <= 1.0:
            raise ConfigError(f"train.body_lr_factor must be in [0, 1] (0.1 to fine-tune, 0 to freeze), got {self.body_lr_factor}")
        if self.body_lr_factor != 1.0 and self.optimizer in FULL_BATCH:
            raise ConfigError(f"optimizer '{self.optimizer}' takes one learning rate for all layers; leave train.body_lr_factor at 1")

    def optimizer_options(self) -> dict[str, Any]:
        """Every optimiser hyperparameter; each optimiser picks the ones it uses."""
        return {k: v for k, v in asdict(self).items() if k not in ("optimizer", "lr", "epochs", "batch_size", "seed", "device")}


@dataclass
class FitResult:
    """What a run produced: status, per-epoch history and the final test metrics."""

    status: str  # "completed", "stopped" or "diverged"
    epochs: int
    history: History
    test_loss: float
    test_accuracy: float
    seconds: float
    stop_reason: str = ""

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars (what `babysit train --json` prints)."""
        best = self.history.best("val_accuracy")
        return {
            "status": self.status,
            "epochs": self.epochs,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "best_val_accuracy": best["val_accuracy"] if best else None,
            "seconds": round(self.seconds, 3),
            "stop_reason": self.stop_reason,
        }


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
    status: str = "running"
    stop_reason: str = ""
    result: FitResult | None = None
    # The module validation and test evaluate: the model itself, or its parameter average.
    eval_model: nn.Module | None = None
    generator: torch.Generator | None = None  # the shuffling RNG, saved in checkpoints
    callbacks: list[object] = field(default_factory=list)  # this fit's callbacks, whose state checkpoints save

    def request_stop(self, status: str, reason: str) -> None:
        """End training after the current batch, recording why (what a callback calls)."""
        self.stop, self.status, self.stop_reason = True, status, reason

    def __post_init__(self) -> None:
        if self.eval_model is None:
            self.eval_model = self.model


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so model init and training are reproducible on the CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


PRECISIONS = ("fp32", "bf16")


def autocast(recipe: Recipe, device: torch.device) -> torch.autocast:
    """The forward pass's autocast context: bf16 on CUDA for precision="bf16", disabled for "fp32".

    Losses stay float32 (autocast runs cross-entropy in float32), and evaluation
    runs outside it in full precision.
    """
    bf16 = recipe.precision == "bf16"
    if bf16 and device.type != "cuda":
        raise ConfigError(f"train.precision='bf16' needs a CUDA GPU, but this run is on {device.type}; use train.precision='fp32'")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on (x, y), in eval mode (restored afterwards)."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for xb, yb in batches(x, y, batch_size, shuffle=False):
        scores = model(xb)
        total_loss += F.cross_entropy(scores, yb, reduction="sum")
        correct += (scores.argmax(1) == yb).sum()
    model.train(was_training)
    n = len(y)
    return total_loss.item() / n, correct.item() / n


def fit(
    model: nn.Module,
    data: Dataset,
    recipe: Recipe | None = None,
    *,
    callbacks: Sequence[object] = (),
    progress: bool = True,
    resume_from: dict[str, Any] | None = None,
) -> FitResult:
    """Train `model` on `data.train`, validating on `data.val` each epoch, then test once.

    Args:
        model: any module mapping inputs to (N, num_classes) scores.
        data: a `Dataset` (preprocess it first, e.g. with `babysit.prepare`).
        recipe: optimiser and schedule settings; defaults to `Recipe()`.
        callbacks: objects with optional `on_<event>(state)` methods (see `train.callbacks`).
        progress: show a progress bar and per-epoch metrics on stderr.
        resume_from: a checkpoint (`babysit.train.checkpoint.load_checkpoint`) to continue
            from: weights, optimiser, history, epoch, step and RNG states, so the rest of
            the run computes what the uninterrupted run would have.
    """
    recipe = recipe or Recipe()
    start = time.perf_counter()
    device = resolve_device(recipe.device)
    seed_everything(recipe.seed)
    model.to(device)
    x_train, y_train = data.train.x.to(device), data.train.y.to(device)
    x_val, y_val = data.val.x.to(device), data.val.y.to(device)
    optimizer = build_optimizer(recipe.optimizer, trainable_parameters(model, recipe), recipe.lr, **recipe.optimizer_options())
    shuffle_gen = torch.Generator().manual_seed(recipe.seed)
    full_batch = recipe.optimizer in FULL_BATCH  # L-BFGS: one deterministic step per epoch
    batch_size = len(y_train) if full_batch else recipe.batch_size
    steps_per_epoch = num_batches(len(y_train), batch_size)
    callbacks = [*recipe_callbacks(recipe), *callbacks, *([ProgressBar()] if progress else [])]
    state = TrainState(
        model, optimizer, recipe, data, device, total_steps=steps_per_epoch * recipe.epochs, generator=shuffle_gen, callbacks=callbacks
    )
    if resume_from is not None:
        restore_training_state(state, resume_from)
    amp = autocast(recipe, device)

    emit(callbacks, "fit_start", state)
    if resume_from is not None:
        restore_callback_states(state, resume_from)  # after fit_start, which (re)builds their internals
    for epoch in range(state.epoch, recipe.epochs):
        state.epoch = epoch
        epoch_start = time.perf_counter()
        emit(callbacks, "epoch_start", state)
        model.train()
        # Sums stay on the device; one sync per epoch instead of one per step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for xb, yb in batches(x_train, y_train, batch_size, generator=shuffle_gen, transform=data.augment):
            optimizer.zero_grad(set_to_none=True)
            with amp:
                scores = model(xb)
                loss = F.cross_entropy(scores, yb)
            (loss + l1_penalty(model, recipe.l1)).backward()
            # L-BFGS re-evaluates through the closure (its first call repeats this step's forward pass).
            optimizer.step(full_batch_closure(optimizer, model, xb, yb, recipe.l1) if full_batch else None)
            state.step += 1
            state.loss = loss.detach()
            loss_sum += state.loss * len(yb)
            correct += (scores.detach().argmax(1) == yb).sum()
            seen += len(yb)
            emit(callbacks, "batch_end", state)
            if state.stop:
                break
        val_loss, val_acc = evaluate(state.eval_model, x_val, y_val)
        state.history.append(
            {
                "epoch": epoch + 1,
                "step": state.step,
                "train_loss": loss_sum.item() / max(seen, 1),
                "train_accuracy": correct.item() / max(seen, 1),
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - epoch_start,
            }
        )
        emit(callbacks, "epoch_end", state)
        if state.stop:
            break

    test_loss, test_acc = evaluate(state.eval_model, data.test.x.to(device), data.test.y.to(device))
    status = state.status if state.stop else "completed"
    state.status = status
    state.result = FitResult(
        status=status,
        epochs=len(state.history),
        history=state.history,
        test_loss=test_loss,
        test_accuracy=test_acc,
        seconds=time.perf_counter() - start,
        stop_reason=state.stop_reason,
    )
    emit(callbacks, "fit_end", state)
    return state.result
