"""How `fit` applies a recipe's building blocks: callbacks, parameter groups, the L-BFGS closure.

Kept out of `trainer.py` so the loop stays short: each block is a callback
(schedules, momentum annealing, max-norm, averaging) or a small function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from babysit.nn.regularize import MaxNorm, with_l1
from babysit.optim.averaging import ParameterAveraging
from babysit.optim.schedules import LRSchedule, MomentumAnnealing
from babysit.train.callbacks import EarlyStopping
from babysit.transfer import param_groups

if TYPE_CHECKING:
    from babysit.train.state import Recipe


def recipe_callbacks(recipe: Recipe) -> list[object]:
    """The callbacks that carry out `recipe`'s schedule, momentum annealing, max-norm, averaging and early stopping.

    Order matters at `batch_end`: the max-norm projection happens before the
    step's weights enter the average.
    """
    # Built even when off ("none"), so that creating a Recipe validates their options.
    schedule = LRSchedule(recipe.schedule, period=recipe.period, gamma=recipe.gamma, decay_rate=recipe.decay_rate, warmup_epochs=recipe.warmup_epochs)
    averaging = ParameterAveraging(recipe.averaging, ema_decay=recipe.ema_decay)
    callbacks: list[object] = [schedule] if recipe.schedule != "none" else []
    if recipe.momentum_final is not None:
        callbacks.append(MomentumAnnealing(recipe.momentum, recipe.momentum_final, recipe.epochs))
    if recipe.max_norm is not None:
        callbacks.append(MaxNorm(recipe.max_norm))
    if recipe.averaging != "none":
        callbacks.append(averaging)
    if recipe.patience is not None:
        callbacks.append(EarlyStopping(recipe.patience, recipe.monitor))
    elif recipe.monitor not in EarlyStopping.MONITORS:
        EarlyStopping(1, recipe.monitor)  # validate the name even when early stopping is off
    return callbacks


def trainable_parameters(model: nn.Module, recipe: Recipe) -> Iterable[nn.Parameter] | list[dict]:
    """What the optimiser updates: all parameters, or head/body groups when `body_lr_factor` != 1."""
    if recipe.body_lr_factor == 1.0:
        return model.parameters()
    return param_groups(model, recipe.lr, recipe.body_lr_factor)


def full_batch_closure(
    optimizer: torch.optim.Optimizer, model: nn.Module, x: Tensor, y: Tensor, l1: float, label_smoothing: float = 0.0
) -> Callable[[], Tensor]:
    """The closure L-BFGS calls to re-evaluate the loss and gradient during its line search."""

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = with_l1(F.cross_entropy(model(x), y, label_smoothing=label_smoothing), model, l1)
        loss.backward()
        return loss

    return closure
