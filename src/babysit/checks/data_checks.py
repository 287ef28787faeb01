"""Data checks: zero-centring, feature scales, preprocessing leaks, class balance (docs/lectures.md §2).

Images (inputs with a channel axis and spatial axes) are judged per channel, as
the lectures do (VGG subtracts one mean per channel; pixels share a scale);
flat feature vectors are judged per feature.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from babysit.checks.base import CHECKS, CheckContext, CheckResult
from babysit.diagnose.findings import SEVERITIES, Finding

# |mean| / std of the worst channel or feature.
OFFSET_WARN, OFFSET_ERROR = 0.5, 10.0
# Largest over smallest std of the non-constant channels or features.
SCALE_WARN, SCALE_ERROR = 10.0, 100.0
# A split whose mean is within max(FITTED_TOL, FITTED_NOISE / sqrt(n)) of 0 (in units of the feature's std)
# is the one the centring was fitted on: another split's mean sits ~1/sqrt(n) away by sampling noise, 100x
# more. float32 centring leaves ~1e-7, but ~1e-3 for features whose mean is 1e4 std from 0: such leaks
# go unnoticed.
FITTED_TOL, FITTED_NOISE = 1e-4, 1e-2
IMBALANCE_WARN = 3.0
# Typical scale of the inputs (the median std of the channels or features) against the 1 that He/Xavier
# init assume: scores at init grow in proportion to it (x1000 inputs give ~1000x larger scores), so it is
# judged on the same decades as the scale ratio. Raw pixels in 0..255 (std ~60-80) warn, as the lectures would.
MAGNITUDE_WARN, MAGNITUDE_ERROR = 10.0, 100.0

RULE_CENTRE = "docs/lectures.md §2: zero-centre the data (subtract the mean; per channel for images)"
RULE_SCALE = "docs/lectures.md §2: normalise each dimension by its std (or min-max) so features share one scale"
RULE_LEAK = "docs/lectures.md §2: statistics are computed on the training set only, then applied to val and test"


def groups(x: Tensor) -> Tensor:
    """(N, G, M) view: G channels of images (N, C, *spatial), or G features of flat data (N, D)."""
    if x.ndim >= 3:
        return x.reshape(x.shape[0], x.shape[1], -1)
    return x.reshape(x.shape[0], -1, 1)


def group_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std per channel (images) or per feature (flat data), in float64."""
    g = groups(x.double())
    g = g.transpose(0, 1).reshape(g.shape[1], -1)
    return g.mean(1), g.std(1, unbiased=False)


@CHECKS.register("data_centring")
def data_centring(ctx: CheckContext) -> CheckResult:
    """Inputs are zero-centred (per channel for images, per feature otherwise)."""
    mean, std = group_stats(ctx.data.train.x)
    live = std > 0
    offset = (mean[live].abs() / std[live]) if live.any() else mean.abs()
    worst = int(offset.argmax()) if len(offset) else 0
    value = float(offset.max()) if len(offset) else 0.0
    evidence = {"max_offset_in_std": value, "mean_of_worst": float(mean[live][worst]) if live.any() else 0.0}
    summary = f"largest |mean|/std {value:.3g}"
    if value < OFFSET_WARN:
        return CheckResult("data_centring", summary, evidence)
    finding = Finding(
        "data_not_centred",
        "error" if value >= OFFSET_ERROR else "warning",
        f"inputs are not zero-centred: a {'channel' if ctx.data.train.x.ndim >= 3 else 'feature'} has mean {evidence['mean_of_worst']:.3g} = {value:.3g} std",
        evidence=evidence,
        lecture_rule=RULE_CENTRE,
        fix="preprocess with data.preprocess = 'standardize' (statistics fitted on the training split)",
    )
    return CheckResult("data_centring", summary, evidence, [finding])


def _magnitude(live: Tensor) -> Finding | None:
    """The typical input scale (median std) far from 1 in either direction: a finding, else None."""
    typical = float(live.median())
    off = max(typical, 1.0 / typical) if typical > 0 else math.inf
    if off < MAGNITUDE_WARN:
        return None
    return Finding(
        "data_scales",
        "error" if off >= MAGNITUDE_ERROR else "warning",
        f"inputs are on a scale of {typical:.3g} (median std), not about 1: He/Xavier init assume unit-scale inputs, "
        f"so the first layer's outputs and the class scores start {off:.3g}x too {'large' if typical > 1 else 'small'}",
        evidence={"median_std": typical},
        lecture_rule=RULE_SCALE,
        fix="standardise each feature with training-split statistics: data.preprocess = 'standardize'",
    )


