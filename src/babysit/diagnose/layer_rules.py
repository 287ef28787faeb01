"""Rules over per-layer statistics: activation scale, dead ReLUs, saturation, gradient flow, update ratios.

Each function reads statistics in the run record's probe schema (see
`diagnose.record`) and returns findings; the preflight initialisation check
feeds them the statistics of one forward pass, the diagnosis rules the probes of
a training run. Layers arrive in module order, which serves as depth.

Thresholds are module constants, calibrated on healthy networks (He/Xavier
init, standardised data) so that they stay silent there: a warning that fires
on healthy models is noise.
"""

from __future__ import annotations

import math
from typing import Any

from babysit.diagnose.findings import Finding

LayerStats = dict[str, dict[str, Any]]

# Module types whose outputs are the activations the lectures plot per layer.
ACTIVATION_TYPES = frozenset({"ReLU", "LeakyReLU", "PReLU", "ELU", "GELU", "SiLU", "Tanh", "Sigmoid", "ReLU6", "Hardtanh", "Maxout"})

# Activation std relative to the first activation layer (docs/lectures.md §3, the 10-layer demo), symmetric
# in both directions. Real runs of 12 healthy configurations (MLPs and convnets; ReLU, ELU, tanh, sigmoid;
# 5 optimisers; 2 seeds; 15 epochs; every probe of the 'light' preset): 0.47 to 2.8. A 5-layer ReLU net at
# std 1.0 init grows 2,300x, the 10-layer tanh net at 0.01 init shrinks 1e-9x.
VANISH_WARN, VANISH_ERROR = 1e-1, 1e-3
EXPLODE_WARN, EXPLODE_ERROR = 1e2, 1e3
# Fraction of units never active on the batch (§1: 10-20% is common and tolerable). The healthy real
# runs above: at most 6% at any probe; ReLU bias -5: 82-100%.
DEAD_WARN, DEAD_ERROR = 0.4, 0.8
# Fraction of tanh/sigmoid outputs in the flat tails (|tanh| > 0.99, sigmoid < 0.01 or > 0.99). The
# healthy real runs: at most 3%; tanh at std 1.0 init: 70-80%.
SATURATED_WARN, SATURATED_ERROR = 0.2, 0.5
# Relative gradient (grad_norm / weight_norm) of the last weight over the first one. The healthy real
# runs: 0.35 to 43 (the top is a sigmoid MLP, the lectures' "never sigmoid"); the 10-layer tanh net at
# 0.01 init: ~6e6.
GRAD_RATIO_WARN, GRAD_RATIO_ERROR = 1e2, 1e4
# ||dW|| / ||W|| per step should be about 1e-3 (§7). Per-layer medians over the later half of the probes
# of healthy real runs (the calibration set, plus Adam up to 1e-2 and SGD up to 1.0 on digits and
# MNIST-1D): 2.8e-4 to 2.3e-2 (SGD 0.1 on a convnet); lr = 1e-7 gives ~5e-7, Adam at lr = 0.1 (which
# diverges) ~0.4, SGD at lr = 3 ~1.
UPDATE_LOW_ERROR, UPDATE_LOW_WARN, UPDATE_HIGH_WARN, UPDATE_HIGH_ERROR = 1e-6, 1e-5, 3e-2, 3e-1

RULE_INIT = "docs/lectures.md §3: activation std should stay about constant across layers (Xavier for tanh, He for ReLU)"
RULE_DEAD = "docs/lectures.md §1: a ReLU that is never active gets no gradient; 10-20% dead is common and tolerable"
RULE_SATURATED = "docs/lectures.md §1/§3: saturated tanh/sigmoid units have dσ/dx≈0 and kill the gradient"
RULE_GRADIENTS = "docs/lectures.md §3: weight gradients are upstream gradient × input, so they shrink or grow with the activations"
RULE_SYMMETRY = "docs/lectures.md §3: with all-zero weights every neuron computes the same output and gets the same gradient"
RULE_UPDATES = "docs/lectures.md §7: ||ΔW||/||W|| per layer should be about 1e-3; higher -> lower the LR, lower -> raise it"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _severity(value: float, warn: float, error: float) -> str | None:
    """'error' / 'warning' / None for a value that is bad when large."""
    if value >= error:
        return "error"
    return "warning" if value >= warn else None


