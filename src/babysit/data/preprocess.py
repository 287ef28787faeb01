"""Preprocessing fitted on the training split only, then applied unchanged (LECTURE_DIGEST §2).

Contract: a preprocessor has `fit(x_train) -> self`, `transform(x) -> x`,
`state_dict()` / `load_state_dict()`; `transform` before `fit` is an error.
Statistics computed from validation or test data would leak them into training,
so `prepare` only ever fits on `data.train.x`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from babysit.data.datasets import Dataset
from babysit.errors import ConfigError
from babysit.registry import Registry

PREPROCESSORS: Registry = Registry("preprocessing")


class _Fitted:
    """Shared fit-state bookkeeping: refuse to transform before fitting."""

    _keys: tuple[str, ...] = ()

    def _check_fitted(self) -> None:
        if any(getattr(self, k, None) is None for k in self._keys):
            raise RuntimeError(f"{type(self).__name__}.transform called before fit(x_train); fit it on the training split first")

    def state_dict(self) -> dict[str, Tensor]:
        self._check_fitted()
        return {k: getattr(self, k).clone() for k in self._keys}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = [k for k in self._keys if k not in state]
        if missing:
            raise ConfigError(f"{type(self).__name__} state is missing {missing}")
        for k in self._keys:
            setattr(self, k, state[k].clone())


@PREPROCESSORS.register("none")
class Identity(_Fitted):
    """No preprocessing: inputs are used as they are."""

    def fit(self, x: Tensor) -> "Identity":
        return self

    def transform(self, x: Tensor) -> Tensor:
        return x

    def __repr__(self) -> str:
        return "Identity()"


@PREPROCESSORS.register("standardize")
class Standardize(_Fitted):
    """Zero-centre and divide by the std, per input feature, with training-split statistics."""

    _keys = ("mean", "std")

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps
        self.mean: Tensor | None = None
        self.std: Tensor | None = None

    def fit(self, x: Tensor) -> "Standardize":
        self.mean = x.mean(0)
        # A constant feature has std 0; leaving it unscaled is better than dividing by ~0.
        std = x.std(0, unbiased=False)
        self.std = torch.where(std > self.eps, std, torch.ones_like(std))
        return self

    def transform(self, x: Tensor) -> Tensor:
        self._check_fitted()
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def __repr__(self) -> str:
        fitted = "fitted" if self.mean is not None else "not fitted"
        return f"Standardize({fitted})"


def prepare(data: Dataset, preprocess: str = "standardize") -> Dataset:
    """Fit the named preprocessing on the training split and apply it to all three splits."""
    from dataclasses import replace

    pre = PREPROCESSORS.get(preprocess)().fit(data.train.x)
    return replace(data.map(pre.transform), preprocessor=pre)