@CHECKS.register("feature_scales")
def feature_scales(ctx: CheckContext) -> CheckResult:
    """Features (or image channels) share one scale, of about 1."""
    _, std = group_stats(ctx.data.train.x)
    live = std[std > 0]
    magnitude = _magnitude(live) if len(live) else None
    if len(live) < 2:
        what = "channel" if ctx.data.train.x.ndim >= 3 else "non-constant feature"
        evidence = {"groups": len(live), **(magnitude.evidence if magnitude else {})}
        return CheckResult("feature_scales", f"{len(live)} {what}: no scales to compare", evidence, [magnitude] if magnitude else [])
    ratio = float(live.max() / live.min())
    evidence = {"std_min": float(live.min()), "std_max": float(live.max()), "ratio": ratio, "median_std": float(live.median())}
    summary = f"std from {evidence['std_min']:.3g} to {evidence['std_max']:.3g} ({ratio:.3g}x)"
    if ratio < SCALE_WARN:
        return CheckResult("feature_scales", summary, evidence, [magnitude] if magnitude else [])
    finding = Finding(
        "data_scales",
        "error" if ratio >= SCALE_ERROR else "warning",
        f"features are on very different scales: std from {evidence['std_min']:.3g} to {evidence['std_max']:.3g} ({ratio:.3g}x)",
        evidence=evidence,
        lecture_rule=RULE_SCALE,
        fix="standardise each feature with training-split statistics: data.preprocess = 'standardize'",
    )
    if magnitude is not None and SEVERITIES.index(magnitude.severity) < SEVERITIES.index(finding.severity):
        finding = magnitude
    return CheckResult("feature_scales", summary, evidence, [finding])


def _centring_error(x: Tensor, std: Tensor, flat: bool) -> float:
    """RMS of a split's means in units of the pooled std, per feature (flat) or per channel."""
    mean = (x.double().reshape(len(x), -1) if flat else groups(x.double()).mean(2)).mean(0)
    live = std > 0
    return float(((mean[live] / std[live]) ** 2).mean().sqrt()) if live.any() else math.inf


@CHECKS.register("data_leak")
def data_leak(ctx: CheckContext) -> CheckResult:
    """Preprocessing statistics come from the training split, not from val/test."""
    d = ctx.data
    splits = {
        "train": d.train.x,
        "validation": d.val.x,
        "test": d.test.x,
        "train+validation": torch.cat([d.train.x, d.val.x]),
        "validation+test": torch.cat([d.val.x, d.test.x]),
        "all data": torch.cat([d.train.x, d.val.x, d.test.x]),
    }
    errors: dict[str, dict[str, float]] = {}
    for flat in (True, False):
        if not flat and d.train.x.ndim < 3:
            continue
        pooled = splits["all data"].double()
        std = pooled.reshape(len(pooled), -1).std(0) if flat else group_stats(pooled)[1]
        level = "per feature" if flat else "per channel"
        errors[level] = {name: _centring_error(x, std, flat) for name, x in splits.items()}
    tolerance = {name: max(FITTED_TOL, FITTED_NOISE / math.sqrt(len(x))) for name, x in splits.items()}
    # The split centred best (a split can sit near 0 by chance, but not at float rounding level).
    fitted = sorted((e, level, name) for level, errs in errors.items() for name, e in errs.items() if e < tolerance[name])
    evidence = {"mean_in_std_units": errors, "fitted_on": [f"{n} ({lvl})" for _, lvl, n in fitted]}
    if not fitted:
        return CheckResult("data_leak", "no split is exactly centred: no mean-based preprocessing to check", evidence)
    _, level, name = fitted[0]
    if name == "train":
        return CheckResult("data_leak", "centring statistics match the training split", evidence)
    finding = Finding(
        "data_leak",
        "warning" if name == "train+validation" else "error",
        f"preprocessing leaks: the inputs are centred on the {name} statistics ({level}), not the training split's",
        evidence=evidence,
        lecture_rule=RULE_LEAK,
        fix="fit the preprocessing on the training split only (babysit.prepare does) and apply it unchanged to val and test",
    )
    return CheckResult("data_leak", f"centred on the {name} statistics", evidence, [finding])


@CHECKS.register("class_balance")
def class_balance(ctx: CheckContext) -> CheckResult:
    """Every class has training samples, in roughly equal numbers."""
    counts = torch.bincount(ctx.data.train.y.cpu(), minlength=ctx.data.num_classes).tolist()
    evidence = {"train_counts": counts}
    missing = [i for i, c in enumerate(counts) if c == 0]
    if missing:
        names = [ctx.data.class_names[i] for i in missing]
        finding = Finding(
            "class_missing",
            "error",
            f"{len(missing)} class(es) have no training samples: {', '.join(names[:5])}",
            evidence=evidence,
            lecture_rule="docs/lectures.md §2 (beyond the notes): a class absent from training can never be predicted",
            fix="re-split the data so every class appears in training (stratify the split), or drop the empty classes",
        )
        return CheckResult("class_balance", f"{len(missing)} class(es) missing from train", evidence, [finding])
    ratio = max(counts) / min(counts)
    evidence["ratio"] = ratio
    summary = f"{min(counts)} to {max(counts)} samples per class ({ratio:.2g}x)"
    if ratio < IMBALANCE_WARN:
        return CheckResult("class_balance", summary, evidence)
    finding = Finding(
        "class_imbalance",
        "warning",
        f"classes are imbalanced: {min(counts)} to {max(counts)} training samples per class ({ratio:.2g}x)",
        evidence=evidence,
        lecture_rule="docs/lectures.md §2 (beyond the notes): with imbalanced classes, accuracy hides how rare classes fare",
        fix="resample or weight the loss by inverse class frequency, and report per-class accuracy",
    )
    return CheckResult("class_balance", summary, evidence, [finding])
