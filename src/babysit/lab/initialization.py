"""Lab `init`: activation statistics through a deep net for each weight initialisation (docs/lectures.md §3).

The lectures' demo: 10 layers of 500 units on unit-gaussian input. Small random
weights make tanh activations collapse to zero layer by layer, std-1 weights
saturate tanh at ±1, Xavier keeps tanh alive but collapses with ReLU (half the
units are off), and He fixes ReLU. Batch norm before each nonlinearity makes the
statistics independent of the weight scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from torch import nn

from babysit.lab.result import EXPERIMENTS, LabResult, option_limits
from babysit.nn.activations import ACTIVATIONS
from babysit.nn.init import INITS


@dataclass(frozen=True)
class _Setup:
    label: str
    activation: str
    init: str  # an INITS name, or "std=<x>" for W = x * N(0,1)


SETUPS = (
    _Setup("tanh, 0.01·N(0,1)", "tanh", "std=0.01"),
    _Setup("tanh, 1.0·N(0,1)", "tanh", "std=1.0"),
    _Setup("tanh, Xavier", "tanh", "xavier"),
    _Setup("ReLU, Xavier", "relu", "xavier"),
    _Setup("ReLU, He", "relu", "he"),
)


def _fill(weight: torch.Tensor, init: str) -> None:
    if init.startswith("std="):
        INITS.get("normal")(weight, std=float(init[4:]))
    else:
        INITS.get(init)(weight)


def layer_statistics(setup: _Setup, x: torch.Tensor, layers: int, batchnorm: bool) -> dict[str, list[float] | list[torch.Tensor]]:
    """Forward and backward through `layers` (linear, [bn], activation) blocks; per-layer statistics.

    Returns activation mean/std and saturated fraction (|a| > 0.99, tanh) per
    layer, the activations themselves (for histograms), and the norm of each
    layer's weight gradient under a unit-gaussian upstream gradient.
    """
    units = x.shape[1]
    linears = [nn.Linear(units, units, bias=False) for _ in range(layers)]
    for lin in linears:
        _fill(lin.weight, setup.init)
    h, acts = x, []
    for lin in linears:
        z = lin(h)
        if batchnorm:
            z = nn.functional.batch_norm(z, None, None, training=True)
        h = ACTIVATIONS.get(setup.activation)()(z)
        acts.append(h)
    h.backward(torch.randn(h.shape, generator=torch.Generator().manual_seed(1)))
    return {
        "mean": [a.mean().item() for a in acts],
        "std": [a.std().item() for a in acts],
        "saturated": [(a.abs() > 0.99).float().mean().item() for a in acts],
        "grad_norm": [lin.weight.grad.norm().item() for lin in linears],
        "acts": [a.detach() for a in acts],
    }


def _histograms(stats: dict[str, dict], title: str):
    labels = list(stats)
    layers = len(next(iter(stats.values()))["acts"])
    fig, axes = plt.subplots(len(labels), layers, figsize=(1.6 * layers, 1.5 * len(labels)), squeeze=False)
    for r, label in enumerate(labels):
        # One x-range per row, as in the lecture's figure, so a collapse shows as a narrowing spike.
        lo = min(a.min().item() for a in stats[label]["acts"])
        hi = max(a.max().item() for a in stats[label]["acts"])
        if hi - lo < 1e-12:
            lo, hi = lo - 1, hi + 1
        for c, a in enumerate(stats[label]["acts"]):
            ax = axes[r, c]
            ax.hist(a.flatten().numpy(), bins=40, range=(lo, hi), color="C0")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(f"layer {c + 1}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _memory(layers: int, units: int, samples: int, seed: int) -> float:
    """Bytes the experiment holds at its peak: every setup's activations (kept for the histograms) and, per run, weights and gradients."""
    kept = 2 * len(SETUPS) * layers * samples * units * 4
    one_run = layers * (2 * units * units + 3 * samples * units) * 4
    return kept + one_run


