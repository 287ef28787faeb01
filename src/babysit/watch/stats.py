"""Per-layer activation statistics: computed on the device, read back as a few floats.

What the lectures look at to babysit a network (docs/lectures.md §1, §3):

- mean, std and a histogram of each layer's output: with W = 0.01·N(0,1) the std
  of a deep tanh net shrinks layer by layer towards 0; with std 1.0 it piles up
  at ±1; Xavier keeps it in between;
- the fraction of saturated units after tanh (|y| > 0.99) or sigmoid (y outside
  [0.01, 0.99]), where the local gradient is ≈ 0;
- the fraction of dead ReLUs: units never active (output <= 0) on any sample of
  the batch, which get no gradient and never recover; also read from the input of a
  ReLU applied as a function (a transformer's feed-forward), kind 'pre_relu';
- symmetry read from the weights themselves (`weight_symmetry`): an affine
  layer whose weight is all zero or whose rows are all identical.

This is the one implementation of per-layer statistics: `bs.watch` (probes
during training) and the preflight initialisation check (`checks.init_health`)
both pick their layers and measure them through `watch.layers` (which calls
`layer_kind`, `measure` and `describe` here, and `watch.recurrent` inside
recurrent layers), so they count the same way.

Contract: `measure(y, kind, bins)` reduces one layer output to a few pieces (small
tensors on an accelerator, no sync; host floats on the CPU); `read_back` turns the
pieces of every layer of a step into floats with a single device transfer, and
`describe(values, kind, numel, bins)` turns one layer's floats into the
JSON-ready dict of docs/run-record.md.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
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
# Activation modules are recognised by where they are defined: every library keeps them in a module named
# activation(s) (torch.nn.modules.activation, transformers.activations' GELUActivation and kin,
# babysit.nn.activations, timm.layers.activations), so each is probed without a list of class names and
# without importing those libraries (`is_activation`).
ACTIVATION_HOMES = ("activation", "activations")
NOT_PROBED = (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d)


def is_activation(module: nn.Module) -> bool:
    """Whether `module` is a nonlinearity, read from where its class is defined; Softmax and kin (which turn
    scores into probabilities) live there too but are not probed (`NOT_PROBED`)."""
    return type(module).__module__.rsplit(".", 1)[-1] in ACTIVATION_HOMES and not isinstance(module, NOT_PROBED)
# Kinds whose units can be dead: 'relu' measures a ReLU's output, 'pre_relu' the input of a ReLU
# applied as a function (F.relu in a transformer's feed-forward), which is dead where it is <= 0.
DYING = ("relu", "pre_relu")

TANH_SATURATED = 0.99  # |tanh| > 0.99: derivative 1 - y^2 < 0.02
SIGMOID_SATURATED = 0.01  # sigma outside [0.01, 0.99]: derivative y(1 - y) < 0.0099
HIST_SAMPLE = 2048  # values a histogram counts at most: <= 1.1% standard error per bin


def layer_kind(module: nn.Module) -> str | None:
    """'relu', 'tanh', 'sigmoid' or 'plain' for a probed layer type; None for modules not probed.

    A recurrent layer gets the kind of its state (`recurrent_kind`); nn.MultiheadAttention's
    attention output is 'plain'. 'pre_relu' depends on where a Linear sits (`watch.layers`).
    """
    if isinstance(module, NOT_PROBED):
        return None
    if isinstance(module, nn.RNNBase):
        return recurrent_kind(module)
    if isinstance(module, nn.MultiheadAttention):
        return "plain"
    if isinstance(module, RELU_FAMILY):
        return "relu"
    if isinstance(module, nn.Tanh):
        return "tanh"
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    if isinstance(module, AFFINE_AND_NORM) or is_activation(module):
        return "plain"
    return None


def recurrent_kind(module: nn.RNNBase) -> str:
    """The kind of a recurrent layer's state h_t: 'relu' for a ReLU RNN, 'plain' for an LSTM with
    a projection (h = W_hr(o * tanh(c)) is unbounded), else 'tanh' (a tanh RNN's h = tanh(.), a
    GRU's convex mix of tanh(.) and h_{t-1}, an LSTM's o * tanh(c): all in (-1, 1))."""
    if module.mode == "RNN_RELU":
        return "relu"
    return "plain" if getattr(module, "proj_size", 0) else "tanh"


@functools.lru_cache(maxsize=128)
def _sample_index(numel: int, device: torch.device) -> Tensor:
    """Fixed positions (drawn once per size, from a private generator: the run's RNG is untouched)."""
    order = torch.randperm(numel, generator=torch.Generator().manual_seed(numel))
    return order[:HIST_SAMPLE].clone().to(device)


def measure(y: Tensor, kind: str, bins: int) -> tuple[Piece, ...]:
    """Reduce one layer output to a few numbers; on an accelerator without a host sync.

    The pieces, joined by `read_back`, are [sum, sum of squared deviations, *extra,
    *hist_counts] where extra is (lo, hi) for 'plain', (lo, hi, *per_unit) for
    'relu' (each unit's peak on an accelerator, its sum on the CPU: either is <= 0
    exactly when the unit is dead), (saturated_count,) for 'tanh'/'sigmoid' (whose
    histogram covers their fixed output range). Mean, std, dead units and saturation
    use every value; the histogram counts at most `HIST_SAMPLE` of them, at fixed
    positions spread over the tensor, over their [lo, hi] range (`hist_range`): an
    exact histogram of a large layer would cost more than the rest of the step
    (torch.histc is a scalar loop on the CPU). 'pre_relu' is measured as 'relu' with
    each unit's peak (on the CPU too: its values may be negative).

    On an accelerator each piece is a small 1-d float32 tensor on `y`'s device, so
    the caller reads every layer of a step back in one transfer. On the CPU, where
    reading a value costs nothing, the pieces are floats already on the host and the
    sample to histogram (`measure_on_host`).

    Args:
        y: the layer output (N, ...), any float dtype (bf16 is measured in float32).
        kind: from `layer_kind`.
        bins: number of equal-width histogram bins.
    """
    y = y.detach()
    if y.device.type == "cpu":
        return measure_on_host((y if y.dtype == torch.float32 else y.float()).numpy(), kind, bins)
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
        # relu + sign counts it without a boolean tensor.
        centre, threshold = _SATURATION[kind]
        saturated = ((flat - centre).abs_() - threshold).relu_().sign_().sum(0, keepdim=True)
        return total, squares, saturated, torch.histc(sample, bins, lo, hi)
    lo, hi = torch.aminmax(sample, dim=0, keepdim=True)
    counts = histogram_on_device(sample, lo, hi, bins)
    if kind in DYING:
        # A unit is dead when it is inactive (<= 0) on every sample and position of the batch;
        # amax over the batch, then over positions: two contiguous reductions. Each unit's
        # peak is read back and counted on the host (`describe`), which costs fewer ops here.
        peak = flat.view(units_shape(y)).amax(0).amax(1)
        return total, squares, lo, hi, peak, counts
    return total, squares, lo, hi, counts


# (centre, threshold): |y - centre| > threshold is tanh's |y| > 0.99 and sigmoid's y outside [0.01, 0.99].
_SATURATION = {"tanh": (0.0, TANH_SATURATED), "sigmoid": (0.5, 0.5 - SIGMOID_SATURATED)}


def units_shape(y: Tensor) -> tuple[int, int, int]:
    """(samples, units, positions per unit) of a layer output: a conv channel is one unit over its positions."""
    if y.ndim < 2:
        return 1, int(y.numel()), 1
    samples, units = int(y.shape[0]), int(y.shape[1])
    return samples, units, y.numel() // (samples * units) if samples * units else 0


# A diverging layer overflows float32 sums to inf, which the rules read as such: numpy's warnings would only repeat it.
QUIET = np.errstate(over="ignore", invalid="ignore")


@QUIET
def measure_on_host(a: np.ndarray, kind: str, bins: int) -> tuple[list[float], HostHistogram]:
    """`measure` of a layer output on the CPU, given as a float32 array of its shape (a view of its memory).

    Returns the floats before the histogram and the sample to histogram: `read_back`
    counts the samples of every layer of a step together. Every call is numpy, which
    costs a fraction of a torch call: on a small model the cost of a probe is the
    number of calls and of passes over the output, not their arithmetic. Two passes
    (column sums, sum of squares) give the moments and, for a ReLU, each unit's sum.
    """
    samples, units = a.shape[:2] if a.ndim >= 2 else (1, a.size)
    flat = a.reshape(-1)
    if not flat.size:
        values, sample, per_unit = [0.0, 0.0], flat.copy(), [math.nan] * units  # an empty output: no unit counted dead
    else:
        # Σy over the batch for each (unit, position): one BLAS pass, and short sums, so the total
        # (a sum of these) is as accurate as a pairwise sum.
        columns = _ones(samples) @ flat.reshape(samples, -1)
        # Each unit's sum over the batch and positions: ReLU outputs are never negative, so it is
        # <= 0 exactly when the unit was inactive on all of them, as its peak is on an accelerator.
        per_unit = columns.reshape(units, -1).sum(axis=1).tolist() if kind == "relu" else []
        if kind == "pre_relu":  # a ReLU's input may be negative: each unit's peak, one more pass
            per_unit = a.reshape(samples, units, -1).max(axis=(0, 2)).tolist()
        values = _moments(flat, float(columns.sum()))
        sample = flat[_sample_positions(flat.size)] if flat.size > HIST_SAMPLE else flat.copy()  # a copy: later in-place ops cannot change it
    if kind in OUTPUT_RANGE:
        centre, threshold = _SATURATION[kind]
        values.append(float(np.count_nonzero(np.abs(flat - centre) > threshold)))
        return values, HostHistogram(sample, *OUTPUT_RANGE[kind], bins)
    # NaN when a value is NaN (then nothing is counted), and for an empty output.
    lo, hi = (float(sample.min()), float(sample.max())) if flat.size else (math.nan, math.nan)
    values += [lo, hi]
    if kind in DYING:
        values += per_unit
    return values, HostHistogram(sample, *hist_range(lo, hi), bins)


@functools.lru_cache(maxsize=32)
def _ones(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.float32)


@dataclass(slots=True)
class HostHistogram:
    """A piece of `measure` on the CPU: a sample still to count in `bins` equal bins over [lo, hi]."""

    sample: np.ndarray
    lo: float
    hi: float
    bins: int


# What `measure` returns and `read_back` reads: a device tensor, host floats, or a host sample to count.
Piece = Tensor | list[float] | HostHistogram


@functools.lru_cache(maxsize=128)
def _sample_positions(numel: int) -> np.ndarray:
    """`_sample_index` as a numpy array: the CPU and an accelerator sample the same positions."""
    return _sample_index(numel, torch.device("cpu")).numpy()


@QUIET
def count_bins(samples: list[np.ndarray], ranges: list[tuple[float, float]], bins: int) -> list[list[int]]:
    """Counts of each sample in `bins` equal bins over its (lo, hi) range, the last bin closed, as torch.histc counts.

    NaN and inf are not counted, nor any value of a sample whose range is not finite. A
    range holds its sample's finite values (the sample's own extremes, or the fixed output
    range of tanh and sigmoid), so the rest need no check. All samples are counted
    together, a dozen numpy calls however many layers, with positions in float64: a
    range as narrow as the smallest float32 cannot overflow them.
    """
    counts = [[0] * bins for _ in samples]
    kept = [i for i, (lo, hi) in enumerate(ranges) if math.isfinite(lo) and math.isfinite(hi) and hi > lo]
    if not kept:
        return counts
    sizes = tuple(samples[i].size for i in kept)
    lo = np.repeat([ranges[i][0] for i in kept], sizes)
    scale = np.repeat([bins / (ranges[i][1] - ranges[i][0]) for i in kept], sizes)
    position = np.concatenate([samples[i] for i in kept], dtype=np.float64)
    position -= lo
    position *= scale
    # NaN and inf (only a tanh or sigmoid sample can hold them) go to a slot past the last bin.
    odd = None if np.isfinite(position.sum()) else ~np.isfinite(position)
    if odd is not None:
        position[odd] = 0.0
    np.clip(position, 0, bins - 1, out=position)  # hi itself falls in the last bin
    if odd is not None:
        position[odd] = bins
    slots = np.bincount(position.astype(np.intp) + _slot_starts(sizes, bins), minlength=len(kept) * (bins + 1))
    for i, row in zip(kept, slots.reshape(len(kept), bins + 1)[:, :bins].tolist()):
        counts[i] = row
    return counts


@functools.lru_cache(maxsize=32)
def _slot_starts(sizes: tuple[int, ...], bins: int) -> np.ndarray:
    """For samples of these sizes laid end to end: where each value's sample's bins + 1 slots start."""
    return np.repeat(np.arange(len(sizes)) * (bins + 1), sizes)


# Σy² − (Σy)²/n in float32 is off by about Σy² times the rounding of a float32 sum, so its
# relative error grows with Σy² / Σ(y − mean)² = 1 + mean²/var. One pass is kept while that
# ratio is at most 4 (|mean| <= 1.7 std: centred layers, ReLU outputs), which bounds the error
# at a few times the two-pass one; a layer whose mean is large against its spread (a collapsed
# or saturated layer, the case the rules look for), or whose squares overflow float32 (a
# diverging one), gets a second, centred pass in float64.
ONE_PASS_MAX_RATIO = 4.0


def _moments(a: np.ndarray, total: float) -> list[float]:
    """[Σy, Σ(y − mean)²] of a non-empty 1-d float32 array whose sum is `total`: one pass when that is accurate, else two."""
    squares = float(np.dot(a, a))
    deviations = squares - total * total / a.size
    if deviations * ONE_PASS_MAX_RATIO >= squares and squares < math.inf:  # False for NaN too
        return [total, deviations]
    b = a.astype(np.float64)
    total = float(b.sum())
    b -= total / a.size
    return [total, float(np.dot(b, b))]


def read_back(pieces: Sequence[Piece]) -> list[float]:
    """The values of `measure`'s pieces (and any other 1-d float32 tensors), in order, as host floats.

    Every tensor piece comes back in a single device-to-host transfer, and every
    host histogram is counted in one `count_bins` call.
    """
    tensors = [p for p in pieces if isinstance(p, Tensor)]
    device_values = iter(torch.cat(tensors).tolist() if tensors else ())
    histograms = [p for p in pieces if isinstance(p, HostHistogram)]
    counted = iter(_count_histograms(histograms))
    out: list[float] = []
    for p in pieces:
        if isinstance(p, Tensor):
            out += itertools.islice(device_values, p.numel())
        elif isinstance(p, HostHistogram):
            out += next(counted)
        else:
            out += p
    return out


def piece_size(piece: Piece) -> int:
    """How many values `read_back` makes of one piece."""
    if isinstance(piece, Tensor):
        return piece.numel()
    return piece.bins if isinstance(piece, HostHistogram) else len(piece)


def _count_histograms(histograms: list[HostHistogram]) -> list[list[int]]:
    """`count_bins` of each histogram, in order; one call per distinct bin count."""
    counts: list[list[int]] = [[] for _ in histograms]
    for bins in {h.bins for h in histograms}:
        group = [i for i, h in enumerate(histograms) if h.bins == bins]
        got = count_bins([histograms[i].sample for i in group], [(histograms[i].lo, histograms[i].hi) for i in group], bins)
        for i, c in zip(group, got):
            counts[i] = c
    return counts


def histogram_on_device(sample: Tensor, lo: Tensor, hi: Tensor, bins: int) -> Tensor:
    """`count_bins` over [lo, hi] (`hist_range`) with lo and hi left on the device (reading them is a sync on CUDA).

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


def describe(values: Sequence[float], kind: str, numel: int, bins: int) -> dict[str, Any]:
    """The JSON-ready statistics of one layer from the floats `measure` packed.

    Args:
        values: `read_back` of the pieces of one `measure` call.
        kind: the layer kind given to `measure`.
        numel: number of values in the layer output.
        bins: the histogram bin count given to `measure`.
    """
    total, squares, n = values[0], values[1], max(numel, 1)
    out: dict[str, Any] = {"act_mean": total / n, "act_std": math.sqrt(squares / n) if squares >= 0 else math.nan}
    if kind in OUTPUT_RANGE:
        lo, hi = OUTPUT_RANGE[kind]
        extra = {"saturated_fraction": values[2] / n}
    else:
        lo, hi = hist_range(values[2], values[3])
        # A unit whose peak (or sum: ReLU outputs are never negative) is <= 0 was inactive on the
        # whole batch; a NaN one is not counted dead. One value per unit sits before the counts.
        per_unit = values[4:-bins]
        extra = {"dead_fraction": sum(1 for v in per_unit if v <= 0) / len(per_unit) if per_unit else math.nan} if kind in DYING else {}
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
