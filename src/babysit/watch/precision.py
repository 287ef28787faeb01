"""Mixed precision: what a gradient scaler did (`ScalerWatch`) and which gradients float16 loses (`gradient_underflow`).

Under `torch.autocast` the probes (`watch.probes`) measure half-precision outputs
in float32 and count the values that overflowed (`dtype`, `nonfinite_fraction`
of a layer). Two faults of float16 training need more than one forward pass:

- a `torch.amp.GradScaler` multiplies the loss by its scale before backward, so
  that small gradients do not underflow float16's smallest value (6e-8), and
  skips `optimizer.step()` whenever the scaled gradients hold inf/NaN, halving
  the scale (`backoff_factor`); it doubles the scale after `growth_interval`
  clean steps. Starting from 2^16, a healthy run skips a few steps while the scale
  settles, then about one per growth interval. `ScalerWatch` reads the scale
  after each iteration (`get_scale`, public) and counts the halvings: the skipped
  steps. A skipped step calls no optimiser hook, so the scale is the only witness.
- `gradient_underflow` computes one batch's gradients twice, in float32 and
  under autocast at the given loss scale, and counts the entries float32 gives a
  value that the half-precision pass rounds to zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from babysit.errors import ConfigError

# Skipped iterations listed (the first ones: where it starts is what a user needs).
KEEP = 20
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class ScalerWatch:
    """The steps a gradient scaler skipped, read from its scale after each training iteration.

    Args:
        scaler: a `torch.amp.GradScaler` (or anything with `get_scale`, `get_backoff_factor`,
            `get_growth_interval` and `is_enabled`).
    """

    def __init__(self, scaler: Any) -> None:
        for method in ("get_scale", "get_backoff_factor", "get_growth_interval", "is_enabled"):
            if not callable(getattr(scaler, method, None)):
                raise ConfigError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__} (it has no {method}())")
        self.scaler = scaler
        self.backoff = float(scaler.get_backoff_factor())
        self.growth_interval = int(scaler.get_growth_interval())
        self.first = self.last = self.lowest = float(scaler.get_scale()) if scaler.is_enabled() else None
        self.iterations = self.skipped = self.trailing = 0
        self.skipped_at: list[int] = []

    def read(self) -> int:
        """Read the scale after one training iteration (after `scaler.update()`); returns the steps skipped since the last read.

        Each skip multiplies the scale by `backoff`, so a fall from s to s' is
        log(s/s') / log(1/backoff) skips, also when reads are sparser than iterations.
        """
        if self.last is None:
            return 0
        scale = float(self.scaler.get_scale())  # a device sync on CUDA, like reading the loss
        self.iterations += 1
        skipped = 0
        if scale < self.last and 0 < self.backoff < 1:
            skipped = max(1, round(math.log(self.last / scale) / math.log(1 / self.backoff)))
            self.skipped += skipped
            if len(self.skipped_at) < KEEP:
                self.skipped_at.append(self.iterations)
        self.trailing = self.trailing + 1 if skipped else 0
        self.last, self.lowest = scale, min(self.lowest, scale)
        return skipped

    def facts(self) -> dict[str, Any]:
        """JSON-ready: iterations read, steps skipped (and at which iterations), the scale's first, last and lowest value."""
        return {
            "iterations": self.iterations,
            "skipped": self.skipped,
            "skipped_at": list(self.skipped_at),
            "trailing_skipped": self.trailing,
            "scale_first": self.first,
            "scale_last": self.last,
            "scale_lowest": self.lowest,
            "backoff_factor": self.backoff,
            "growth_interval": self.growth_interval,
        }

    def __repr__(self) -> str:
        return f"ScalerWatch(iterations={self.iterations}, skipped={self.skipped}, scale={self.last})"


def _gradients(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor], dtype: torch.dtype | None, scale: float) -> dict[str, Tensor]:
    """Each trainable parameter's gradient of loss_fn(model(x), y) * scale, under autocast(dtype) when given, unscaled, in float32."""
    model.zero_grad(set_to_none=True)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(0)  # both passes draw the same dropout masks
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(model(x), y)
        (loss.float() * scale).backward()
    return {n: p.grad.detach().float() / scale for n, p in model.named_parameters() if p.grad is not None}


def gradient_underflow(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    precision: str = "fp16",
    loss_scale: float = 1.0,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> dict[str, Any]:
    """The share of gradient entries that float32 gives a value and half precision rounds to zero, per weight tensor.

    One batch, two passes on `model` (use a copy: its gradients are overwritten): in
    float32, and under autocast in `precision` with the loss multiplied by `loss_scale`
    (what a GradScaler does; 1 without one). An entry of a float32 gradient is
    almost never exactly zero unless the gradient's structure makes it so (a dead
    unit, an unused input), and then it is zero in both passes; an entry zero only in
    the half-precision pass was lost to underflow (float16's smallest value is 6e-8).

    Returns:
        {"precision", "loss_scale", "params": {name: {"lost": share, "nonzero": entries
        nonzero in float32}}, "worst": the name with the largest share (or None)}.
    """
    if precision not in DTYPES:
        raise ConfigError(f"precision must be one of {', '.join(DTYPES)}, got {precision!r}")
    if not loss_scale > 0:
        raise ConfigError(f"loss_scale must be > 0 (a GradScaler's scale; 1 without one), got {loss_scale}")
    reference = _gradients(model, x, y, loss_fn, None, 1.0)
    half = _gradients(model, x, y, loss_fn, DTYPES[precision], loss_scale)
    model.zero_grad(set_to_none=True)
    params = {}
    for name, g in reference.items():
        if name not in half or g.ndim < 2:  # weights only: a bias's gradient is a sum, far from underflow
            continue
        nonzero = g != 0
        count = int(nonzero.sum())
        lost = int((nonzero & (half[name] == 0)).sum())
        params[name] = {"lost": lost / count if count else 0.0, "nonzero": count}
    worst = max(params, key=lambda n: params[n]["lost"], default=None)
    return {"precision": precision, "loss_scale": loss_scale, "params": params, "worst": worst}
