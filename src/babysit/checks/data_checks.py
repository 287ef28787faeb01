"""Data checks: zero-centring, feature scales, preprocessing leaks, class balance, train/val copies (docs/lectures.md §2).

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
OFFSET_NOISE = 4.0  # standard errors of a mean
# Largest over smallest std of the non-constant channels or features.
SCALE_WARN, SCALE_ERROR = 10.0, 100.0
# A split whose mean is within max(FITTED_TOL, FITTED_NOISE / sqrt(n)) of 0 (in units of the feature's std)
# is the one the centring was fitted on: another split's mean sits ~1/sqrt(n) away by sampling noise, 100x
# more. float32 centring leaves ~1e-7, but ~1e-3 for features whose mean is 1e4 std from 0: such leaks
# go unnoticed.
FITTED_TOL, FITTED_NOISE = 1e-4, 1e-2
IMBALANCE_WARN = 3.0
# Fewer training samples per class than this: an accuracy on 10 samples has a standard error of up to
# 0.5 / sqrt(10) = 16 points, and a network with thousands of weights memorises so few (docs/lectures.md §7:
# overfitting is met with more data first). A random split of so few samples also leaves classes out or
# unbalanced by chance, and no check on them can be told from noise.
MIN_PER_CLASS = 10
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
    # A split's mean sits ~1/sqrt(n) std from the population's by sampling noise alone; an offset within
    # OFFSET_NOISE standard errors (room for the largest of many features) is no evidence of uncentred data.
    noise = OFFSET_NOISE / math.sqrt(max(1, len(ctx.data.train.x)))
    evidence["sampling_noise_in_std"] = noise
    if value < max(OFFSET_WARN, noise):
        return CheckResult("data_centring", summary, evidence)
    finding = Finding(
        "data_not_centred",
        "error" if value >= OFFSET_ERROR else "warning",
        f"inputs are not zero-centred: a {'channel' if ctx.data.train.x.ndim >= 3 else 'feature'} has mean {evidence['mean_of_worst']:.3g} = {value:.3g} std",
        evidence=evidence,
        lecture_rule=RULE_CENTRE,
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
    # A split sits within FITTED_NOISE of its sampling noise of 0 by chance about 1 time in 100 per
    # independent mean, so the noise allowance needs two or more means (features or channels) to be
    # evidence; a single channel's one mean is judged at float rounding level only.
    means = {level: (d.train.x[0].numel() if level == "per feature" else d.train.x.shape[1]) for level in errors}
    fitted = sorted(
        (e, level, name)
        for level, errs in errors.items()
        for name, e in errs.items()
        if e < (tolerance[name] if means[level] >= 2 else FITTED_TOL)
    )
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
    )
    return CheckResult("data_leak", f"centred on the {name} statistics", evidence, [finding])


def _too_few(counts: list[int]) -> list[Finding]:
    """A training split with fewer than `MIN_PER_CLASS` samples per class: a finding, else none."""
    n, c = sum(counts), len(counts)
    if n >= MIN_PER_CLASS * c:
        return []
    return [
        Finding(
            "too_few_samples",
            "warning",
            f"the training split has {n} samples for {c} classes ({n / c:.3g} per class, fewer than {MIN_PER_CLASS}): "
            "a network memorises so few, and no accuracy measured on them can be told from noise",
            evidence={"train_samples": n, "classes": c, "per_class": n / c, "needed": MIN_PER_CLASS * c},
            lecture_rule="docs/lectures.md §7: a big train/val gap is overfitting; more data comes first, then regularization",
            fix=f"train on at least {MIN_PER_CLASS * c} samples (check data.val_fraction and any subsetting), add data "
            "augmentation (data.augment), or reuse a pretrained network (docs/lectures.md §10)",
        )
    ]


@CHECKS.register("class_balance")
def class_balance(ctx: CheckContext) -> CheckResult:
    """Every class has training samples, enough of them and in roughly equal numbers."""
    counts = torch.bincount(ctx.data.train.y.cpu(), minlength=ctx.data.num_classes).tolist()
    evidence = {"train_counts": counts}
    few = _too_few(counts)
    missing = [i for i, c in enumerate(counts) if c == 0]
    if missing:
        names = [ctx.data.class_names[i] for i in missing]
        finding = Finding(
            "class_missing",
            "error",
            f"{len(missing)} class(es) have no training samples: {', '.join(names[:5])}",
            evidence=evidence,
            lecture_rule="docs/lectures.md §2 (beyond the notes): a class absent from training can never be predicted",
        )
        return CheckResult("class_balance", f"{len(missing)} class(es) missing from train", evidence, [finding, *few])
    ratio = max(counts) / min(counts)
    evidence["ratio"] = ratio
    summary = f"{min(counts)} to {max(counts)} samples per class ({ratio:.2g}x)"
    if ratio < IMBALANCE_WARN:
        return CheckResult("class_balance", summary, evidence, few)
    finding = Finding(
        "class_imbalance",
        "warning",
        f"classes are imbalanced: {min(counts)} to {max(counts)} training samples per class ({ratio:.2g}x)",
        evidence=evidence,
        lecture_rule="docs/lectures.md §2 (beyond the notes): with imbalanced classes, accuracy hides how rare classes fare",
    )
    return CheckResult("class_balance", summary, evidence, [finding, *few])


def _row_hashes(x: Tensor) -> list[int]:
    """One 64-bit hash of each sample's bytes: equal samples hash equal; distinct ones collide 1 time in 2^64."""
    flat = x.detach().cpu().reshape(len(x), -1).contiguous().numpy()
    return [hash(row.tobytes()) for row in flat]


@CHECKS.register("duplicates")
def duplicates(ctx: CheckContext) -> CheckResult:
    """No validation or test sample is an exact copy of a training sample."""
    d = ctx.data
    seen = set(_row_hashes(d.train.x))
    counts = {name: (sum(h in seen for h in _row_hashes(split.x)), len(split.x)) for name, split in (("validation", d.val), ("test", d.test)) if len(split.x)}
    evidence = {"copies_of_train": {name: k for name, (k, _) in counts.items()}, "samples": {name: n for name, (_, n) in counts.items()}}
    found = {name: (k, n) for name, (k, n) in counts.items() if k}
    if not found:
        return CheckResult("duplicates", "no validation or test sample copies a training sample", evidence)
    # Copies score as if trained on, so the held-out accuracy is optimistic by up to their share: a warning
    # once that share exceeds the standard error of an accuracy on the split (at most 0.5 / sqrt(n)).
    worst = max(found, key=lambda name: found[name][0] / found[name][1])
    k, n = found[worst]
    severity = "warning" if k / n > 0.5 / math.sqrt(n) else "info"
    finding = Finding(
        "duplicate_samples",
        severity,
        f"{k} of {n} {worst} samples ({k / n:.1%}) are exact copies of training samples: their accuracy is that of training, not of new data",
        evidence=evidence,
        lecture_rule="docs/lectures.md §2 (beyond the notes): held-out splits must hold samples the model has not trained on",
    )
    return CheckResult("duplicates", ", ".join(f"{k} of {n} {name} samples copy a training sample" for name, (k, n) in found.items()), evidence, [finding])

