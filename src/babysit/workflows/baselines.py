"""The baselines a user would try first, beside what `auto` delivers: is the network worth it?

On flat features (a table: one vector per sample) the first model anyone should
try is a linear classifier on standardised inputs: scikit-learn's
`StandardScaler` + `LogisticRegression` (L2, C=1, lbfgs) fits a few hundred rows
in milliseconds and is often hard to beat (on scikit-learn's breast-cancer table
it reaches about 98% test accuracy). `auto` puts its score beside the network's
in the report and the JSON line, so a user sees at once whether the network was
worth its budget (docs/lectures.md: compare against a simple baseline).

    rows = baselines(data)   # [] for images and signals, one Baseline for a table
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

from babysit.data.datasets import Dataset

LOGISTIC_MAX_ITER = 1000  # lbfgs iterations; a standardised table converges in far fewer


@dataclass(frozen=True)
class Baseline:
    """One baseline's accuracies on the data's validation and test splits, and the CPU seconds it took."""

    name: str
    val_accuracy: float
    test_accuracy: float
    cpu_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_tabular(data: Dataset) -> bool:
    """Flat features: each sample one vector (a table's row), not an image or a signal with channels."""
    return len(data.input_shape) == 1


def logistic_regression(data: Dataset) -> Baseline:
    """A standardised multinomial logistic regression fitted on the training split (scaler fitted there too)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.process_time()
    flat = {name: (split.x.reshape(len(split.x), -1).numpy(), split.y.numpy()) for name, split in (("train", data.train), ("val", data.val), ("test", data.test))}
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=LOGISTIC_MAX_ITER))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the score is what it is; an unconverged fit only understates it
        model.fit(*flat["train"])
    val, test = (float(model.score(*flat[s])) if len(flat[s][1]) else float("nan") for s in ("val", "test"))
    return Baseline("logistic regression (standardised)", val, test, time.process_time() - t0)


def baselines(data: Dataset) -> list[Baseline]:
    """The baselines that fit `data`: a standardised logistic regression on flat features; none otherwise."""
    return [logistic_regression(data)] if is_tabular(data) else []
