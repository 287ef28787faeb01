"""The preflight-check contract: settings, the context a check reads, the result it returns.

Contract: a check is `check(ctx: CheckContext) -> CheckResult`, registered in
`CHECKS` under its name (its docstring's first line is the description the CLI
shows). A check never modifies the user's model: it works on `ctx.copy_model()`.
Checks run in `preflight.PIPELINE` order; the learning-rate range test stores
its proposal in `ctx.lr`, and the training checks after it use `ctx.train_lr()`
so that they test the model and the data, not the configured learning rate.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from babysit.data.datasets import Dataset
from babysit.diagnose.findings import Finding, json_ready
from babysit.errors import ConfigError
from babysit.nn.regularize import VanillaDropout
from babysit.optim.optimizers import FULL_BATCH
from babysit.registry import Registry
from babysit.train.state import Recipe

CHECKS: Registry = Registry("check")

EvalFn = Callable[[nn.Module, Tensor], Tensor]

STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


@dataclass
class CheckSettings:
    """Budgets of the preflight checks, small enough that `babysit check` takes seconds.

    Args:
        batch: samples for the one-forward-pass checks (initial loss, init health).
        overfit_samples: size of the tiny subset to overfit (the lectures' ≈20).
        overfit_steps: full-batch steps allowed to reach 100% training accuracy.
        sweep_steps: steps of the learning-rate range test.
        sweep_start, sweep_end: the range test's learning-rate sweep (exponential).
        baseline_steps: mini-batch steps of each input-independent-baseline run.
        reg_strength: the "turned up" regularization of the loss sanity check (the lectures' 1e3).
        gradcheck: also run the numerical gradient check of user-defined modules (opt-in: slow).
        precision: the half precision your loop trains in under autocast, "fp16" or "bf16": the
            precision check compares one batch's gradients with float32's (None: the recipe's
            `train.precision`, and no check in float32).
        loss_scale: the gradient scaler's scale the loop uses (a GradScaler starts at 65536); 1 without one.
    """

    batch: int = 256
    overfit_samples: int = 20
    overfit_steps: int = 300
    sweep_steps: int = 100
    sweep_start: float = 1e-7
    sweep_end: float = 10.0
    baseline_steps: int = 150
    reg_strength: float = 1e3
    gradcheck: bool = False
    precision: str | None = None
    loss_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("batch", "overfit_samples", "overfit_steps", "sweep_steps", "baseline_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"check setting {name} must be at least 1, got {getattr(self, name)}")
        if self.precision not in (None, "fp16", "bf16"):
            raise ConfigError(f"check setting precision must be 'fp16', 'bf16' or None (the recipe's), got {self.precision!r}")
        if not self.loss_scale > 0:
            raise ConfigError(f"check setting loss_scale must be > 0 (1 without a gradient scaler), got {self.loss_scale}")
        if not 0 < self.sweep_start < self.sweep_end:
            raise ConfigError(f"the range test needs 0 < sweep_start < sweep_end, got {self.sweep_start} and {self.sweep_end}")


@dataclass
class CheckResult:
    """What one check measured: a one-line summary, JSON-ready evidence and its findings.

    `status` follows from the findings: "fail" with an error, "warn" with a
    warning, "pass" otherwise; "skip" when the check did not apply.
    """

    name: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    skipped: bool = False
    seconds: float = 0.0

    @property
    def status(self) -> str:
        severities = {f.severity for f in self.findings}
        if self.skipped:
            return "skip"
        return "fail" if "error" in severities else "warn" if "warning" in severities else "pass"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: name, status, summary, evidence, findings, seconds."""
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "evidence": json_ready(self.evidence),
            "findings": [f.to_dict() for f in self.findings],
            "seconds": round(self.seconds, 3),
        }

    def __repr__(self) -> str:
        return f"CheckResult({self.name}: {self.status}: {self.summary})"


@dataclass
class CheckContext:
    """What a check reads: the user's model (never modified), the data, the recipe and the budgets, and
    the user's own optimiser and loss function when given (the program check reads them)."""

    model: nn.Module
    data: Dataset
    recipe: Recipe
    settings: CheckSettings
    device: torch.device
    eval_fn: EvalFn | None = None
    lr: float | None = None  # set by the learning-rate range test
    optimizer: torch.optim.Optimizer | None = None  # the user's own optimiser, when given (its coverage of the model is checked)
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None  # the user's loss(scores, labels); None: cross-entropy

    def copy_model(self, dropout: bool = True) -> nn.Module:
        """A deep copy of the model on the check device, in training mode.

        Args:
            dropout: keep dropout layers; False swaps them for identities (the
                lectures' sanity checks run without regularization).
        """
        model = copy.deepcopy(self.model).to(self.device).train()
        if not dropout:
            strip_dropout(model)
        return model

    def train_lr(self) -> float:
        """The range test's proposal when there is one, else the recipe's learning rate."""
        return self.lr if self.lr is not None else float(self.recipe.lr)

    def short_recipe(self, steps: int, n_train: int, batch_size: int | None = None, lr: float | None = None, **changes: Any) -> Recipe:
        """The recipe for a check's brief training: enough epochs for `steps` steps, on the check device.

        The rate stays constant (no schedule, no momentum annealing): a per-epoch
        schedule over a few hundred tiny epochs would decay it to nothing.

        Args:
            steps: optimiser steps wanted (the caller stops `fit` there).
            n_train: training samples the run will see.
            batch_size: defaults to the recipe's; `lr` defaults to `train_lr()`.
            changes: any other Recipe fields to override (e.g. weight_decay=0).
        """
        batch_size = batch_size or self.recipe.batch_size
        per_epoch = 1 if self.recipe.optimizer in FULL_BATCH else math.ceil(n_train / batch_size)
        # The schedule's own keys go back to their defaults with it, so the brief run warns of nothing the user set.
        unscheduled = {f.name: f.default for f in fields(self.recipe) if f.name in ("period", "gamma", "decay_rate")}
        return replace(
            self.recipe, lr=lr or self.train_lr(), epochs=math.ceil(steps / per_epoch), batch_size=batch_size,
            device=str(self.device), schedule="none", momentum_final=None, **{**unscheduled, **changes},
        )

    def batch(self, split: str = "train", n: int | None = None) -> tuple[Tensor, Tensor]:
        """The first `n` samples (default `settings.batch`) of a seeded permutation of a split, on the device."""
        part = getattr(self.data, split)
        n = min(n or self.settings.batch, len(part))
        order = torch.randperm(len(part), generator=torch.Generator().manual_seed(self.recipe.seed))[:n]
        return part.x[order].to(self.device), part.y[order].to(self.device)


_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, VanillaDropout)


def strip_dropout(model: nn.Module) -> nn.Module:
    """Replace every dropout layer of `model` (a copy; torch's and babysit's vanilla form) by an identity, in place."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, _DROPOUT):
                setattr(parent, name, nn.Identity())
    return model
