"""Per-layer activation statistics: computed on the device, read back as a few floats.

What the lectures look at to babysit a network (docs/lectures.md §1, §3):

- mean, std and a histogram of each layer's output: with W = 0.01·N(0,1) the std
  of a deep tanh net shrinks layer by layer towards 0; with std 1.0 it piles up
  at ±1; Xavier keeps it in between;
- the fraction of saturated units after tanh (|y| > 0.99) or sigmoid (y outside
  [0.01, 0.99]), where the local gradient is ≈ 0;
- the fraction of dead ReLUs: units never active (output <= 0) on any sample of
  the batch, which get no gradient and never recover;
- symmetry read from the weights themselves (`weight_symmetry`): an affine
  layer whose weight is all zero or whose rows are all identical.

This is the one implementation of per-layer statistics: `bs.watch` (probes
during training) and the preflight initialisation check (`checks.init_health`)
both call `layer_kind`, `measure` and `describe`, so they count the same way.

Contract: `measure(y, kind, bins)` reduces one layer output to a few small
tensors on `y`'s device (no sync); `describe(values, kind, numel, units, bins)` turns
their values, once on the CPU as floats, into the JSON-ready dict of
docs/run-record.md. Splitting the two lets the watch read every layer of a step
back in a single device transfer.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import Tensor, nn

# Activations whose units can die: zero output AND zero gradient for every negative input, so a
# unit inactive on every sample never recovers. Leaky ReLU, PReLU, ELU, SELU keep a gradient for
# x < 0 (the lectures' reason to use them) and tanh/sigmoid are never exactly 0: none of them dies.
RELU_FAMILY = (nn.ReLU, nn.ReLU6)
# Squashing activations: their fixed output range, which their histogram covers.
OUTPUT_RANGE = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}
AFFINE_AND_NORM = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
)
# Activation modules are recognised by where they are defined, so every torch activation
# (and babysit's own, e.g. Maxout) is probed without listing each one.
ACTIVATION_MODULES = ("torch.nn.modules.activation", "babysit.nn.activations")
NOT_PROBED = (nn.MultiheadAttention, nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d)

TANH_SATURATED = 0.99  # |tanh| > 0.99: derivative 1 - y^2 < 0.02
SIGMOID_SATURATED = 0.01  # sigma outside [0.01, 0.99]: derivative y(1 - y) < 0.0099
HIST_SAMPLE = 2048  # values a histogram counts at most: <= 1.1% standard error per bin


def layer_kind(module: nn.Module) -> str | None:
    """'relu', 'tanh', 'sigmoid' or 'plain' for a probed layer type; None for modules not probed."""
    if isinstance(module, NOT_PROBED):
        return None
    if isinstance(module, RELU_FAMILY):
        return "relu"
    if isinstance(module, nn.Tanh):
        return "tanh"
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    if isinstance(module, AFFINE_AND_NORM) or type(module).__module__ in ACTIVATION_MODULES:
        return "plain"
    return None


def unit_count(y: Tensor) -> int:
    """Units of a layer output: features of (N, D), channels of (N, C, *) (a conv filter dies as a whole)."""
    return int(y.shape[1]) if y.ndim >= 2 else int(y.numel())


@functools.lru_cache(maxsize=128)
def _sample_index(numel: int, device: torch.device) -> Tensor:
    """Fixed positions (drawn once per size, from a private generator: the run's RNG is untouched)."""
    order = torch.randperm(numel, generator=torch.Generator().manual_seed(numel))
    return order[:HIST_SAMPLE].clone().to(device)


def measure(y: Tensor, kind: str, bins: int) -> tuple[Tensor, ...]:
    """Reduce one layer output to a few small 1-d float32 tensors on its device, without a host sync.

    Their concatenation is [sum, sum of squared deviations, *extra, *hist_counts]
    where extra is (lo, hi) for 'plain', (lo, hi, *peak_per_unit) for 'relu',
    (saturated_count,) for 'tanh'/'sigmoid' (whose histogram covers their fixed
    output range). Mean, std,
    dead units and saturation use every value; the histogram counts at most
    `HIST_SAMPLE` of them, at fixed positions spread over the tensor, over their
    [lo, hi] range (`hist_range`): an exact histogram of a large layer would cost
    more than the rest of the step (torch.histc is a scalar loop on the CPU).
    Every piece is already 1-d, so the caller joins all layers of a step with a
    single `torch.cat`: on the CPU the cost of a probe is mostly the number of
    small ops, not their arithmetic.

    Args:
        y: the layer output (N, ...), any float dtype (bf16 is measured in float32).
        kind: from `layer_kind`.
        bins: number of equal-width histogram bins.
    """
    y = y.detach()
    flat = y.reshape(-1)
    if flat.dtype != torch.float32:
        flat = flat.float()
    n = flat.numel()
    total = flat.sum(0, keepdim=True)
    # Two passes (centre, then sum squares): one pass of E[y^2] - E[y]^2 would cancel
    # catastrophically for a layer whose mean is large against its std. mv gives the dot
    # product as shape (1,).
    centred = flat - total / max(n, 1)
    squares = torch.mv(centred.view(1, -1), centred)
    sample = torch.index_select(flat, 0, _sample_index(n, flat.device)) if n > HIST_SAMPLE else flat
    if kind in OUTPUT_RANGE:
        lo, hi = OUTPUT_RANGE[kind]
        # |y - centre| > threshold is tanh's |y| > 0.99 and sigmoid's y < 0.01 or y > 0.99;
        # relu + sign counts it without a boolean tensor (several times slower on the CPU).
        centre, threshold = (0.0, TANH_SATURATED) if kind == "tanh" else (0.5, 0.5 - SIGMOID_SATURATED)
        saturated = ((flat - centre).abs_() - threshold).relu_().sign_().sum(0, keepdim=True)
        return total, squares, saturated, torch.histc(sample, bins, lo, hi)
    lo, hi = torch.aminmax(sample, dim=0, keepdim=True)
    counts = (histogram_on_host if flat.device.type == "cpu" else histogram_on_device)(sample, lo, hi, bins)
    if kind == "relu":
        # A unit is dead when it is inactive (<= 0) on every sample and position of the batch;
        # amax over the batch, then over positions: two contiguous reductions. Each unit's
        # peak is read back and counted on the host (`describe`), which costs fewer ops here.
        peak = y.amax(0).reshape(y.shape[1], -1).amax(1) if y.ndim >= 3 else (y.amax(0) if y.ndim == 2 else y)
        return total, squares, lo, hi, peak if peak.dtype == torch.float32 else peak.float(), counts
    return total, squares, lo, hi, counts


def histogram_on_host(sample: Tensor, lo: Tensor, hi: Tensor, bins: int) -> Tensor:
    """Counts of `sample` in `bins` equal bins over [lo, hi] ([lo-1, hi+1] if lo == hi; none if not finite).

    On the CPU reading lo and hi costs nothing, so histc gets the range directly.
    """
    a, b = hist_range(lo.item(), hi.item())
    return torch.histc(sample, bins, a, b) if math.isfinite(b - a) else torch.zeros(bins)


def histogram_on_device(sample: Tensor, lo: Tensor, hi: Tensor, bins: int) -> Tensor:
    """`histogram_on_host` without reading lo and hi on the host (a sync on CUDA).

    Values are scaled into [0, 1] on the device; NaN and inf fall outside and are not counted.
    """
    width = hi - lo
    flat = width == 0
    start = torch.where(flat, lo - 1.0, lo)
    counts = torch.histc((sample - start) / torch.where(flat, 2.0, width), bins, 0.0, 1.0)
    return counts * torch.isfinite(width)  # an infinite range counts nothing, as on the host


def hist_range(lo: float, hi: float) -> tuple[float, float]:
    """The histogram's range for data in [lo, hi]: widened by 1 each way when the data is constant."""
    return (lo - 1.0, hi + 1.0) if lo == hi else (lo, hi)


def describe(values: list[float], kind: str, numel: int, units: int, bins: int) -> dict[str, Any]:
    """The JSON-ready statistics of one layer from the floats `measure` packed.

    Args:
        values: the tensors of `measure`, concatenated, as a list of floats.
        kind: the layer kind given to `measure`.
        numel: number of values in the layer output.
        units: number of units (`unit_count`), for the dead fraction.
        bins: the histogram bin count given to `measure`.
    """
    total, squares, n = values[0], values[1], max(numel, 1)
    out: dict[str, Any] = {"act_mean": total / n, "act_std": math.sqrt(squares / n) if squares >= 0 else math.nan}
    if kind in OUTPUT_RANGE:
        lo, hi = OUTPUT_RANGE[kind]
        extra = {"saturated_fraction": values[2] / n}
    else:
        lo, hi = hist_range(values[2], values[3])
        # A unit whose peak is <= 0 was inactive on the whole batch; a NaN peak is not counted dead.
        extra = {"dead_fraction": sum(1 for peak in values[4 : 4 + units] if peak <= 0) / units} if kind == "relu" else {}
    width = hi - lo if math.isfinite(hi - lo) else math.nan
    out["hist_edges"] = [lo + width * i / bins for i in range(bins + 1)]
    out["hist_counts"] = [int(c) for c in values[-bins:]]
    out.update(extra)
    return out


AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def weight_symmetry(model: nn.Module) -> dict[str, str]:
    """Affine layers (Linear/Conv, not the last) whose weights cannot break symmetry: "zero" or "identical rows".

    Read from the weights, not the outputs: a layer whose input is all zero
    (the layer below is dead) has identical outputs but random weights, and is
    not a symmetry fault. The output layer may start at zero (its input differs
    per unit once the hidden layers train), so it is not judged.
    """
    layers = [(n, m.weight) for n, m in model.named_modules() if isinstance(m, AFFINE) and m.weight is not None]
    found = {}
    for name, w in layers[:-1]:
        rows = w.detach().float().reshape(w.shape[0], -1)
        scale = float(rows.abs().max())
        if scale == 0:
            found[name] = "zero"
        elif len(rows) > 1 and float((rows - rows[0]).abs().max()) <= 1e-6 * scale:
            found[name] = "identical rows"
    return found
