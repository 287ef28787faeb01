"""Optimisers by name (LECTURE_DIGEST §8), backed by torch's implementations.

Contract: `OPTIMIZERS.get(name)(params, lr, **options) -> torch.optim.Optimizer`;
each factory takes only the options its update rule uses. `tests/optim` checks
each against the lecture's update formula on the first steps of a small problem.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from babysit.registry import Registry, accepted_options

OPTIMIZERS: Registry = Registry("optimizer")

Params = Iterable[nn.Parameter] | Iterable[dict]

# Used when a recipe names no learning rate: a rate that trains standardised small
# nets, not a tuned optimum (Adam's 1e-3 is the lectures' default; plain SGD needs more).
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adam": 1e-3}


def default_lr(name: str) -> float:
    """A sensible starting learning rate for optimiser `name`."""
    return DEFAULT_LR.get(name, 1e-3)


@OPTIMIZERS.register("sgd")
def sgd(params: Params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """x -= lr * grad: zig-zags on ill-conditioned surfaces, stalls at saddles."""
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("momentum")
def momentum(params: Params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """v = mu*v - lr*grad; x += v: builds velocity along consistent directions (mu 0.5-0.99)."""
    # torch keeps v' = mu*v' + grad and steps x -= lr*v'; with a constant lr, v = -lr*v', the same iterates.
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def adam(
    params: Params,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Momentum plus RMSProp scaling with bias correction; the default choice (lr 1e-3)."""
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


def build_optimizer(name: str, params: Params, lr: float, **options) -> torch.optim.Optimizer:
    """Build the named optimiser, passing it only the options its rule uses."""
    factory = OPTIMIZERS.get(name)
    return factory(params, lr, **accepted_options(factory, options))
