"""Optimisers by name (docs/lectures.md §8), backed by torch's implementations.

Contract: `OPTIMIZERS.get(name)(params, lr, **options) -> torch.optim.Optimizer`;
each factory takes only the options its update rule uses. `tests/optim` checks
each against the lecture's update formula on the first steps of a small problem.

Where torch's form differs from the lectures' (each tested in tests/optim):
- momentum: torch keeps b = mu*b + grad and steps x -= lr*b. With a constant lr
  this is the lecture's v = mu*v - lr*grad (v = -lr*b); when a schedule changes
  lr, torch rescales the whole accumulated velocity by the new lr.
- nesterov: torch tracks the look-ahead point x + mu*v of the lecture's form
  (Bengio 2012's reformulation): b = mu*b + grad(p); p -= lr*(grad(p) + mu*b).
- adagrad / rmsprop / adam: eps is added *outside* the square root, as in the
  lectures (TensorFlow's RMSProp adds it inside).
- weight_decay (L2) adds lambda*w to the gradient before the rule (coupled, also
  for Adam); "adamw" decouples it (Loshchilov & Hutter 2019): w -= lr*lambda*w,
  then the Adam step, so the decay is not divided by sqrt(v).
- lbfgs needs the whole training set per step and a closure that re-evaluates
  the loss; `fit` provides both (see `FULL_BATCH`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from babysit.registry import Registry, check_options

OPTIMIZERS: Registry = Registry("optimizer")

Params = Iterable[nn.Parameter] | Iterable[dict]

# Used when a recipe names no learning rate: a rate that trains standardised small
# nets, not a tuned optimum (Adam's 1e-3 is the lectures' default; plain SGD needs more).
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 1e-2, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3, "lbfgs": 1.0}

# Optimisers that must see the whole training set per step (deterministic gradients).
FULL_BATCH = frozenset({"lbfgs"})


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


@OPTIMIZERS.register("nesterov")
def nesterov(params: Params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Momentum with the gradient taken at the look-ahead x + mu*v; slightly better in practice."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)


@OPTIMIZERS.register("adagrad")
def adagrad(params: Params, lr: float, eps: float = 1e-8, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """cache += grad^2; x -= lr*grad/(sqrt(cache)+eps): per-parameter steps that shrink forever."""
    return torch.optim.Adagrad(params, lr=lr, eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params: Params, lr: float, rho: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """cache = rho*cache + (1-rho)*grad^2: AdaGrad with a leaky cache, so steps do not vanish."""
    # torch calls rho `alpha`.
    return torch.optim.RMSprop(params, lr=lr, alpha=rho, eps=eps, weight_decay=weight_decay)


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


@OPTIMIZERS.register("adamw")
def adamw(
    params: Params,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay: w -= lr*lambda*w apart from the adaptive step (typical lambda 1e-2..1e-1)."""
    return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("lbfgs")
def lbfgs(params: Params, lr: float = 1.0) -> torch.optim.Optimizer:
    """Quasi-Newton (approximates H^-1 grad): full batch, deterministic, small problems; no mini-batches."""
    # The strong-Wolfe line search picks the step length, so lr 1 (the Newton step) is the natural scale.
    return torch.optim.LBFGS(params, lr=lr, line_search_fn="strong_wolfe")


def build_optimizer(name: str, params: Params, lr: float, **options) -> torch.optim.Optimizer:
    """Build the named optimiser with its options; one its rule does not use is a ConfigError."""
    factory = OPTIMIZERS.get(name)
    return factory(params, lr, **check_options(factory, options, f"optimizer '{name}'", skip=("params", "lr")))
