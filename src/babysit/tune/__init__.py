"""Hyperparameter search the lectures' way, on Optuna: log-scale random search, coarse to fine, panda and caviar.

    import babysit as bs
    result = bs.search(   # the top-level function; this package holds its parts
        {"data": {"name": "mnist1d"}, "model": {"name": "mlp"}, "train": {"optimizer": "momentum"}},
        {"train.lr": bs.tune.log_uniform(1e-3, 1), "train.momentum": bs.tune.one_minus_log(0.5, 0.999)},
        bs.tune.TuneSettings(strategy="coarse_to_fine", trials=40, epochs=2),
    )
    result.export("best.toml")   # babysit train --config best.toml

Modules: space (ranges and their transformed coordinates), search (strategies and
coarse-to-fine planning), pruning, store (the Optuna study and the claim protocol),
runner (trials, panda and caviar), results, live (the table), report (the HTML page),
session (`search`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from babysit._lazy import lazy
from babysit.tune.pruning import PRUNERS
from babysit.tune.search import STRATEGIES, TuneSettings
from babysit.tune.space import Param, choice, int_uniform, log_uniform, one_minus_log, uniform

if TYPE_CHECKING:
    from babysit.tune.results import TuneResult

__all__ = [
    "PRUNERS",
    "STRATEGIES",
    "Param",
    "TuneResult",
    "TuneSettings",
    "choice",
    "int_uniform",
    "log_uniform",
    "one_minus_log",
    "uniform",
]


# The results module imports Optuna, which spaces and strategies do not need.
__getattr__, __dir__ = lazy(__name__, {"TuneResult": "babysit.tune.results"}, __all__)
