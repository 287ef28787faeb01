"""Activation functions by name (LECTURE_DIGEST §1).

Contract: `ACTIVATIONS.get(name)()` returns a fresh `nn.Module`. Each entry's
docstring is the one-line property the lectures stress; `babysit blocks` shows it.
"""

from __future__ import annotations

from torch import nn

from babysit.registry import Registry

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
