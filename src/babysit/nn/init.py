"""Weight initialisation schemes by name (LECTURE_DIGEST §3).

Contract: an entry is `scheme(weight) -> None`, filling a Linear/Conv weight in
place; `apply_init(model, name, bias=0.0)` applies it to every Linear and Conv
layer and sets their biases. fan_in is the number of inputs to one unit:
in_features for Linear, in_channels x kernel size for Conv.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from babysit.registry import Registry

INITS: Registry = Registry("init")

_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def fan_in(weight: Tensor) -> int:
    """Inputs feeding one output unit of a Linear (out, in) or Conv (out, in, *k) weight."""
    return weight[0].numel()


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


def apply_init(model: nn.Module, scheme: str, bias: float = 0.0) -> nn.Module:
    """Initialise every Linear/Conv weight in `model` with `scheme` and set biases to `bias`.

    Example:
        >>> net = apply_init(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), "he", bias=0.01)
    """
    fill = INITS.get(scheme)
    for module in model.modules():
        if isinstance(module, _AFFINE):
            fill(module.weight)
            if module.bias is not None:
                with torch.no_grad():
                    module.bias.fill_(bias)
    return model
