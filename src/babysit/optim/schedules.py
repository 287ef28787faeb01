"""Learning-rate schedules and momentum annealing (docs/lectures.md §8).

Contract: `SCHEDULES.get(name)(optimizer, **options)` returns a torch
`LRScheduler` (or None for "none"); after it is built, the learning rate during
epoch t (0-based) is

    none          a0
    step          a0 * gamma^floor(t / period)        ("halve every 5 epochs")
    exponential   a0 * e^(-k t)                       (k = decay_rate)
    inverse_time  a0 / (1 + k t)                      ("1/t decay")
    cyclic        a0 * (1 + cos(pi * (t mod period) / period)) / 2   (restarts; snapshot ensembles)

where a0 is each parameter group's initial lr. These step once per epoch. The
schedules in `PER_BATCH` step after every mini-batch and follow the run's length
on their own (T = epochs * batches per epoch, W = warmup_epochs * batches per
epoch, s the number of steps taken; no period to set, so a run `tune` lengthens
still ends where it should):

    warmup        a0 * min(1, (s + 1) / W)                          (linear warm-up, then constant)
    cosine        warm-up, then a0 * (1 + cos(pi * (s - W) / (T - W))) / 2   (one decay to 0; Loshchilov 2017)
    onecycle      torch's OneCycleLR: cosine up from a0/25 to a0 over the first 30% of
                  steps, then down to a0/1e4 (Smith 2018), cycling momentum/beta1 0.95 -> 0.85 inversely

`LRSchedule` and
`MomentumAnnealing` are callbacks: `fit` builds them from the recipe.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, ExponentialLR, LambdaLR, LRScheduler, StepLR

from babysit.errors import ConfigError
from babysit.registry import Registry, accepted_options

SCHEDULES: Registry = Registry("schedule")


@SCHEDULES.register("none")
def none(optimizer: torch.optim.Optimizer) -> None:
    """Constant learning rate; the lectures' advice is to start here and look at the curve."""
    return None


@SCHEDULES.register("step")
def step(optimizer: torch.optim.Optimizer, period: int = 5, gamma: float = 0.5) -> LRScheduler:
    """Multiply the lr by gamma every `period` epochs (e.g. halve every 5, or x0.1 every 20)."""
    return StepLR(optimizer, step_size=period, gamma=gamma)


@SCHEDULES.register("exponential")
def exponential(optimizer: torch.optim.Optimizer, decay_rate: float = 0.1) -> LRScheduler:
    """a0 * e^(-k t): smooth decay by a constant factor e^(-k) per epoch."""
    return ExponentialLR(optimizer, gamma=math.exp(-decay_rate))


@SCHEDULES.register("inverse_time")
def inverse_time(optimizer: torch.optim.Optimizer, decay_rate: float = 0.1) -> LRScheduler:
    """a0 / (1 + k t): the 1/t decay, fast at first then ever slower."""
    return LambdaLR(optimizer, lambda t: 1.0 / (1.0 + decay_rate * t))


@SCHEDULES.register("cyclic")
def cyclic(optimizer: torch.optim.Optimizer, period: int = 5) -> LRScheduler:
    """Cosine from a0 to 0 over `period` epochs, then restart: one snapshot per cycle (Huang 2017)."""
    return CosineAnnealingWarmRestarts(optimizer, T_0=period)


# Schedules built from the run's total step count and stepped after every batch.
PER_BATCH = frozenset({"warmup", "cosine", "onecycle"})


