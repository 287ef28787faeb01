"""Preprocessing fitted on the training split only, then applied unchanged (docs/lectures.md §2).

Contract: a preprocessor has `fit(x_train) -> self`, `transform(x) -> x`,
`state_dict()` / `load_state_dict()`; `transform` before `fit` is an error.
Statistics computed from validation or test data would leak them into training,
so `prepare` only ever fits on `data.train.x`. Inputs are (N, *shape); "per
feature" means per entry of `shape` (for images, the mean *image*), "per
channel" means per entry of shape[0], pooled over the spatial positions.

`state_dict()` holds the registry name, the options and the fitted tensors
(plain types only), so `torch.save` it next to a model's weights and rebuild the
preprocessor with `load_preprocessor(torch.load(f, weights_only=True))`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from babysit.data.datasets import Dataset
from babysit.errors import ConfigError, DataError
from babysit.registry import Registry, accepted_options, check_options

PREPROCESSORS: Registry = Registry("preprocessing")


class _Fitted:
    """Shared fit-state bookkeeping: refuse to transform before fitting; save and restore the statistics."""

    kind: str = ""
    _keys: tuple[str, ...] = ()

    def options(self) -> dict[str, Any]:
        """The constructor options that rebuild this preprocessor (none by default)."""
        return {}

    def _check_fitted(self) -> None:
        if any(getattr(self, k, None) is None for k in self._keys):
            raise RuntimeError(f"{type(self).__name__}.transform called before fit(x_train); fit it on the training split first")

    def state_dict(self) -> dict[str, Any]:
        """{'kind', 'options', *fitted tensors}: everything `load_preprocessor` needs."""
        self._check_fitted()
        return {"kind": self.kind, "options": self.options(), **{k: getattr(self, k).clone() for k in self._keys}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [k for k in self._keys if k not in state]
        if missing:
            raise ConfigError(f"{type(self).__name__} state is missing {missing}")
        for k in self._keys:
            setattr(self, k, state[k].clone())

    def _flat(self, x: Tensor, features: int) -> Tensor:
        """(N, *shape) -> (N, D), refusing inputs whose D differs from the fitted one."""
        if x[0].numel() != features:
            raise DataError(
                f"{type(self).__name__} was fitted on inputs of {features} values per sample, "
                f"got shape {tuple(x.shape[1:])}; transform data shaped like the training split"
            )
        return x.reshape(len(x), features)

    def __repr__(self) -> str:
        fitted = "fitted" if all(getattr(self, k, None) is not None for k in self._keys) else "not fitted"
        opts = ", ".join(f"{k}={v}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts + ', ' if opts else ''}{fitted})"


def load_preprocessor(state: dict[str, Any]) -> _Fitted:
    """Rebuild a fitted preprocessor from its `state_dict()` (e.g. loaded with weights_only=True)."""
    if "kind" not in state:
        raise ConfigError("preprocessing state has no 'kind'; save it with preprocessor.state_dict()")
    factory = PREPROCESSORS.get(state["kind"])
    pre = factory(**accepted_options(factory, dict(state.get("options", {}))))
    pre.load_state_dict(state)
    return pre


@PREPROCESSORS.register("none")
class Identity(_Fitted):
    """No preprocessing: inputs are used as they are."""

    kind = "none"

    def fit(self, x: Tensor) -> "Identity":
        return self

    def transform(self, x: Tensor) -> Tensor:
        return x


class Center(_Fitted):
    """Subtract the training mean, per feature (the "mean image", AlexNet) or per channel (VGG).

    Args:
        per_channel: one mean per channel (dim 1 of (N, C, ...)), pooled over
            the spatial positions; for flat (N, D) inputs a channel is a feature.
    """

    _keys = ("mean",)

    def __init__(self, per_channel: bool = False) -> None:
        self.per_channel = per_channel
        self.kind = "channel_mean" if per_channel else "mean"
        self.mean: Tensor | None = None

    def fit(self, x: Tensor) -> "Center":
        if self.per_channel and x.ndim > 2:
            self.mean = x.mean(dim=[0, *range(2, x.ndim)], keepdim=True)[0]  # (C, 1, ...): broadcasts per channel
        else:
            self.mean = x.mean(0)
        return self

    def transform(self, x: Tensor) -> Tensor:
        self._check_fitted()
        return x - self.mean.to(x.device, x.dtype)


@PREPROCESSORS.register("mean")
def mean() -> Center:
    """Subtract the per-feature training mean ("mean image"): zero-centred inputs."""
    return Center(per_channel=False)


@PREPROCESSORS.register("channel_mean")
def channel_mean() -> Center:
    """Subtract one training mean per channel (VGG-style), pooled over positions."""
    return Center(per_channel=True)


class Standardize(_Fitted):
    """Zero-centre and divide by the std, per input feature, with training-split statistics."""

    kind = "standardize"
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


@PREPROCESSORS.register("minmax")
class MinMax(_Fitted):
    """Scale each feature linearly so the training split spans [-1, 1]."""

    kind = "minmax"
    _keys = ("mid", "half_range")

    def __init__(self) -> None:
        self.mid: Tensor | None = None
        self.half_range: Tensor | None = None

    def fit(self, x: Tensor) -> "MinMax":
        lo, hi = x.amin(0), x.amax(0)
        self.mid = (hi + lo) / 2
        half = (hi - lo) / 2
        # A constant feature maps to 0 instead of dividing by zero.
        self.half_range = torch.where(half > 0, half, torch.ones_like(half))
        return self

    def transform(self, x: Tensor) -> Tensor:
        self._check_fitted()
        return (x - self.mid.to(x.device, x.dtype)) / self.half_range.to(x.device, x.dtype)


@PREPROCESSORS.register("standardize")
def standardize() -> Standardize:
    """Zero-centre and divide by the std, per input feature, with training-split statistics."""
    return Standardize()


def _eig_descending(xc: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (D,) and eigenvectors (D, D) of the covariance Xc^T Xc / N, largest first, in float64."""
    xc = xc.to(torch.float64)
    cov = xc.T @ xc / len(xc)
    values, vectors = torch.linalg.eigh(cov)
    return values.flip(0).clamp_min(0.0), vectors.flip(1)


