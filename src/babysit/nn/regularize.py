"""Regularizers (LECTURE_DIGEST §9): dropout in both forms, L1, max-norm.

L2 is torch's `weight_decay` (the optimisers take it). What torch lacks is here:

- `DROPOUTS`: "inverted" and "vanilla" dropout, both parametrised by the lectures'
  *keep* probability p (torch's `nn.Dropout` takes the drop probability 1 - p).
  Contract: `DROPOUTS.get(kind)(keep, spatial=0) -> nn.Module`, where `spatial`
  is 0 to drop single units, 1 or 2 to drop whole channels of (N, C, L) or
  (N, C, H, W) feature maps (torch's Dropout1d / Dropout2d).
- `l1_penalty(model, strength)`: lambda * sum |w|, added to the training loss.
- `max_norm_(model, c)` and the `MaxNorm` callback: after each step, rescale every
  unit's incoming weight vector to ||w|| <= c.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from babysit.errors import ConfigError
from babysit.nn.init import AFFINE
from babysit.registry import Registry

DROPOUTS: Registry = Registry("dropout")


def _check_keep(keep: float) -> None:
    if not 0.0 < keep <= 1.0:
        raise ConfigError(f"dropout keep probability must be in (0, 1], got {keep} (keep = 1 - model.dropout)")


def _check_spatial(spatial: int) -> None:
    if spatial not in (0, 1, 2):
        raise ConfigError(f"dropout spatial must be 0 (units), 1 or 2 (channels of 1-d / 2-d maps), got {spatial}")


@DROPOUTS.register("inverted")
def inverted(keep: float = 0.5, spatial: int = 0) -> nn.Module:
    """Keep each unit with probability p and divide by p in training; test time is the identity."""
    _check_keep(keep)
    _check_spatial(spatial)
    # torch's dropout is the inverted form with drop probability 1 - p.
    return (nn.Dropout, nn.Dropout1d, nn.Dropout2d)[spatial](round(1.0 - keep, 12))


class VanillaDropout(nn.Module):
    """Dropout as first published: mask in training, scale by the keep probability p at test time.

    Training: h * m with m ~ Bernoulli(p) per unit (or per channel); eval: p * h.
    Both give the same expected activation, E[h * m] = p * h, so the next layer
    sees the same mean at test time; inverted dropout moves the 1/p to training
    so that prediction needs no change (the form the lectures recommend).

    Args:
        keep: probability p of keeping a unit, in (0, 1].
        spatial: 0 drops single units; 1 or 2 drops whole channels of (N, C, L) / (N, C, H, W) maps.
    """

    def __init__(self, keep: float = 0.5, spatial: int = 0) -> None:
        super().__init__()
        _check_keep(keep)
        _check_spatial(spatial)
        self.keep = keep
        self.spatial = spatial

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x * self.keep
        shape = x.shape if self.spatial == 0 else (*x.shape[:2], *[1] * (x.ndim - 2))
        mask = torch.rand(shape, device=x.device) < self.keep
        return x * mask.to(x.dtype)

    def extra_repr(self) -> str:
        return f"keep={self.keep}, spatial={self.spatial}"


@DROPOUTS.register("vanilla")
def vanilla(keep: float = 0.5, spatial: int = 0) -> nn.Module:
    """Keep each unit with probability p in training; multiply activations by p at test time."""
    return VanillaDropout(keep, spatial)


def l1_penalty(model: nn.Module, strength: float) -> Tensor | float:
    """L1 regularization lambda * sum |w| over the weight matrices/kernels of `model`.

    Only parameters with 2 or more dimensions (Linear and Conv weights) count:
    biases and batch-norm scales are not regularized, as is usual for L1/L2 in
    the lectures' R(W). (torch's `weight_decay`, our L2, decays every parameter.)
    Returns the float 0.0 when `strength` is 0, so the call costs nothing then.

    Args:
        model: the network.
        strength: lambda >= 0.
    """
    if strength == 0:
        return 0.0
    return strength * sum(p.abs().sum() for p in model.parameters() if p.requires_grad and p.ndim >= 2)


@torch.no_grad()
def max_norm_(model: nn.Module, c: float) -> None:
    """Rescale each unit's incoming weight vector of every Linear/Conv layer to ||w||_2 <= c, in place.

    A unit's incoming vector is one row of a Linear weight (out, in), or one
    output channel's kernel of a Conv weight (out, in, *k). Vectors already
    inside the ball are unchanged (Srivastava 2014; LECTURE_DIGEST §9).
    """
    for module in model.modules():
        if isinstance(module, AFFINE):
            module.weight.renorm_(p=2, dim=0, maxnorm=c)


class MaxNorm:
    """Callback enforcing the max-norm constraint ||w|| <= c after every optimiser step."""

    def __init__(self, c: float) -> None:
        if not c > 0:
            raise ConfigError(f"train.max_norm must be a positive number, got {c}")
        self.c = c

    def on_batch_end(self, state) -> None:
        max_norm_(state.model, self.c)

    def __repr__(self) -> str:
        return f"MaxNorm(c={self.c})"