def warmup_cosine_factor(step: int, total: int, warmup: int, decay: bool) -> float:
    """The multiplier of a0 after `step` optimiser steps: linear warm-up over `warmup` steps, then constant or cosine to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if not decay:
        return 1.0
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


@SCHEDULES.register("warmup")
def warmup(optimizer: torch.optim.Optimizer, total_steps: int = 1, warmup_steps: int = 0) -> LRScheduler:
    """Per batch: raise the lr linearly over train.warmup_epochs, then hold it (for large rates and batch norm)."""
    return LambdaLR(optimizer, lambda s: warmup_cosine_factor(s, total_steps, warmup_steps, decay=False))


@SCHEDULES.register("cosine")
def cosine(optimizer: torch.optim.Optimizer, total_steps: int = 1, warmup_steps: int = 0) -> LRScheduler:
    """Per batch: optional linear warm-up, then one cosine decay to 0 at the last step of the run."""
    return LambdaLR(optimizer, lambda s: warmup_cosine_factor(s, total_steps, warmup_steps, decay=True))


@SCHEDULES.register("onecycle")
def onecycle(optimizer: torch.optim.Optimizer, total_steps: int = 1) -> LRScheduler:
    """Per batch: one cycle, up from a0/25 to a0 over 30% of the run, then down to a0/1e4 (Smith 2018)."""
    groups = optimizer.param_groups
    # Momentum cycling needs a momentum (SGD momentum, or Adam's beta1) in every group.
    cycle = all(g.get("momentum", 0) > 0 or "betas" in g for g in groups)
    # One step more than the run takes, so that the rate after the last step is the cycle's end (~0),
    # as cosine's is; torch's own count would end the run one step early and then rise again.
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in groups], total_steps=max(2, total_steps + 1), cycle_momentum=cycle
    )


class LRSchedule:
    """Callback stepping a named schedule at the end of every epoch, or of every batch for `PER_BATCH` ones.

    Args:
        name: a name from `SCHEDULES`.
        period: epochs between steps (step) or per cycle (cyclic), >= 1.
        gamma: the step schedule's factor, in (0, 1].
        decay_rate: k of the exponential and inverse_time schedules, >= 0.
        warmup_epochs: length of the linear warm-up of "warmup" and "cosine", in epochs (may be fractional).
    """

    def __init__(self, name: str, period: int = 5, gamma: float = 0.5, decay_rate: float = 0.1, warmup_epochs: float = 0.0) -> None:
        self.factory = SCHEDULES.get(name)
        if period < 1:
            raise ConfigError(f"train.period must be at least 1 epoch, got {period}")
        if not 0.0 < gamma <= 1.0:
            raise ConfigError(f"train.gamma must be in (0, 1] (the lr is multiplied by it), got {gamma}")
        if decay_rate < 0:
            raise ConfigError(f"train.decay_rate must be >= 0, got {decay_rate}")
        if warmup_epochs < 0:
            raise ConfigError(f"train.warmup_epochs must be >= 0, got {warmup_epochs}")
        self.name = name
        self.per_batch = name in PER_BATCH
        self.warmup_epochs = warmup_epochs
        self.options = accepted_options(self.factory, {"period": period, "gamma": gamma, "decay_rate": decay_rate})
        self.scheduler: LRScheduler | None = None

    def on_fit_start(self, state) -> None:
        self._build(state)

    def on_replan(self, state) -> None:
        """The run's length changed mid-run: a per-batch schedule is rebuilt for the new length and set to the current step.

        Its rate then continues from the same point of the new schedule (a small step where the old
        and new curves differ at this step; nothing for a schedule that does not follow the length).
        """
        if not self.per_batch or self.scheduler is None:
            return
        for group in state.optimizer.param_groups:  # the peak rate each group's schedule was built from
            group["lr"] = group.get("max_lr", group.get("initial_lr", group["lr"]))
        self._build(state)
        self.scheduler.last_epoch = state.step - 1
        self.scheduler.step()  # the rate (and one-cycle's momentum) at this step of the new schedule

    def _build(self, state) -> None:
        options = dict(self.options)
        if self.per_batch:
            # Sized from the run itself, so a longer run (more epochs) stretches the schedule.
            total = state.total_steps
            per_epoch = total / max(1, state.recipe.epochs)
            sizes = {"total_steps": total, "warmup_steps": min(total, round(self.warmup_epochs * per_epoch))}
            options.update(accepted_options(self.factory, sizes))
        self.scheduler = self.factory(state.optimizer, **options)

    def on_batch_end(self, state) -> None:
        if self.per_batch and self.scheduler is not None and self.scheduler.last_epoch < state.total_steps:
            self.scheduler.step()

    def on_epoch_end(self, state) -> None:
        if not self.per_batch and self.scheduler is not None:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's position, saved in checkpoints so that a resumed run continues the schedule."""
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a saved schedule; called after `on_fit_start`, whose fresh scheduler reset the lr."""
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)
            for group, lr in zip(self.scheduler.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr

    def __repr__(self) -> str:
        return f"LRSchedule({self.name!r}, {self.options})"


class MomentumAnnealing:
    """Callback raising momentum linearly from `start` to `final` over the epochs (e.g. 0.5 -> 0.99).

    During epoch t of T, mu_t = start + (final - start) * t / (T - 1). Acts on
    every parameter group that has a momentum (SGD momentum and Nesterov).
    """

    def __init__(self, start: float, final: float, epochs: int) -> None:
        for name, value in (("momentum", start), ("momentum_final", final)):
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"train.{name} must be in [0, 1), got {value}")
        self.start, self.final, self.epochs = start, final, epochs

    def on_replan(self, state) -> None:
        self.epochs = state.recipe.epochs

    def momentum_at(self, epoch: int) -> float:
        """mu during `epoch` (0-based)."""
        if self.epochs <= 1:
            return self.final
        return self.start + (self.final - self.start) * min(epoch, self.epochs - 1) / (self.epochs - 1)

    def on_fit_start(self, state) -> None:
        if not any("momentum" in g for g in state.optimizer.param_groups):
            raise ConfigError("train.momentum_final anneals momentum; use optimizer 'momentum' or 'nesterov'")

    def on_epoch_start(self, state) -> None:
        mu = self.momentum_at(state.epoch)
        for group in state.optimizer.param_groups:
            if "momentum" in group:
                group["momentum"] = mu

    def __repr__(self) -> str:
        return f"MomentumAnnealing({self.start} -> {self.final} over {self.epochs} epochs)"
