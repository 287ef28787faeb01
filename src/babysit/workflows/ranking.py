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
    k = fold_count(data)
    if se > RESOLUTION and k >= 2 and len(scores) > 1:
        return Ranking("kfold", n, best, se, spread, len(scores), k, len(data.train.y) + len(data.val.y))
    if len(scores) < 2 or spread <= math.sqrt(2) * se:
        return Ranking("none", n, best, se, spread, len(scores))
    return Ranking("split", n, best, se, spread, len(scores))


def fold_count(data: Dataset) -> int:
    """k of the stratified k-fold over train+val: `FOLDS`, or fewer when a class has fewer samples (each fold needs every class)."""
    pooled = torch.cat([data.train.y, data.val.y])
    smallest = int(torch.unique(pooled, return_counts=True)[1].min()) if len(pooled) else 0
    return min(FOLDS, smallest)


def folds(data: Dataset, k: int, seed: int) -> list[Dataset]:
    """`data` with train and val replaced by the k stratified folds of train+val (the test split is untouched).

    Fold runs rank configurations on their validation fold, so they test on one view (no `test_views`).
    """
    from sklearn.model_selection import StratifiedKFold

    x = torch.cat([data.train.x, data.val.x])
    y = torch.cat([data.train.y, data.val.y])
    split = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y.numpy())
    return [replace(data, train=Split(x[tr], y[tr]), val=Split(x[va], y[va]), test_views=()) for tr, va in split]


@dataclass(frozen=True)
class Incumbent:
    """Whether a search's first stage beat the configuration it started from (its first trial: the profile's or the user's).

    `holds`: no other trial's score passed the incumbent's by more than `margin`, the gap the
    best of `trials` equally good configurations would show by chance on `n` validation samples,
    nor by more than `rising`, what the incumbent itself gained over the second half of its trial:
    a lead smaller than that is one a faster-learning configuration shows at this length and a
    run many times longer closes (the short-horizon bias of ranking by short trials; Wu et al.
    2018, "Understanding Short-Horizon Bias in Stochastic Meta-Optimization").
    """

    holds: bool
    score: float | None  # the incumbent's score in the first stage (None: it did not complete)
    best: float | None  # the best other trial's
    margin: float
    trials: int  # the other trials that completed
    n: int  # the samples the scores were measured on (the validation split, or train+val over `folds` folds)
    folds: int = 0  # > 0: the incumbent and the best other trial were re-scored by k-fold cross-validation
    rising: float = 0.0  # the incumbent's validation-accuracy gain over the second half of its trial (`still_rising`)

    @property
    def lead(self) -> float | None:
        """How far the best other trial scored above the incumbent (None when either did not complete)."""
        return None if self.best is None or self.score is None else self.best - self.score

    @property
    def too_short(self) -> bool:
        """Whether the trials were too short to judge: the best's lead passed chance but not the incumbent's own late gain."""
        return self.lead is not None and self.margin < self.lead <= self.rising

    def to_dict(self) -> dict[str, Any]:
        return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}, "too_short": self.too_short}

    def describe(self) -> str:
        """One sentence for the report and the notes."""
        if self.score is None:
            return "the configuration the search started from did not complete its first-stage trial; the search goes on"
        if self.best is None:
            return "no other first-stage trial completed; the configuration the search started from is kept"
        gap = f"the best of {self.trials} other first-stage trials scored {self.best:.4f} against {self.score:.4f} for the configuration the search started from"
        samples = f"{self.n} samples" if self.folds else f"{self.n} validation samples"
        if self.folds:
            gap = (f"the validation split was too small to tell, so the starting configuration and the best first-stage trial were re-scored by "
                   f"{self.folds}-fold cross-validation over {self.n} samples: {self.best:.4f} against {self.score:.4f}")  # fmt: skip
        if self.too_short:
            return (gap + f", more than the {self.margin:.1%} chance explains on {samples} but not more than the "
                    f"{self.rising:.1%} the starting configuration itself gained over the second half of its trial: at this length a "
                    "faster-learning configuration leads by that much and a longer run closes the gap, so the search stops, and the "
                    "final run trains the starting configuration with the rest of the budget")  # fmt: skip
        if self.folds:
            chance = f"within the {self.margin:.1%} chance explains on {samples}" if self.holds else f"more than the {self.margin:.1%} chance explains"
            then = ": the search stops, and the final run trains the starting configuration with the rest of the budget" if self.holds else ": the search goes on"
            return f"{gap}, {chance}{then}"
        if self.holds:
            return (gap + f", within the {self.margin:.1%} that the best of {self.trials} equally good configurations reaches by chance on "
                    f"{self.n} validation samples: the search stops, and the final run trains the starting configuration with the rest of the budget")  # fmt: skip
        return gap + f", more than the {self.margin:.1%} that chance explains on {self.n} validation samples: the search goes on"


