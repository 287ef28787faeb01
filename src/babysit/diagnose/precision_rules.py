"""Rules over a mixed-precision run: a float16 layer that overflowed, a gradient scaler that keeps skipping steps.

Both read what the probes and `watch.precision.ScalerWatch` recorded (docs/run-record.md):
a layer's `dtype` and `nonfinite_fraction`, and program.json's "precision" facts
({"iterations", "skipped", "skipped_at", "trailing_skipped", "scale_first",
"scale_last", "scale_lowest", "backoff_factor", "growth_interval"}). Gradients lost to
underflow need a float32 pass to compare with: the preflight's precision check names them.
"""

from __future__ import annotations

import math
from typing import Any

from babysit.diagnose.findings import Finding
from babysit.diagnose.record import RunView

FP16_MAX = 65504.0


def _finite(stats: dict[str, Any]) -> bool:
    """Whether a layer's output held only finite values (the half-precision count, else its moments)."""
    if "nonfinite_fraction" in stats:
        return stats["nonfinite_fraction"] == 0
    return all(isinstance(stats.get(k), (int, float)) and math.isfinite(stats[k]) for k in ("act_mean", "act_std"))


def _peak(stats: dict[str, Any]) -> float | None:
    """The largest |value| of a layer's histogram range (None when the range is not finite)."""
    edges = stats.get("hist_edges") or []
    ends = [abs(e) for e in edges[:1] + edges[-1:] if isinstance(e, (int, float)) and math.isfinite(e)]
    return max(ends) if len(ends) == 2 else None


def fp16_overflow(run: RunView) -> list[Finding]:
    """The first layer whose output is not finite is a float16 one: it overflowed float16's range (65504), not float32's."""
    for probe in run.probes:
        layers = list((probe.get("layers") or {}).items())
        first = next((i for i, (_, stats) in enumerate(layers) if not _finite(stats)), None)
        if first is None:
            continue
        name, stats = layers[first]
        if stats.get("dtype") != "float16":
            return []  # a float32 (or bf16) layer broke first: a divergence, not float16's range
        before = _peak(layers[first - 1][1]) if first > 0 else None
        fraction = stats.get("nonfinite_fraction", math.nan)
        step = probe.get("step")
        note = f"; the layer before it peaked at {before:.3g}" if before is not None else ""
        return [
            Finding(
                "fp16_overflow",
                "error",
                f"layer {name} ({stats.get('type', '?')}) overflowed float16 at step {step}: {fraction:.1%} of its outputs are inf/NaN{note}",
                evidence={"layer": name, "type": stats.get("type"), "step": step, "nonfinite_fraction": fraction, "previous_peak": before,
                          "skipped_step": bool(probe.get("skipped")), "float16_max": FP16_MAX},  # fmt: skip
                lecture_rule="float16 holds values up to 65504 (float32 and bfloat16 up to 3.4e38): a larger output becomes inf",
                first_seen=step,
            )
        ]
    return []


def scaler_skips_steps(run: RunView) -> list[Finding]:
    """A gradient scaler that skipped more steps than settling its scale explains, or whose scale fell below 1.

    From its first scale s0, halving (`backoff_factor`) to 1 takes log(s0)/log(1/backoff) skips
    (16 for the default 2^16): a scaler still skipping past that is not settling, it is
    meeting gradients that are not finite. Once settled it skips about one step per
    `growth_interval` (when it tries a doubled scale), which the allowance adds.
    """
    facts = (run.program or {}).get("precision")
    if not isinstance(facts, dict) or not facts.get("skipped"):
        return []
    first, last, backoff = facts.get("scale_first"), facts.get("scale_last"), facts.get("backoff_factor")
    if not all(isinstance(v, (int, float)) and v > 0 for v in (first, last, backoff)) or not backoff < 1:
        return []
    iterations, skipped = facts["iterations"], facts["skipped"]
    settling = max(0.0, math.log(first) / math.log(1 / backoff))
    allowance = settling + iterations / max(facts.get("growth_interval") or 1, 1) + 1
    below_one = last < 1
    if skipped <= allowance and not below_one:
        return []
    severe = below_one or skipped > iterations / 2 or facts.get("trailing_skipped", 0) > allowance
    at = facts.get("skipped_at") or []
    return [
        Finding(
            "scaler_skips_steps",
            "error" if severe else "warning",
            f"the gradient scaler skipped {skipped} of {iterations} steps (inf/NaN gradients); its scale fell from {first:g} to {last:g}"
            + (" (below 1: the gradients are not finite even unscaled)" if below_one else ""),
            evidence={**facts, "allowance": allowance},
            lecture_rule="a GradScaler skips a step whose scaled gradients hold inf/NaN and halves its scale; settling from 2^16 takes at most 16 skips",
            first_seen=at[0] if at else None,
        )
    ]
