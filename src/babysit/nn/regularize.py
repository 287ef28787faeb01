"""Regularizers (docs/lectures.md §9): dropout in both forms, L1, max-norm.

L2 is torch's `weight_decay` (the optimisers take it). What torch lacks is here:

- `DROPOUTS`: "inverted" and "vanilla" dropout, both parametrised by the lectures'
  *keep* probability p (torch's `nn.Dropout` takes the drop probability 1 - p).
  Contract: `DROPOUTS.get(kind)(keep, spatial=0) -> nn.Module`, where `spatial`
  is 0 to drop single units, 1 or 2 to drop whole channels of (N, C, L) or
  (N, C, H, W) feature maps (torch's Dropout1d / Dropout2d).
- `l1_penalty(model, strength)`: lambda * sum |w|, added to the training loss by
  `with_l1(loss, model, strength)`.
- `max_norm_(model, c)` and the `MaxNorm` callback: after each step, rescale every
  unit's incoming weight vector to ||w|| <= c.
- The other "noise in training, averaged out at test" layers: `DropConnect`
  (drops weights), `DropPath` (stochastic depth of residual branches) and
  `FractionalMaxPool` (random pooling regions).
"""

from __future__ import annotations

import math

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
    Returns the float 0.0 when `strength` is 0 (`with_l1` then leaves the loss as it is).

    Args:
        model: the network.
        strength: lambda >= 0.
    """
    if strength == 0:
        return 0.0
    return strength * sum(p.abs().sum() for p in model.parameters() if p.requires_grad and p.ndim >= 2)


def with_l1(loss: Tensor, model: nn.Module, strength: float) -> Tensor:
    """The training loss plus `l1_penalty`; the loss itself without L1 (`loss + 0.0` would add a node to every step's graph)."""
    return loss + l1_penalty(model, strength) if strength else loss


@torch.no_grad()
def max_norm_(model: nn.Module, c: float) -> None:
    """Rescale each unit's incoming weight vector of every Linear/Conv layer to ||w||_2 <= c, in place.

    A unit's incoming vector is one row of a Linear weight (out, in), or one
    output channel's kernel of a Conv weight (out, in, *k). Vectors already
    inside the ball are unchanged (Srivastava 2014; docs/lectures.md §9).
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


class DropConnect(nn.Module):
    """Wrap a Linear or Conv layer to drop single *weights* instead of units (Wan et al. 2013).

    Training: y = layer(x) computed with W * M / p, M ~ Bernoulli(p) per weight,
    a fresh mask per forward pass (per mini-batch, not per sample: the cheap
    form); eval: the full weights W, which is the expectation of W * M / p (the
    inverted scaling puts the 1/p in training, as inverted dropout does).

    Args:
        layer: an nn.Linear or nn.Conv1d/2d (its init, bias and max-norm are untouched).
        drop: probability of dropping a weight, in [0, 1).
    """

    def __init__(self, layer: nn.Module, drop: float = 0.5) -> None:
        super().__init__()
        if not isinstance(layer, AFFINE):
            raise ConfigError(f"DropConnect wraps a Linear or Conv layer, got {type(layer).__name__}")
        if not 0.0 <= drop < 1.0:
            raise ConfigError(f"model.dropconnect is the probability of dropping a weight and must be in [0, 1), got {drop}")
        self.layer, self.drop = layer, drop

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop == 0:
            return self.layer(x)
        keep = 1.0 - self.drop
        w = self.layer.weight
        weight = w * (torch.rand_like(w) < keep).to(w.dtype) / keep
        if isinstance(self.layer, nn.Linear):
            return nn.functional.linear(x, weight, self.layer.bias)
        return self.layer._conv_forward(x, weight, self.layer.bias)

    def extra_repr(self) -> str:
        return f"drop={self.drop}"


class FractionalMaxPool(nn.Module):
    """Fractional max pooling (Graham 2014) for (N, C, L) or (N, C, H, W) maps: shrink each size by `ratio` in (1, 2].

    Training: pooling regions of size 1 or 2 (ceil(ratio)) laid out by a random
    offset u ~ U(0, 1) per sample and channel, region i starting at
    floor(ratio * (i + u)) - floor(ratio * u), so every batch sees another grid:
    noise in training. Eval: the mean of the pooled maps over `draws` fixed,
    evenly spaced offsets, a deterministic average of the noise, as the paper's
    test-time averaging over draws. 2-D maps use torch's fractional_max_pool2d
    with the same offsets; 1-D maps this module's own gather.

    Args:
        ratio: the size reduction per pooling, e.g. sqrt(2) (the paper's choice) or 1.5.
        draws: offsets averaged at evaluation.
    """

    def __init__(self, ratio: float = 2**0.5, draws: int = 4) -> None:
        super().__init__()
        if not 1.0 < ratio <= 2.0:
            raise ConfigError(f"fractional max pooling ratio must be in (1, 2], got {ratio}")
        self.ratio, self.draws = ratio, draws

    def out_size(self, size: int) -> int:
        """Output length for an input length: floor((size - 1) / ratio), at least 1."""
        return max(1, int((size - 1) / self.ratio))

    def _pool1d(self, x: Tensor, u: Tensor) -> Tensor:
        n_out, k = self.out_size(x.shape[-1]), math.ceil(self.ratio)
        i = torch.arange(n_out + 1, device=x.device, dtype=x.dtype)
        bounds = torch.floor(self.ratio * (i + u[..., None])) - torch.floor(self.ratio * u[..., None])  # (N, C, n_out + 1)
        start, end = bounds[..., :-1].long(), bounds[..., 1:].long().clamp(max=x.shape[-1])
        idx = torch.minimum(start[..., None] + torch.arange(k, device=x.device), (end - 1)[..., None])  # (N, C, n_out, k)
        return x.gather(-1, idx.flatten(-2)).view(*idx.shape).amax(-1)

    def _pool(self, x: Tensor, u: Tensor) -> Tensor:
        if x.ndim == 3:
            return self._pool1d(x, u[..., 0])
        out = (self.out_size(x.shape[-2]), self.out_size(x.shape[-1]))
        return nn.functional.fractional_max_pool2d(x, 2, output_size=out, _random_samples=u.to(x.dtype))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in (3, 4):
            raise ConfigError(f"fractional max pooling takes (N, C, L) or (N, C, H, W) maps, got shape {tuple(x.shape)}")
        shape = (x.shape[0], x.shape[1], 2)
        if self.training:
            return self._pool(x, torch.rand(shape, device=x.device))
        offsets = [(d + 0.5) / self.draws for d in range(self.draws)]
        return torch.stack([self._pool(x, torch.full(shape, u, device=x.device)) for u in offsets]).mean(0)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio:.3g}, draws={self.draws}"


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a residual branch for whole samples in training.

    Training: branch(x) * m / p per sample, m ~ Bernoulli(p = 1 - drop); eval:
    the branch unchanged (its expectation), so a residual block is x + branch(x).
    """

    def __init__(self, drop: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop < 1.0:
            raise ConfigError(f"model.drop_path is the probability of skipping a residual branch and must be in [0, 1), got {drop}")
        self.drop = drop

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop == 0:
            return x
        keep = 1.0 - self.drop
        mask = (torch.rand((x.shape[0], *[1] * (x.ndim - 1)), device=x.device) < keep).to(x.dtype)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop={self.drop}"
