"""Initialisation health: per-layer activation statistics on one forward pass (LECTURE_DIGEST §3).

The lectures' experiment (10 layers, tanh, different init scales) in check form:
one forward pass of a training batch, a forward hook on every leaf module, and
per layer the output mean/std, the fraction of dead ReLU units and of saturated
tanh/sigmoid outputs, in the run record's probe schema so the same layer rules
(`diagnose.layer_rules`) judge them. Hooks live inside `forward_hooks`, which
always removes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from babysit.checks.base import CHECKS, CheckContext, CheckResult
from babysit.diagnose import layer_rules
from babysit.diagnose.findings import Finding
from babysit.nn.init import AFFINE

_DEAD_TYPES = (nn.ReLU, nn.ReLU6)
HIST_BINS = 20


@contextmanager
def forward_hooks(modules: dict[str, nn.Module], fn: Callable[[str, nn.Module, Any, Any], None]) -> Iterator[None]:
    """Call `fn(name, module, inputs, output)` after each module's forward; hooks are removed on exit, even on error.

    Observation only: whatever `fn` returns is dropped (a forward hook that returns a value replaces the output).
    """

    def observer(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(mod: nn.Module, inp: Any, out: Any) -> None:
            fn(name, mod, inp, out)

        return hook

    handles = [m.register_forward_hook(observer(name)) for name, m in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def leaf_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules without children, by qualified name, in module order (the depth order of the rules)."""
    return {name: m for name, m in model.named_modules() if name and not list(m.children())}


def output_stats(module: nn.Module, out: Tensor) -> dict[str, Any]:
    """One layer's statistics in the probe schema; units are the per-sample output elements."""
    out = out.detach().float()
    stats: dict[str, Any] = {"type": type(module).__name__, "act_mean": float(out.mean()), "act_std": float(out.std(unbiased=False))}
    lo, hi = float(out.min()), float(out.max())
    counts = torch.histc(out, HIST_BINS, lo, hi if hi > lo else lo + 1.0)
    stats["hist_edges"] = torch.linspace(lo, hi if hi > lo else lo + 1.0, HIST_BINS + 1).tolist()
    stats["hist_counts"] = counts.tolist()
    units = out.reshape(len(out), -1)
    if isinstance(module, _DEAD_TYPES):
        stats["dead_fraction"] = float(((units > 0).sum(0) == 0).float().mean())
    elif isinstance(module, nn.Tanh):
        stats["saturated_fraction"] = float((units.abs() > 0.99).float().mean())
    elif isinstance(module, nn.Sigmoid):
        stats["saturated_fraction"] = float(((units < 0.01) | (units > 0.99)).float().mean())
    if isinstance(module, AFFINE):
        # Units of one layer that compute the same value on every sample: symmetry was never broken.
        per_unit = out.reshape(len(out), out.shape[1], -1)
        spread = (per_unit.amax(1) - per_unit.amin(1)).max()
        stats["identical_units"] = bool(spread <= 1e-6 * (out.abs().max() + 1e-12))
    return stats


@torch.no_grad()
def layer_stats(model: nn.Module, x: Tensor) -> dict[str, dict[str, Any]]:
    """Statistics of every leaf module's output on one forward pass of `x`, in module order."""
    stats: dict[str, dict[str, Any]] = {}
    modules = {n: m for n, m in leaf_modules(model).items() if not isinstance(m, (nn.Flatten, nn.Identity))}
    with forward_hooks(modules, lambda name, mod, inp, out: stats.__setitem__(name, output_stats(mod, out))):
        model(x)
    return stats


def symmetry(stats: dict[str, dict[str, Any]]) -> list[Finding]:
    """Hidden affine layers whose units are all identical (zero or constant init); the output layer may start at zero."""
    affine = [n for n, s in stats.items() if "identical_units" in s]
    stuck = [n for n in affine[:-1] if stats[n]["identical_units"]]
    if not stuck:
        return []
    return [
        Finding(
            "init_symmetry",
            "error",
            f"every unit of layer {stuck[0]} computes the same output: the weights are zero or constant, so symmetry is never broken",
            evidence={"identical_layers": stuck},
            lecture_rule=layer_rules.RULE_SYMMETRY,
            fix=layer_rules.FIX_SYMMETRY,
        )
    ]


@CHECKS.register("init_health")
def init_health(ctx: CheckContext) -> CheckResult:
    """Per-layer activation std, dead ReLUs and saturated units on one forward pass."""
    model = ctx.copy_model(dropout=False)
    x, _ = ctx.batch()
    stats = layer_stats(model, x)
    acts = layer_rules.activation_layers(stats)
    findings = [
        *symmetry(stats),
        *layer_rules.dead_units(stats),
        *layer_rules.saturated_units(stats),
        *layer_rules.activation_scale(stats),
    ]
    stds = [s["act_std"] for s in acts.values()]
    plural = "s" if len(acts) != 1 else ""
    summary = f"{len(acts)} activation layer{plural}, std {min(stds):.3g} to {max(stds):.3g}" if stds else "no layers found"
    return CheckResult("init_health", summary, {"layers": stats}, findings)
