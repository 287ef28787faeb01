"""Rules over per-layer statistics: activation scale, dead ReLUs, saturation, gradient flow, update ratios.

Each function reads statistics in the run record's probe schema (see
`diagnose.record`) and returns findings; the preflight initialisation check
feeds them the statistics of one forward pass, the diagnosis rules the probes of
a training run. Layers arrive in the order the forward pass called them (module
order for an nn.Sequential), which serves as depth; params in module order.

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
# Recurrent layers (watch.recurrent): judged through time, not against the layers before them. A gated
# state's scale is set by its gates (a default-initialised LSTM's h has std 0.05-0.08 on unit-scale
# inputs, and trains), so it is no vanishing activation; an unbounded state that explodes does so from
# its first time step to its last.
RECURRENT_TYPES = frozenset({"RNN", "GRU", "LSTM"})

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
RULE_RECURRENT = (
    "docs/lectures.md §3: activation std should stay about constant across layers; a recurrence unrolled over T steps is "
    "T layers deep, so a state whose std grows by orders of magnitude from step to step explodes"
)
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
    """The nonlinearity outputs (what the lectures plot; a recurrent layer's states are one); all layers when the net has none."""
    # A record marks its nonlinearities ("activation": another library's, e.g. transformers' GELUActivation);
    # older records are read by type name.
    acts = {n: s for n, s in layers.items() if s.get("activation") or s.get("type") in ACTIVATION_TYPES or s.get("type") in RECURRENT_TYPES}
    return acts or dict(layers)


def is_bias(name: str) -> bool:
    """Whether a parameter name is a bias: `0.bias`, a recurrent layer's `rnn.bias_ih_l0`, attention's `in_proj_bias`."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf == "bias" or leaf.startswith("bias_") or leaf.endswith("_bias")


def _where(name: str) -> str:
    return "the inputs" if name == "inputs" else f"layer {name}"


def activation_scale(layers: LayerStats, where: dict[str, Any] | None = None, input_std: float | None = None) -> list[Finding]:
    """Activation std vanishing or exploding with depth, relative to the inputs' std when given, else to the first activation layer;
    and an unbounded recurrent state exploding through time, from its first time step to its last.

    The preflight knows the inputs, so a first layer that already shrinks or blows up the signal
    (weights 100x below He scale) counts, and a normalisation layer that restores the scale later
    does not turn the shrink into an "explosion" relative to that first layer. A recurrent layer
    starts a new comparison (`_segments`). Of the explosions, the largest is reported.
    """
    segments = _segments(layers, input_std)
    stds = {n: v for segment in segments for n, v in segment}
    vanish: tuple[float, str, str, float, float] | None = None  # (ratio, first name, its name, ref, std)
    explode: tuple[float, str, str, float, float] | None = None
    for segment in segments:
        if len(segment) < 2 or segment[0][1] <= 0:
            continue  # nothing to compare; or a flat first layer (zero output), which the symmetry or dead-unit checks explain
        (first_name, ref), rest = segment[0], segment[1:]
        small, large = min(rest, key=lambda a: a[1]), max(rest, key=lambda a: a[1])
        if vanish is None or small[1] / ref < vanish[0]:
            vanish = (small[1] / ref, first_name, small[0], ref, small[1])
        if explode is None or large[1] / ref > explode[0]:
            explode = (large[1] / ref, first_name, large[0], ref, large[1])
    found = []
    if vanish and (sev := _severity(1 / max(vanish[0], 1e-300), 1 / VANISH_WARN, 1 / VANISH_ERROR)):
        ratio, first_name, name, ref, std = vanish
        found.append(
            Finding(
                "activations_vanish",
                sev,
                f"activations vanish with depth: std {ref:.3g} in {_where(first_name)} falls to {std:.3g} in layer {name}",
                evidence={**(where or {}), "act_std": stds, "ratio": ratio},
                lecture_rule=RULE_INIT,
            )
        )
    through_time = _explodes_through_time(layers, where)
    sev = _severity(explode[0], EXPLODE_WARN, EXPLODE_ERROR) if explode else None
    if through_time and (not sev or through_time.evidence["ratio"] >= explode[0]):
        found.append(through_time)
    elif explode and sev:
        ratio, first_name, name, ref, std = explode
        found.append(
            Finding(
                "activations_explode",
                sev,
                f"activations explode with depth: std {ref:.3g} in {_where(first_name)} grows to {std:.3g} in layer {name}",
                evidence={**(where or {}), "act_std": stds, "ratio": ratio},
                lecture_rule=RULE_INIT,
            )
        )
    return found


def _segments(layers: LayerStats, input_std: float | None) -> list[list[tuple[str, float]]]:
    """The (name, std) points compared with depth, in call order: the inputs (when known) and the activation layers.

    Each recurrent layer ends a segment and starts the next, as its first point (the
    reference of the layers after it): its state's scale is set by its gates and its
    recurrence, not by the layers before it, so it is not compared with them. A default
    LSTM's h has std 0.05-0.08 on unit-scale inputs (digits rows, MNIST-1D), and trains, as
    does one initialised 100x smaller (78-80% against 86% on digits after 4 epochs); torch
    draws W_ih from U(±1/sqrt(hidden_size)) whatever the input size, so even a ReLU RNN's
    first step on one input feature (MNIST-1D) sits 15x below its input.
    An unbounded state's own explosion is judged through time (`_explodes_through_time`).
    """
    segments: list[list[tuple[str, float]]] = [[("inputs", float(input_std))] if _finite(input_std) and input_std > 0 else []]
    for name, s in activation_layers(layers).items():
        if s.get("type") in RECURRENT_TYPES:
            segments.append([(name, s["act_std"])] if _finite(s.get("act_std")) else [])
        elif _finite(s.get("act_std")):
            segments[-1].append((name, s["act_std"]))
    return segments


def _explodes_through_time(layers: LayerStats, where: dict[str, Any] | None) -> Finding | None:
    """The unbounded recurrent state (a ReLU RNN's) that grows most from its first time step to its last, if by 100x or more."""
    growth = {
        n: s["last_step_std"] / s["first_step_std"]
        for n, s in layers.items()
        # A state that overflowed to inf exploded too; NaN says nothing.
        if _finite(s.get("first_step_std")) and s["first_step_std"] > 0 and (_finite(s.get("last_step_std")) or s.get("last_step_std") == math.inf)
    }
    if not growth:
        return None
    name = max(growth, key=growth.get)
    sev = _severity(growth[name], EXPLODE_WARN, EXPLODE_ERROR)
    if not sev:
        return None
    s = layers[name]
    return Finding(
        "activations_explode",
        sev,
        f"the recurrent state of layer {name} explodes through time: std {s['first_step_std']:.3g} after its first step "
        f"grows to {s['last_step_std']:.3g} after its last ({s.get('time_steps', '?')} steps)",
        evidence={**(where or {}), "layer": name, "first_step_std": s["first_step_std"], "last_step_std": s["last_step_std"],
                  "time_steps": s.get("time_steps"), "ratio": growth[name]},
        lecture_rule=RULE_RECURRENT,
        fix=f"scale down the recurrent weights (weight_hh) of layer {name} so the state stops growing from step to step "
        "(torch's default draws them from U(±1/sqrt(hidden_size)): call its reset_parameters()), or use a GRU/LSTM, whose state is bounded",
    )


def dead_units(layers: LayerStats, where: dict[str, Any] | None = None) -> list[Finding]:
    """ReLU layers whose units are never active on the batch."""
    dead = {n: s["dead_fraction"] for n, s in layers.items() if _finite(s.get("dead_fraction"))}
    if not dead:
        return []
    worst = max(dead, key=dead.get)
    sev = _severity(dead[worst], DEAD_WARN, DEAD_ERROR)
    if not sev:
        return []
    # A Linear whose output feeds a functional ReLU (a transformer's feed-forward) carries the ReLU's units.
    place = f"in layer {worst}" if layers[worst].get("type") in ACTIVATION_TYPES | RECURRENT_TYPES else f"after layer {worst}"
    return [
        Finding(
            "dead_relu_at_init",
            sev,
            f"{dead[worst]:.0%} of the ReLU units {place} are dead (never active on the batch)",
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
    kind = layers[worst].get("type", "")
    recurrent = kind in RECURRENT_TYPES
    # A recurrent layer's share counts the sigmoid/tanh outputs inside its cell (watch.recurrent).
    what = f"{kind} gate and state values" if recurrent else f"{kind} outputs"
    return [
        Finding(
            "saturation_at_init",
            sev,
            f"{sat[worst]:.0%} of the {what} in layer {worst} are saturated (at ±1 / 0-1)",
            evidence={**(where or {}), "saturated_fraction": sat},
            lecture_rule=RULE_SATURATED,
            fix=(
                f"re-initialise layer {worst} at torch's default scale U(±1/sqrt(hidden_size)) (its reset_parameters()) or smaller, "
                "and standardise the inputs"
            )
            if recurrent
            else "",
        )
    ]


def _weights(params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Weight tensors only: biases and norm shifts start at 0, so their ratios say nothing."""
    return {n: p for n, p in params.items() if not is_bias(n)}


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
    # Not a recurrent layer's weight_hh_l0: at zero, units still differ by their input weights and biases.
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


def update_ratios(ratios: dict[str, float], where: dict[str, Any] | None = None, at_peak: dict[str, float] | None = None) -> list[Finding]:
    """Per-layer ||ΔW||/||W|| (typically a median over steps) far from the lectures' 1e-3.

    `at_peak`: the same ratios scaled to the run's peak learning rate (an update is proportional
    to the rate, for SGD and Adam alike), which the too-small side is judged on: a decay schedule
    shrinks the updates by design, and raising the rate is not the fix for that.
    """
    # A ratio of exactly 0 is a frozen layer (transfer learning), not a learning-rate problem.
    live = {n: r for n, r in ratios.items() if _finite(r) and r > 0}
    if not live:
        return []
    peak = {n: r for n, r in (at_peak or {}).items() if n in live and _finite(r) and r > 0} or live
    hi_name, lo_name = max(live, key=live.get), min(peak, key=peak.get)
    hi, lo = live[hi_name], peak[lo_name]
    evidence = {**(where or {}), "update_ratio": live, **({"update_ratio_at_peak_lr": peak} if peak is not live else {})}
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
                f"updates are too small: ||ΔW||/||W|| = {lo:.2g} in {lo_name}{' at the peak learning rate' if peak is not live else ''} (about 1e-3 is healthy)",
                evidence=evidence,
                lecture_rule=RULE_UPDATES,
                fix=f"raise the learning rate about {1e-3 / lo:.0f}x (run the learning-rate range test)",
            )
        ]
    return []
