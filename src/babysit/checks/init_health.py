"""Initialisation health: per-layer activation statistics on one forward pass (docs/lectures.md §3).

The lectures' experiment (10 layers, tanh, different init scales) in check form:
one forward pass of a training batch, a forward hook on every layer `bs.watch`
probes (`watch.layers`: the same layers, inside recurrent and transformer layers
too), and per layer the output mean/std, the fraction of dead ReLU units and of
saturated tanh/sigmoid outputs, computed by the same code as `bs.watch`
(`watch.stats`) in the run record's probe schema, so the same layer rules
(`diagnose.layer_rules`) judge them. Symmetry is read from the weights. The hooks
are removed when the pass ends, also when it raises.
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
from babysit.watch import layers as probed, stats

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


@torch.no_grad()
def layer_stats(model: nn.Module, x: Tensor) -> dict[str, dict[str, Any]]:
    """Statistics of every probed layer's output on one forward pass of `x`, in call order (the first call of each)."""
    found: dict[str, dict[str, Any]] = {}

    def record(layer: probed.ProbedLayer, args: tuple, kwargs: dict, out: Any) -> None:
        if layer.name not in found and (m := probed.measure_layer(layer, args, kwargs, out, HIST_BINS)) is not None:
            found[layer.name] = probed.describe_layer(m, stats.read_back(m.pieces), HIST_BINS)

    handles = [probed.hook(layer, record) for layer in probed.probed_layers(model)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return found


def symmetry(model: nn.Module) -> list[Finding]:
    """Hidden affine layers whose weights are zero or have identical rows: symmetry is never broken."""
    stuck = stats.weight_symmetry(model)
    if not stuck:
        return []
    first = next(iter(stuck))
    return [
        Finding(
            "init_symmetry",
            "error",
            f"the weights of layer {first} are {'all zero' if stuck[first] == 'zero' else 'identical in every row'}: "
            "every unit computes the same output and gets the same gradient, so symmetry is never broken",
            evidence={"identical_layers": list(stuck), "why": stuck},
            lecture_rule=layer_rules.RULE_SYMMETRY,
        )
    ]


# Modules that turn logits into probabilities or clip them: wrong before a softmax cross-entropy loss.
_SCORE_ACTIVATIONS = (nn.Softmax, nn.Sigmoid, nn.ReLU, nn.ReLU6, nn.Tanh, nn.Softplus)
RULE_SCORES = (
    "docs/lectures.md §1: the scores fed to softmax cross-entropy are raw logits; a softmax, sigmoid or ReLU "
    "after the last layer squashes or clips them and the loss cannot push the right class up"
)


def last_module(model: nn.Module) -> nn.Module | None:
    """The last leaf module in module order (the output of an nn.Sequential; a guess for other models)."""
    leaves = [m for m in leaf_modules(model).values() if not isinstance(m, (nn.Identity, nn.Dropout, nn.Flatten))]
    return leaves[-1] if leaves else None


def score_checks(model: nn.Module, scores: Tensor, y: Tensor, num_classes: int, head: Tensor | None = None) -> list[Finding]:
    """An activation applied to the class scores before the loss (their shape was checked before any check ran).

    The activation is read from the model's last module when it is one. Else the
    scores are compared with the output of the last affine layer (`head`, when
    given): scores equal to it are raw logits, whatever their values. Only scores
    that differ from it are read by their properties: rows summing to 1 with no
    negative entry (a softmax), every score in [0, 1] (a sigmoid), or no negative
    score with exact zeros (a ReLU). Scores identical across the classes of every
    sample (symmetric weights) say nothing about an activation.
    """
    last = last_module(model)
    s = scores.detach().float()
    if isinstance(last, _SCORE_ACTIVATIONS):
        why = f"the model's last module is {type(last).__name__}"
    elif float(s.std()) == 0 or float(s.std(1).max()) == 0:
        return []  # constant scores (zero or constant weights) say nothing about an activation; the symmetry check explains them
    elif head is not None and head.shape == s.shape and torch.allclose(head.float(), s, rtol=1e-5, atol=1e-6):
        return []  # the scores are the last affine layer's raw output
    elif s.min() >= 0 and torch.allclose(s.sum(1), torch.ones(len(s)), atol=1e-4):
        why = "every row of scores is non-negative and sums to 1 (a softmax)"
    elif s.min() >= 0 and s.max() <= 1:
        why = "every score lies in [0, 1] (a sigmoid)"
    elif s.min() >= 0 and float((s == 0).float().mean()) > 0.1:
        why = f"no score is negative and {float((s == 0).float().mean()):.0%} are exactly 0 (a ReLU)"
    else:
        return []
    return [
        Finding(
            "activation_on_scores",
            "error",
            f"an activation is applied to the class scores before the loss: {why}",
            evidence={"last_module": type(last).__name__ if last is not None else None, "score_min": float(s.min()), "score_max": float(s.max()),
                      "row_sum_mean": float(s.sum(1).mean())},
            lecture_rule=RULE_SCORES,
        )
    ]


_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Bilinear)


@torch.no_grad()
def scores_and_head(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """The model's scores on `x` and the output of its last affine module (in call order) on the same pass, None without one."""
    outputs: list[Tensor] = []
    affine = {n: m for n, m in leaf_modules(model).items() if isinstance(m, _AFFINE)}
    with forward_hooks(affine, lambda name, mod, inp, out: outputs.append(out) if isinstance(out, Tensor) else None):
        scores = model(x)
    return scores, (outputs[-1].detach() if outputs else None)


@CHECKS.register("init_health")
def init_health(ctx: CheckContext) -> CheckResult:
    """Per-layer activation std, dead ReLUs, saturated units, symmetric weights and the class scores on one forward pass."""
    model = ctx.copy_model(dropout=False)
    x, y = ctx.batch()
    layers = layer_stats(model, x)
    with torch.no_grad():
        scores, head = scores_and_head(model, x)
    acts = layer_rules.activation_layers(layers)
    findings = [
        *score_checks(model, scores, y, ctx.data.num_classes, head),
        *symmetry(model),
        *layer_rules.dead_units(layers),
        *layer_rules.saturated_units(layers),
        *layer_rules.activation_scale(layers, input_std=float(x.float().std())),
    ]
    stds = [s["act_std"] for s in acts.values()]
    plural = "s" if len(acts) != 1 else ""
    summary = f"{len(acts)} activation layer{plural}, std {min(stds):.3g} to {max(stds):.3g}" if stds else "no layers found"
    return CheckResult("init_health", summary, {"layers": layers}, findings)