@EXPERIMENTS.register("init")
@option_limits(layers=(1, 50), units=(1, 5000), samples=(2, 100_000), memory=_memory)
def init_experiment(layers: int = 10, units: int = 500, samples: int = 1000, seed: int = 0) -> LabResult:
    """Per-layer activation mean/std/histograms of a deep net for 0.01, 1.0, Xavier and He inits, with and without BN."""
    result = LabResult(
        "init",
        "Weight initialisation and activation statistics",
        f"CS231n lecture 6, weight initialisation: the {layers}-layer x {units}-unit demo on unit-gaussian input.",
    )
    all_stats: dict[bool, dict[str, dict]] = {}
    for bn in (False, True):
        all_stats[bn] = {}
        for setup in SETUPS:
            torch.manual_seed(seed)
            x = torch.randn(samples, units)
            all_stats[bn][setup.label] = layer_statistics(setup, x, layers, bn)
    for bn, stats in all_stats.items():
        suffix = " + batch norm" if bn else ""
        result.table(
            f"Activation std per layer{suffix}",
            ["setup", *[f"L{i + 1}" for i in range(layers)]],
            [[label, *s["std"]] for label, s in stats.items()],
        )
        result.table(
            f"Activation mean, last-layer saturation and weight-gradient norms{suffix}",
            ["setup", "mean L1", f"mean L{layers}", f"|a|>0.99 L{layers}", "grad norm L1", f"grad norm L{layers}"],
            [[label, s["mean"][0], s["mean"][-1], s["saturated"][-1], s["grad_norm"][0], s["grad_norm"][-1]] for label, s in stats.items()],
        )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, bn in zip(axes, (False, True)):
        for label, s in all_stats[bn].items():
            ax.semilogy(range(1, layers + 1), [max(v, 1e-30) for v in s["std"]], marker="o", label=label)
        ax.set(xlabel="layer", title="with batch norm" if bn else "without batch norm")
    axes[0].set_ylabel("activation std (log)")
    axes[0].legend(fontsize=8)
    result.figure("activation std per layer for each init", fig)
    result.figure("activation histograms per layer", _histograms(all_stats[False], "activations per layer (rows: setups)"))
    result.figure("activation histograms per layer with batch norm", _histograms(all_stats[True], "with batch norm"))

    s = all_stats[False]
    small, big, xt, xr, he = (s[u.label] for u in SETUPS)
    result.claim("tanh + 0.01·N(0,1): activations vanish (last-layer std < 1e-3)", small["std"][-1] < 1e-3, f"std L1 {small['std'][0]:.3g} -> L{layers} {small['std'][-1]:.3g}")
    # A weight gradient is upstream gradient x the layer's input, so vanishing inputs mean vanishing gradients.
    result.claim(
        "... and so do the weight gradients (last layer < 1e-3x Xavier's)",
        small["grad_norm"][-1] < 1e-3 * xt["grad_norm"][-1],
        f"grad norm L{layers}: 0.01 init {small['grad_norm'][-1]:.3g} vs Xavier {xt['grad_norm'][-1]:.3g}",
    )
    result.claim("tanh + 1.0·N(0,1): units saturate at ±1 (> 50% of |a| > 0.99 in every layer)", min(big["saturated"]) > 0.5, f"min over layers {min(big['saturated']):.2f}")
    result.claim("tanh + Xavier: last-layer std stays within [0.2, 1.0]", 0.2 <= xt["std"][-1] <= 1.0, f"std L{layers} {xt['std'][-1]:.3f}")
    ratio_x = xr["std"][-1] / xr["std"][0]
    result.claim("ReLU + Xavier: the std collapses (last < 0.1x first)", ratio_x < 0.1, f"last/first {ratio_x:.3f}")
    ratio_he = he["std"][-1] / he["std"][0]
    result.claim("ReLU + He: last-layer std within 0.5-2x of the first", 0.5 <= ratio_he <= 2.0, f"last/first {ratio_he:.3f}")
    bn_last = min(v["std"][-1] for v in all_stats[True].values())
    result.claim("with batch norm every init keeps last-layer std > 0.5", bn_last > 0.5, f"min last-layer std {bn_last:.3f}")
    if not math.isfinite(bn_last):  # pragma: no cover - guards the figure above from silent NaN
        raise RuntimeError("non-finite activation statistics")
    return result