def _num_components(components: int | float | None, values: Tensor) -> int:
    """k from an int (keep k), a float in (0, 1) (keep that fraction of the variance) or None (keep all)."""
    d = len(values)
    if components is None:
        return d
    if isinstance(components, int):
        if not 1 <= components <= d:
            raise ConfigError(f"PCA can keep 1..{d} components of these {d}-value inputs, got {components}")
        return components
    explained = values.cumsum(0) / values.sum().clamp_min(1e-300)
    return min(d, int((explained < components - 1e-12).sum()) + 1)


def _check_components(components: int | float | None) -> None:
    whole = isinstance(components, int) and not isinstance(components, bool) and components >= 1
    fraction = isinstance(components, float) and 0.0 < components < 1.0
    if components is None or whole or fraction:
        return
    raise ConfigError(
        f"data.pca_components must be a whole number of components >= 1 or a variance fraction in (0, 1), got {components!r}"
    )


class PCA(_Fitted):
    """Rotate centred inputs into the covariance eigenbasis and keep the top k directions; optionally whiten.

    x_rot = (x - mu) U_k, with U the eigenvectors of the training covariance,
    largest eigenvalue first. Whitening divides each kept coordinate by
    sqrt(lambda + eps), so the training covariance becomes ~ the identity;
    eps keeps near-zero-variance directions from exploding. Output: (N, k).
    ZCA whitening then rotates back, x_zca = x_white U^T: of all whitening
    transforms the closest to the inputs (Bell & Sejnowski 1997), so images still
    look like images; it keeps every component and the input shape.

    Args:
        components: k >= 1 (int) components, a fraction in (0, 1) of the variance to keep, or None for all.
        whiten: divide by sqrt(eigenvalue + eps).
        eps: the whitening epsilon (cs231n notes use 1e-5 for data of unit scale).
        zca: rotate the whitened data back to the input axes (needs whiten and all components).
    """

    _keys = ("mean", "basis", "scale")

    def __init__(self, components: int | float | None = None, whiten: bool = False, eps: float = 1e-5, zca: bool = False) -> None:
        _check_components(components)
        if not eps >= 0:
            raise ConfigError(f"data.whiten_eps must be >= 0, got {eps}")
        if zca and (not whiten or components is not None):
            raise ConfigError("ZCA whitening keeps every component and whitens them; use zca with whiten=True, components=None")
        self.components, self.whiten, self.eps, self.zca = components, whiten, eps, zca
        self.kind = "zca_whiten" if zca else "pca_whiten" if whiten else "pca"
        self.mean: Tensor | None = None
        self.basis: Tensor | None = None
        self.scale: Tensor | None = None

    def options(self) -> dict[str, Any]:
        return {"components": self.components, "eps": self.eps}

    def fit(self, x: Tensor) -> "PCA":
        flat = x.reshape(len(x), -1).to(torch.float64)
        self.mean = flat.mean(0)
        values, vectors = _eig_descending(flat - self.mean)
        k = _num_components(self.components, values)
        self.basis = vectors[:, :k]
        self.scale = (values[:k] + self.eps).rsqrt() if self.whiten else torch.ones(k, dtype=torch.float64)
        return self

    def transform(self, x: Tensor) -> Tensor:
        self._check_fitted()
        flat = self._flat(x, len(self.mean))
        to = {"device": x.device, "dtype": x.dtype}
        basis = self.basis.to(**to)
        rotated = (flat - self.mean.to(**to)) @ basis * self.scale.to(**to)
        return (rotated @ basis.T).reshape(x.shape) if self.zca else rotated


@PREPROCESSORS.register("pca")
def pca(components: int | float | None = None) -> PCA:
    """Decorrelate: rotate into the covariance eigenbasis, keep k components or a variance fraction."""
    return PCA(components, whiten=False)


@PREPROCESSORS.register("pca_whiten")
def pca_whiten(components: int | float | None = None, eps: float = 1e-5) -> PCA:
    """PCA, then divide each component by sqrt(eigenvalue + eps): covariance becomes ~ identity."""
    return PCA(components, whiten=True, eps=eps)


@PREPROCESSORS.register("zca_whiten")
def zca_whiten(eps: float = 1e-5) -> PCA:
    """Whiten, then rotate back to the input axes: x_zca = (x - mu) U diag(1/sqrt(lambda + eps)) U^T."""
    return PCA(None, whiten=True, eps=eps, zca=True)


def prepare(data: Dataset, preprocess: str = "standardize", **options: Any) -> Dataset:
    """Fit the named preprocessing on the training split and apply it to all three splits.

    Args:
        data: the raw data set.
        preprocess: a name from `PREPROCESSORS`.
        **options: the entry's options (components, eps); one it does not take is a ConfigError.

    Example:
        >>> data = prepare(load_dataset("digits"), "pca_whiten", components=0.99, eps=1e-5)
    """
    factory = PREPROCESSORS.get(preprocess)
    pre = factory(**check_options(factory, options, f"preprocessing '{preprocess}'")).fit(data.train.x)
    return replace(data.map(pre.transform), preprocessor=pre)