def activation_layers(layers: LayerStats) -> LayerStats:
    """The nonlinearity outputs (what the lectures plot); all layers when the net has none."""
    acts = {n: s for n, s in layers.items() if s.get("type") in ACTIVATION_TYPES}
    return acts or dict(layers)


def _where(name: str) -> str:
    return "the inputs" if name == "inputs" else f"layer {name}"


def activation_scale(layers: LayerStats, where: dict[str, Any] | None = None, input_std: float | None = None) -> list[Finding]:
    """Activation std vanishing or exploding with depth, relative to the inputs' std when given, else to the first activation layer.

    The preflight knows the inputs, so a first layer that already shrinks or blows up the signal
    (weights 100x below He scale) counts, and a normalisation layer that restores the scale later
    does not turn the shrink into an "explosion" relative to that first layer.
    """
    acts = [(n, s["act_std"]) for n, s in activation_layers(layers).items() if _finite(s.get("act_std"))]
    if input_std is not None and _finite(input_std) and input_std > 0 and acts:
        acts = [("inputs", float(input_std)), *acts]
    if len(acts) < 2:
        return []
    first_name, ref = acts[0]
    stds = {n: v for n, v in acts}
    if ref <= 0:
        # The first layer is already flat (zero output); the symmetry or dead-unit checks explain why.
        return []
    smallest = min(acts[1:], key=lambda a: a[1])
    largest = max(acts[1:], key=lambda a: a[1])
    found = []
    sev = _severity(ref / max(smallest[1], 1e-300), 1 / VANISH_WARN, 1 / VANISH_ERROR)
    if sev:
        found.append(
            Finding(
                "activations_vanish",
                sev,
                f"activations vanish with depth: std {ref:.3g} in {_where(first_name)} falls to {smallest[1]:.3g} in layer {smallest[0]}",
                evidence={**(where or {}), "act_std": stds, "ratio": smallest[1] / ref},
                lecture_rule=RULE_INIT,
            )
        )
    sev = _severity(largest[1] / ref, EXPLODE_WARN, EXPLODE_ERROR)
    if sev:
        found.append(
            Finding(
                "activations_explode",
                sev,
                f"activations explode with depth: std {ref:.3g} in {_where(first_name)} grows to {largest[1]:.3g} in layer {largest[0]}",
                evidence={**(where or {}), "act_std": stds, "ratio": largest[1] / ref},
                lecture_rule=RULE_INIT,
            )
        )
    return found


def dead_units(layers: LayerStats, where: dict[str, Any] | None = None) -> list[Finding]:
    """ReLU layers whose units are never active on the batch."""
    dead = {n: s["dead_fraction"] for n, s in layers.items() if _finite(s.get("dead_fraction"))}
    if not dead:
        return []
    worst = max(dead, key=dead.get)
    sev = _severity(dead[worst], DEAD_WARN, DEAD_ERROR)
    if not sev:
        return []
    return [
        Finding(
            "dead_relu_at_init",
            sev,
            f"{dead[worst]:.0%} of the ReLU units in layer {worst} are dead (never active on the batch)",
            evidence={**(where or {}), "dead_fraction": dead},
            lecture_rule=RULE_DEAD,
        )
    ]


def saturated_units(layers: LayerStats, where: dict[str, Any] | None = None) -> list[Finding]:
    """Tanh/sigmoid layers with many outputs in their flat tails."""
    sat = {n: s["saturated_fraction"] for n, s in layers.items() if _finite(s.get("saturated_fraction"))}
    if not sat:
        return []
    worst = max(sat, key=sat.get)
    sev = _severity(sat[worst], SATURATED_WARN, SATURATED_ERROR)
    if not sev:
        return []
    return [
        Finding(
            "saturation_at_init",
            sev,
            f"{sat[worst]:.0%} of the {layers[worst].get('type', '')} outputs in layer {worst} are saturated (at ±1 / 0-1)",
            evidence={**(where or {}), "saturated_fraction": sat},
            lecture_rule=RULE_SATURATED,
        )
    ]


