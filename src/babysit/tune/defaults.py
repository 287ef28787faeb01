"""The lectures' default search space: what to search first when the user names nothing.

CS231n (Neural Networks 3, "Hyperparameter optimization"): the most important
hyperparameters are the learning rate and the regularization strength, searched
on log scales (`10 ** uniform(-6, 1)`), from a coarse range to a fine one. The
learning-rate range spans the rate the range test proposes (docs/lectures.md;
Smith 2017, "Cyclical learning rates") from 30x below to 3x above, or the same
span around the optimiser's default when the test proposes nothing. It is
lopsided because the proposal sits near the bottom of the loss valley, where
the sweep is already close to diverging: with one decade above it, half the
trials of an MLP on MNIST-1D diverged (measured with `babysit tune`, 8 trials). Weight decay spans
1e-6..1e-2, the band where L2 changes a small net's fit without swamping it; for AdamW,
whose decay is decoupled from the gradient and scaled by the learning rate
(w -= lr * lambda * w; Loshchilov & Hutter 2019), the same band would barely
decay at all, so its lambda spans one decade either side of torch's default 1e-2.

    space = default_space(cfg, data)          # runs the range test once
    space = default_space(cfg, proposal=3e-3) # or give the proposal
"""

from __future__ import annotations

from dataclasses import dataclass, field

from babysit.checks.preflight import check
from babysit.config import RunConfig
from babysit.data.datasets import Dataset
from babysit.build import model_from_config
from babysit.optim.optimizers import FULL_BATCH, default_lr
from babysit.tune.space import Param, log_uniform, uniform

LR_BELOW, LR_ABOVE = 30.0, 3.0  # the lr range: proposal / LR_BELOW .. proposal * LR_ABOVE
WEIGHT_DECAY = (1e-6, 1e-2)
DECOUPLED_WEIGHT_DECAY = (1e-3, 1e-1)  # adamw's lambda, multiplied by lr at each step
DROPOUT = (0.0, 0.5)


@dataclass(frozen=True)
class DefaultSpace:
    """A default space and where its learning-rate centre came from ('range test' or 'optimiser default')."""

    space: dict[str, Param]
    centre: float
    source: str
    notes: list[str] = field(default_factory=list)


def lr_proposal(cfg: RunConfig, data: Dataset) -> float | None:
    """The learning-rate range test's proposal for `cfg`'s model and optimiser on `data` (None: no clear descent)."""
    if cfg.train.optimizer in FULL_BATCH:
        return None
    model = model_from_config(cfg.model, data, seed=cfg.train.seed)
    return check(model, data, cfg.train, only=["lr_range"], progress=False).suggested_lr


def default_space(
    cfg: RunConfig,
    data: Dataset | None = None,
    *,
    proposal: float | None = None,
    dropout: bool = False,
) -> DefaultSpace:
    """Learning rate and weight decay on log scales (and dropout, if asked), around the range test's proposal.

    Args:
        cfg: the base run config (its optimiser decides the fallback centre).
        data: the prepared data; when given and `proposal` is None, the range test runs on it.
        proposal: a learning rate already proposed (skips the range test).
        dropout: also search model.dropout uniformly in 0..0.5 (the next knob after lr and L2).
    """
    notes: list[str] = []
    if proposal is None and data is not None:
        proposal = lr_proposal(cfg, data)
        if proposal is None:
            notes.append("the range test proposed no rate; the range is centred on the optimiser's default")
    if proposal is not None:
        centre, source = float(proposal), "range test"
    else:
        centre, source = float(cfg.train.lr or default_lr(cfg.train.optimizer)), "optimiser default"
    space = {"train.lr": log_uniform(centre / LR_BELOW, centre * LR_ABOVE), "train.weight_decay": log_uniform(*(DECOUPLED_WEIGHT_DECAY if cfg.train.optimizer == "adamw" else WEIGHT_DECAY))}
    if dropout:
        space["model.dropout"] = uniform(*DROPOUT)
    return DefaultSpace(space, centre, source, notes)