def chance_margin(p: float, n: int, others: int) -> float:
    """How far the best of `others` configurations as good as one scoring `p` on `n` samples lands above it by chance.

    Each difference of two accuracies has the standard error sqrt(2) x SE; the largest of m such
    differences sits below sqrt(2 ln m) of them (the expected maximum of m standard normals), so
    a gap past that margin is evidence, not the luck of having tried m configurations.
    """
    z = math.sqrt(2 * math.log(others)) if others > 1 else 1.0
    return z * math.sqrt(2) * standard_error(p, n)


def still_rising(curve: list[float], chance: float) -> float:
    """What a run's validation accuracy gained over the second half of its epochs (`curve`, one value per epoch), at least 0.

    A one-epoch run's second half is its only epoch, measured from `chance` (an untrained model's
    accuracy, 1 / classes). Large next to a lead between two trials, it says the trials stopped
    while still learning fast: their ranking reflects how fast each learns, not where it ends.
    """
    if not curve:
        return 0.0
    before = curve[len(curve) // 2 - 1] if len(curve) >= 2 else chance
    return max(0.0, curve[-1] - before)


def incumbent_test(incumbent: float | None, others: list[float], n: int, rising: float = 0.0) -> Incumbent:
    """Did any of `others` (first-stage scores) beat `incumbent` (the starting configuration's) beyond chance on `n` samples,
    and beyond `rising` (the incumbent's own gain over its trial's second half, `still_rising`)?

    A search that cannot beat where it started is not worth its second stage and re-evaluation:
    the final run gets that CPU instead (longer training is what the starting configuration lacks).
    On a small split the margin is wide, so the start is kept unless a trial beat it by far: a gain
    the split cannot show is not worth the final run's CPU (a search that goes on is then ranked by
    cross-validation, `ranking`).
    """
    if incumbent is None:
        return Incumbent(False, None, max(others, default=None), 0.0, len(others), n)
    if not others:
        return Incumbent(True, incumbent, None, 0.0, 0, n, rising=rising)
    margin = chance_margin(incumbent, n, len(others))
    best = max(others)
    return Incumbent(best - incumbent <= max(margin, rising), incumbent, best, margin, len(others), n, rising=rising)


def worth_folds(verdict: Incumbent, pooled: int) -> bool:
    """Whether cross-validation over `pooled` samples could overturn a verdict the validation split gave.

    Only a start that held on a split too small to resolve `RESOLUTION`, against a best trial ahead
    of it by more than chance explains on `pooled` samples: k-fold could then show the gain (the
    lectures' advice for small data); otherwise it could not change the decision and is not run.
    A start kept because the trials were too short (`Incumbent.too_short`) is not re-scored: more
    samples do not make a trial longer.
    """
    lead = verdict.lead
    if not verdict.holds or lead is None or lead <= verdict.rising or standard_error(verdict.score, verdict.n) <= RESOLUTION:
        return False
    return lead > chance_margin(verdict.score, pooled, 1)
