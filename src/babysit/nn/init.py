"""Weight initialisation schemes by name (docs/lectures.md §3).

Contract: an entry is `scheme(weight, **options) -> None`, filling a Linear/Conv
weight in place (only `small` and `normal` take an option, `std`);
`apply_init(model, name, bias=0.0, std=None)` applies it to every Linear and
Conv layer and sets their biases. fan_in is the number of inputs to one unit:
in_features for Linear, in_channels x kernel size for Conv.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from babysit.errors import ConfigError
from babysit.registry import Registry, accepted_options

INITS: Registry = Registry("init")

AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def fan_in(weight: Tensor) -> int:
    """Inputs feeding one output unit of a Linear (out, in) or Conv (out, in, *k) weight."""
    return weight[0].numel()


@INITS.register("zeros")
@torch.no_grad()
def zeros(weight: Tensor) -> None:
    """All zeros: every unit computes and learns the same thing; symmetry is never broken."""
    weight.zero_()


@INITS.register("normal")
@torch.no_grad()
def normal(weight: Tensor, std: float = 1.0) -> None:
    """std*N(0,1) with an explicit std; the lectures' std 1.0 saturates tanh nets."""
    weight.normal_(0.0, std)


@INITS.register("small")
def small(weight: Tensor, std: float = 0.01) -> None:
    """0.01*N(0,1): fine for small nets; in deep ones activations and gradients shrink to 0."""
    normal(weight, std)


@INITS.register("xavier")
@torch.no_grad()
def xavier(weight: Tensor) -> None:
    """N(0,1)/sqrt(fan_in) (Glorot 2010): keeps variance through linear/tanh layers; collapses with ReLU."""
    weight.normal_(0.0, 1.0 / math.sqrt(fan_in(weight)))


@INITS.register("he")
@torch.no_grad()
def he(weight: Tensor) -> None:
    """N(0,1)/sqrt(fan_in/2) (He 2015): compensates for ReLU switching off half the units."""
    weight.normal_(0.0, 1.0 / math.sqrt(fan_in(weight) / 2.0))


def apply_init(model: nn.Module, scheme: str, bias: float = 0.0, std: float | None = None) -> nn.Module:
    """Initialise every Linear/Conv weight in `model` with `scheme` and set biases to `bias`.

    Args:
        model: any module; its Linear and Conv layers are (re)initialised in place.
        scheme: a name from `INITS`.
        bias: the constant every bias starts at (0 is the norm; 0.01 is sometimes used with ReLU).
        std: the standard deviation for `small` (default 0.01) and `normal` (default 1.0);
            refused for schemes whose std follows from fan_in.

    Example:
        >>> net = apply_init(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), "he", bias=0.01)
    """
    fill = INITS.get(scheme)
    options = {} if std is None else accepted_options(fill, {"std": std})
    if std is not None and not options:
        raise ConfigError(f"init '{scheme}' sets its own std from fan_in; only 'small' and 'normal' take init_std")
    if std is not None and not std > 0:
        raise ConfigError(f"init_std must be a positive number, got {std}")
    for module in model.modules():
        if isinstance(module, AFFINE):
            fill(module.weight, **options)
            if module.bias is not None:
                with torch.no_grad():
                    module.bias.fill_(bias)
    return model
