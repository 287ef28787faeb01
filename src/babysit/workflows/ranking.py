"""How `auto` ranks its top configurations: on the validation split, or by k-fold cross-validation when it is too small.

An accuracy p measured on n samples is a binomial proportion: its standard error is
sqrt(p(1-p)/n) (`standard_error`, with Agresti and Coull's two-and-two adjustment so it
does not vanish at p = 1). Re-evaluation has to tell apart configurations whose
accuracies differ by about a percentage point (`RESOLUTION`), so a validation split
whose standard error at the search's best accuracy is larger than that cannot rank
them: at p = 0.96, 45 samples give 3.8 points, and about 360 are needed. Then the lectures' advice for small data
applies (docs/lectures.md: cross-validation when data is small): each configuration is
scored by stratified k-fold cross-validation over train+val (k = `FOLDS`), every
sample counted once in a validation fold, so the ranking rests on all of them.

When the split is large enough but the top configurations' search scores differ by
no more than the standard error of a difference of two accuracies on it (sqrt(2) x SE),
re-evaluating them on the same split cannot separate them: re-evaluation is skipped and
its CPU goes to the final run.

    rank = ranking(top_scores, data)        # Ranking("split", "kfold" or "none", n, se, ...)
    for fold in folds(data, rank.folds, seed): run(cfg, data=fold)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from babysit.data.datasets import Dataset, Split

RESOLUTION = 0.01  # the accuracy difference re-evaluation must resolve: one percentage point
FOLDS = 5  # k of the k-fold cross-validation (stratified)


def standard_error(p: float, n: int) -> float:
    """The standard error of an accuracy `p` measured on `n` samples.

    The binomial sqrt(p(1-p)/n) with Agresti and Coull's adjustment (1998): two successes and
    two failures added, p~ = (pn + 2)/(n + 4), SE = sqrt(p~(1-p~)/(n + 4)), so that 45 of 45
    right on a small split does not claim a standard error of 0.
    """
    if n <= 0:
        return math.inf
    q = (p * n + 2) / (n + 4)
    return math.sqrt(q * (1 - q) / (n + 4))


def samples_needed(p: float) -> int:
    """The fewest samples on which an accuracy near `p` has a standard error of at most `RESOLUTION`."""
    return next(n for n in range(1, 10**6) if standard_error(p, n) <= RESOLUTION)


@dataclass(frozen=True)
class Ranking:
    """How the re-evaluation ranks: 'split' (on the validation split), 'kfold' (`folds` folds of train+val) or 'none' (skipped)."""

    method: str
    n: int  # the validation split's samples
    accuracy: float  # the accuracy the standard error is taken at (the search's best)
    se: float  # the split's standard error at that accuracy
    spread: float  # the best minus the last of the top configurations' search scores
    configs: int  # how many configurations the search left to rank
    folds: int = 0
    pooled: int = 0  # samples k-fold ranks on (train + val)

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def describe(self) -> str:
        """One sentence for the report and the notes: the method, n, the standard error and the rule."""
        why = (f"the validation split's {self.n} samples give an accuracy of {self.accuracy:.3f} a standard error of "
               f"{self.se:.1%} (sqrt(p(1-p)/n), Agresti-Coull), ")  # fmt: skip
        if self.method == "kfold":
            return (why + f"more than the {RESOLUTION:.0%} re-evaluation must resolve ({samples_needed(self.accuracy)} samples needed): "
                    f"the top configurations are ranked by {self.folds}-fold stratified cross-validation over train+val ({self.pooled} samples)")  # fmt: skip
        if self.method == "none" and self.configs < 2:
            return why + "and the search completed one distinct configuration: nothing to rank, so re-evaluation is skipped and the final run gets its CPU"
        if self.method == "none":
            return (why + f"and the top configurations' search scores differ by {self.spread:.1%}, within the {math.sqrt(2) * self.se:.1%} "
                    "standard error of a difference (sqrt(2) x SE): re-evaluation on this split cannot separate them, so it is skipped "
                    "and the final run, trained on the search's best, gets its CPU")  # fmt: skip
        return why + f"at most the {RESOLUTION:.0%} re-evaluation must resolve: the top configurations are ranked on the validation split"


def ranking(scores: list[float], data: Dataset) -> Ranking:
    """How to rank configurations whose search scores (validation accuracies, best first) are `scores`.

    'kfold' when the validation split's standard error at the best score exceeds `RESOLUTION`
    (and every class fills the folds); else 'none' when the scores differ by no more than the
    standard error of a difference, sqrt(2) x SE (or there is one configuration: nothing to rank);
    else 'split'.
    """
    n, best = len(data.val.y), max(scores)
    se, spread = standard_error(best, n), best - min(scores)
    pooled = torch.cat([data.train.y, data.val.y])
    smallest = int(torch.unique(pooled, return_counts=True)[1].min()) if len(pooled) else 0
    k = min(FOLDS, smallest)  # stratified folds need each class in every fold
    if se > RESOLUTION and k >= 2 and len(scores) > 1:
        return Ranking("kfold", n, best, se, spread, len(scores), k, len(pooled))
    if len(scores) < 2 or spread <= math.sqrt(2) * se:
        return Ranking("none", n, best, se, spread, len(scores))
    return Ranking("split", n, best, se, spread, len(scores))


def folds(data: Dataset, k: int, seed: int) -> list[Dataset]:
    """`data` with train and val replaced by the k stratified folds of train+val (the test split is untouched)."""
    from sklearn.model_selection import StratifiedKFold

    x = torch.cat([data.train.x, data.val.x])
    y = torch.cat([data.train.y, data.val.y])
    split = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y.numpy())
    return [replace(data, train=Split(x[tr], y[tr]), val=Split(x[va], y[va])) for tr, va in split]