def _weights(params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Weight tensors only: biases and norm shifts start at 0, so their ratios say nothing."""
    return {n: p for n, p in params.items() if not n.endswith("bias")}


def gradient_flow(params: dict[str, dict[str, Any]], where: dict[str, Any] | None = None) -> list[Finding]:
    """Relative gradients (grad_norm / weight_norm) shrinking or growing from the last layer to the first."""
    rel = {
        n: p["grad_norm"] / p["weight_norm"]
        for n, p in _weights(params).items()
        if _finite(p.get("grad_norm")) and _finite(p.get("weight_norm")) and p["weight_norm"] > 0
    }
    if len(rel) < 2:
        return []
    names = list(rel)
    first, last = rel[names[0]], rel[names[-1]]
    evidence = {**(where or {}), "relative_grad": rel}
    if last > 0 and (sev := _severity(last / max(first, 1e-300), GRAD_RATIO_WARN, GRAD_RATIO_ERROR)):
        return [
            Finding(
                "gradients_vanish",
                sev,
                f"gradients vanish towards the input: relative gradient {first:.2g} in {names[0]} vs {last:.2g} in {names[-1]}",
                evidence=evidence,
                lecture_rule=RULE_GRADIENTS,
            )
        ]
    if first > 0 and (sev := _severity(first / max(last, 1e-300), GRAD_RATIO_WARN, GRAD_RATIO_ERROR)):
        return [
            Finding(
                "gradients_explode",
                sev,
                f"gradients explode towards the input: relative gradient {first:.2g} in {names[0]} vs {last:.2g} in {names[-1]}",
                evidence=evidence,
                lecture_rule=RULE_GRADIENTS,
            )
        ]
    return []


def zero_weights(params: dict[str, dict[str, Any]], where: dict[str, Any] | None = None) -> list[Finding]:
    """Hidden weight tensors whose norm is exactly 0: zero init, symmetry never broken (the output layer may start at 0)."""
    weights = [n for n in _weights(params) if n.endswith("weight")]
    zero = [n for n in weights[:-1] if params[n].get("weight_norm") == 0]
    if not zero:
        return []
    return [
        Finding(
            "init_symmetry",
            "error",
            f"the weights of {zero[0]} are all zero: every unit computes the same output, so symmetry is never broken",
            evidence={**(where or {}), "zero_weights": zero},
            lecture_rule=RULE_SYMMETRY,
        )
    ]


def update_ratios(ratios: dict[str, float], where: dict[str, Any] | None = None) -> list[Finding]:
    """Per-layer ||ΔW||/||W|| (typically a median over steps) far from the lectures' 1e-3."""
    # A ratio of exactly 0 is a frozen layer (transfer learning), not a learning-rate problem.
    live = {n: r for n, r in ratios.items() if _finite(r) and r > 0}
    if not live:
        return []
    hi_name, lo_name = max(live, key=live.get), min(live, key=live.get)
    hi, lo = live[hi_name], live[lo_name]
    evidence = {**(where or {}), "update_ratio": live}
    if sev := _severity(hi, UPDATE_HIGH_WARN, UPDATE_HIGH_ERROR):
        return [
            Finding(
                "update_ratio_high",
                sev,
                f"updates are too large: ||ΔW||/||W|| = {hi:.2g} in {hi_name} (about 1e-3 is healthy)",
                evidence=evidence,
                lecture_rule=RULE_UPDATES,
                fix=f"lower the learning rate about {hi / 1e-3:.0f}x, or add a decay schedule",
            )
        ]
    if sev := _severity(1 / lo, 1 / UPDATE_LOW_WARN, 1 / UPDATE_LOW_ERROR):
        return [
            Finding(
                "update_ratio_low",
                sev,
                f"updates are too small: ||ΔW||/||W|| = {lo:.2g} in {lo_name} (about 1e-3 is healthy)",
                evidence=evidence,
                lecture_rule=RULE_UPDATES,
                fix=f"raise the learning rate about {1e-3 / lo:.0f}x (run the learning-rate range test)",
            )
        ]
    return []
