"""Honest verdicts on a sample: pass, inconclusive or fail from the standard error of a difference.

A check that compares two accuracies (or losses) measured on a finite sample
must not call a difference real when the sample cannot tell. Every such check
states a threshold on the difference and asks where the sample puts it:

    diff - Z·SE >= threshold   -> "pass"          (clearly at least the threshold)
    diff + Z·SE <  threshold   -> "fail"          (clearly below it)
    otherwise                  -> "inconclusive"  (say how many samples would settle it)

with Z = 1.645 (one-sided 95%). For accuracies SE is the two-proportion standard
error sqrt(p1(1-p1)/n1 + p2(1-p2)/n2); for mean losses sqrt(s1²/n1 + s2²/n2).
An error-level finding is only ever raised on "fail".
"""

from __future__ import annotations

import math

Z = 1.645  # one-sided 95%
MAX_SAMPLES = 10**7  # "no realistic sample settles it": the difference sits on the threshold


def proportion_se(p1: float, n1: int, p2: float, n2: int) -> float:
    """Standard error of p1 - p2 for two accuracies measured on n1 and n2 samples (independent)."""
    return math.sqrt(max(p1 * (1 - p1), 0.0) / max(n1, 1) + max(p2 * (1 - p2), 0.0) / max(n2, 1))


def mean_se(std1: float, n1: int, std2: float, n2: int) -> float:
    """Standard error of the difference of two sample means (e.g. mean losses) with standard deviations std1, std2."""
    return math.sqrt(std1**2 / max(n1, 1) + std2**2 / max(n2, 1))


def verdict(diff: float, se: float, threshold: float, z: float = Z) -> str:
    """"pass" (diff clearly >= threshold), "fail" (clearly below) or "inconclusive"."""
    if diff - z * se >= threshold:
        return "pass"
    if diff + z * se < threshold:
        return "fail"
    return "inconclusive"


def samples_to_settle(diff: float, se: float, n: int, threshold: float, z: float = Z) -> int:
    """About how many samples (in place of `n`) would make `verdict` pass or fail, SE shrinking as 1/sqrt(n)."""
    distance = abs(diff - threshold)
    if se == 0:
        return n
    if distance == 0:
        return MAX_SAMPLES
    return min(MAX_SAMPLES, math.ceil(n * (z * se / distance) ** 2))
