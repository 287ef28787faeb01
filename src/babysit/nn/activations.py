"""Activation functions by name (docs/lectures.md §1).

Contract: `ACTIVATIONS.get(name)(**options)` returns a fresh `nn.Module`; each
factory takes only its own options (leaky_relu `slope`, elu `alpha`, maxout
`pieces`), and `make_activation` passes each the ones it takes. Each entry's
docstring is the one-line property the lectures stress; `babysit blocks` shows it.

An activation module may declare `pieces` (> 1 for Maxout): the affine layer in
front of it must then output `pieces` x width values, of which it keeps the max.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from babysit.errors import ConfigError
from babysit.registry import Registry, check_options

ACTIVATIONS: Registry = Registry("activation")


@ACTIVATIONS.register("relu")
def relu() -> nn.Module:
    """max(0, x): no saturation for x > 0, cheap, fast to converge; units can die."""
    return nn.ReLU()


@ACTIVATIONS.register("tanh")
def tanh() -> nn.Module:
    """tanh(x) in [-1, 1]: zero-centred but saturates, killing gradients."""
    return nn.Tanh()


@ACTIVATIONS.register("sigmoid")
def sigmoid() -> nn.Module:
    """1/(1+e^-x) in [0, 1]: saturates and is not zero-centred; avoid in hidden layers."""
    return nn.Sigmoid()


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(slope: float = 0.01) -> nn.Module:
    """max(slope*x, x): like ReLU but never dies."""
    return nn.LeakyReLU(slope)


@ACTIVATIONS.register("prelu")
def prelu() -> nn.Module:
    """max(a*x, x) with the slope a learned by backprop (He 2015; starts at 0.25)."""
    return nn.PReLU(num_parameters=1, init=0.25)


@ACTIVATIONS.register("elu")
def elu(alpha: float = 1.0) -> nn.Module:
    """x if x > 0 else alpha*(e^x - 1): ReLU's benefits with near zero-mean outputs, but exp()."""
    return nn.ELU(alpha)


class Maxout(nn.Module):
    """max over `pieces` affine maps per unit: max(w1.x + b1, ..., wk.x + bk) (Goodfellow 2013).

    torch has no Maxout. The preceding affine layer outputs `pieces * width`
    features (or channels); unit j takes the max of features j*k .. j*k + k-1.
    With k = 2 it generalises ReLU (w2 = 0, b2 = 0) and Leaky ReLU (w2 = 0.01 w1):
    it never saturates or dies, at the price of k times the parameters.

    Args:
        pieces: k >= 2 linear pieces per unit.

    Shapes: (N, k*C, *spatial) -> (N, C, *spatial).
    """

    def __init__(self, pieces: int = 2) -> None:
        super().__init__()
        if int(pieces) != pieces or pieces < 2:
            raise ConfigError(f"maxout needs pieces >= 2 (a whole number), got {pieces}")
        self.pieces = int(pieces)

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[:2]
        if c % self.pieces:
            raise ValueError(f"Maxout({self.pieces}) needs a multiple of {self.pieces} features, got {c}")
        return torch.amax(x.reshape(n, c // self.pieces, self.pieces, *x.shape[2:]), dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


@ACTIVATIONS.register("maxout")
def maxout(pieces: int = 2) -> nn.Module:
    """max(w1.x+b1, w2.x+b2): generalises (leaky) ReLU, never saturates or dies; k x parameters."""
    return Maxout(pieces)


def make_activation(name: str, **options: Any) -> nn.Module:
    """Build activation `name` with its options; one it does not take is a ConfigError.

    Example:
        >>> make_activation("leaky_relu", slope=0.1)
        LeakyReLU(negative_slope=0.1)
    """
    factory = ACTIVATIONS.get(name)
    return factory(**check_options(factory, options, f"activation '{name}'"))


def pieces_of(activation: nn.Module) -> int:
    """How many outputs per unit the affine layer before `activation` must produce (1, or k for Maxout)."""
    return int(getattr(activation, "pieces", 1))
