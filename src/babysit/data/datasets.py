"""Data sets with train / val / test splits, built in or read from local files.

Contract: a loader in `DATASETS` takes keyword options (at least `path`, which it
may refuse) and returns `RawData` with a fixed train/test split; `load_dataset`
validates it, carves the validation split from train by seed, and wraps it in a
`Dataset`. Every loader works offline. The built-in generated sets live here; the
loaders of a user's local files (cifar10, arrays) live in `data/readers.py`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from babysit.errors import ConfigError, DataError
from babysit.registry import Registry, check_options


@dataclass(frozen=True)
class Split:
    """Inputs `x` (N, *input_shape) float32 and labels `y` (N,) int64."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return f"Split(n={len(self)}, x={tuple(self.x.shape)})"


@dataclass(frozen=True)
class RawData:
    """What a loader returns: a train/test split before validation carving."""

    x_train: np.ndarray | Tensor
    y_train: np.ndarray | Tensor
    x_test: np.ndarray | Tensor
    y_test: np.ndarray | Tensor
    class_names: Sequence[str]
    # The caller's own validation split, used as it is instead of carving one from train.
    x_val: np.ndarray | Tensor | None = None
    y_val: np.ndarray | Tensor | None = None


@dataclass(frozen=True)
class Dataset:
    """A classification data set: three splits plus what a model needs to know about it."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    # Fitted preprocessing (train statistics only), kept so it can be saved with a model.
    preprocessor: object | None = field(default=None, repr=False)
    # Random batch transform `fit` applies to training batches only (see `data.augment`).
    augment: Callable[[Tensor], Tensor] | None = field(default=None, repr=False)
    # Fixed views of that augmentation whose predictions `fit` averages on the test split (`data.augment.fixed_views`).
    test_views: tuple[Callable[[Tensor], Tensor], ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, classes={self.num_classes}, input={self.input_shape}, "
            f"train={len(self.train)}, val={len(self.val)}, test={len(self.test)})"
        )

    @classmethod
    def from_arrays(
        cls,
        x,
        y,
        *,
        x_val=None,
        y_val=None,
        x_test=None,
        y_test=None,
        val_fraction: float = 0.1,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        name: str = "arrays",
    ) -> Dataset:
        """A data set from tensors or numpy arrays in memory, validated and split like `load_dataset`.

        Args:
            x, y: inputs (N, *input_shape) and integer labels (N,).
            x_val, y_val: your own validation split, used as it is (all of x, y then trains).
                Pass it when your preprocessing was fitted on (x, y): a validation split carved
                out of it would share its statistics, which the leak check rightly reports.
            x_test, y_test: a test split; None holds out a fixed 20% of (x, y), as the
                `arrays` reader does, independent of `seed`.
            val_fraction: share of the training samples held out for validation (without x_val).
            seed: seeds the validation carving.
            class_names: one name per class; None numbers them 0..max(y).

        Example:
            >>> data = Dataset.from_arrays(torch.randn(100, 4), torch.arange(100) % 3)
            >>> len(data.train), len(data.val), len(data.test), data.num_classes
            (72, 8, 20, 3)
        """
        from babysit.data.memory import raw_from_arrays

        raw = raw_from_arrays(x, y, x_test, y_test, class_names, name, x_val=x_val, y_val=y_val)
        return from_raw(name, raw, val_fraction=val_fraction, seed=seed)

    @classmethod
    def from_torch(
        cls,
        data,
        *,
        test=None,
        val_fraction: float = 0.1,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        name: str = "torch",
        progress: bool = True,
    ) -> Dataset:
        """A data set from a `torch.utils.data.Dataset` or `DataLoader` of (x, y) pairs, read into memory once.

        Args:
            data: the training samples; a map-style Dataset, or a DataLoader yielding (x, y) batches.
            test: the same for the test split; None holds out a fixed 20% of `data`.
            val_fraction, seed, class_names, name: as in `from_arrays`.
            progress: show a progress bar while reading.

        Raises DataError when the samples would not fit in the memory available.
        """
        from babysit.data.memory import materialise

        x, y = materialise(data, f"{name} train", progress=progress)
        x_test, y_test = materialise(test, f"{name} test", progress=progress) if test is not None else (None, None)
        return cls.from_arrays(
            x, y, x_test=x_test, y_test=y_test, val_fraction=val_fraction, seed=seed, class_names=class_names, name=name
        )

    def map(self, fn) -> Dataset:
        """A copy with `fn(x)` applied to the inputs of every split (labels unchanged; input_shape follows `fn`)."""
        train = Split(fn(self.train.x), self.train.y)
        return replace(
            self,
            train=train,
            val=Split(fn(self.val.x), self.val.y),
            test=Split(fn(self.test.x), self.test.y),
            input_shape=tuple(train.x.shape[1:]),
        )


DATASETS: Registry = Registry("data set")


def _refuse_path(name: str, path: str | None) -> None:
    if path is not None:
        raise ConfigError(f"data set '{name}' is built in and takes no data.path; remove it")


@DATASETS.register("mnist1d")
def mnist1d(path: str | None = None) -> RawData:
    """MNIST-1D, generated procedurally (Greydanus 2020): 4,000 train / 1,000 test, 10 classes, length 40."""
    _refuse_path("mnist1d", path)
    from mnist1d.data import get_dataset_args, make_dataset

    # The generator seeds numpy's global RNG; restore it so loading data has no side effect.
    state = np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    x_train = d["x"][:, None, :]  # (N, 1, 40): one channel, so conv1d applies directly
    x_test = d["x_test"][:, None, :]
    return RawData(x_train, d["y"], x_test, d["y_test"], [str(i) for i in range(10)])


@DATASETS.register("digits")
def digits(path: str | None = None) -> RawData:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes) as 1x8x8 images; 20% held out as test."""
    _refuse_path("digits", path)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]
    y = bunch.target
    # A fixed permutation, independent of the user's seed, so the test set never moves.
    order = np.random.default_rng(0).permutation(len(y))
    n_test = len(y) // 5
    test, train = order[:n_test], order[n_test:]
    return RawData(x[train], y[train], x[test], y[test], [str(i) for i in range(10)])


@DATASETS.register("spiral")
def spiral(path: str | None = None) -> RawData:
    """cs231n's 3-class 2-D spiral (300 train / 100 test points per class): not linearly separable."""
    _refuse_path("spiral", path)
    x_train, y_train = make_spiral(300, classes=3, seed=0)
    x_test, y_test = make_spiral(100, classes=3, seed=1)
    return RawData(x_train, y_train, x_test, y_test, [str(i) for i in range(3)])


def make_spiral(per_class: int, classes: int = 3, noise: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """K interleaved spiral arms in 2-D (the cs231n "neural networks case study" data).

    Arm j: radius r in linspace(0, 1), angle t in linspace(4j, 4(j+1)) + noise * N(0, 1);
    point (r sin t, r cos t). Returns x (K*per_class, 2) float32 and y (K*per_class,) int64.
    """
    rng = np.random.default_rng(seed)
    r = np.linspace(0.0, 1.0, per_class)
    xs, ys = [], []
    for j in range(classes):
        t = np.linspace(4.0 * j, 4.0 * (j + 1), per_class) + rng.standard_normal(per_class) * noise
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(per_class, j))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def validate_arrays(x: Tensor, y: Tensor, num_classes: int, where: str) -> None:
    """Refuse data a network cannot train on, naming the problem and the fix."""
    if x.ndim < 2:
        raise DataError(f"{where}: inputs must be (N, features...) with N samples, got shape {tuple(x.shape)}")
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be a 1-D vector of class indices, got shape {tuple(y.shape)}")
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} inputs but {len(y)} labels; they must have the same length")
    if len(y) == 0:
        raise DataError(f"{where}: no samples")
    bad = ~torch.isfinite(x)
    if bad.any():
        row = int(bad.reshape(len(x), -1).any(1).nonzero()[0])
        raise DataError(
            f"{where}: inputs contain {int(bad.sum())} NaN/inf values (first in sample {row}); "
            "clean or impute them before training"
        )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(
            f"{where}: labels must be integers in 0..{num_classes - 1}, found {lo}..{hi}; "
            "re-encode the labels as class indices"
        )


# A label range this much larger than the sample count is a corrupt file, not a class layout;
# building that many output units would exhaust memory before any message.
MAX_RANGE_PER_SAMPLE = 100
MIN_RANGE_LIMIT = 1000


def class_indices(y: Any, where: str) -> tuple[list[str], Callable[[np.ndarray], np.ndarray] | None]:
    """Class names for integer labels (`where` names their source), and a remapping to 0..C-1 when the labels skip values (with a warning)."""
    if not len(y):
        return [], None
    top, n = int(y.max()), len(y)
    limit = max(MIN_RANGE_LIMIT, MAX_RANGE_PER_SAMPLE * n)
    if top + 1 > limit:
        raise DataError(
            f"{where} has labels up to {top} for {n} samples: a label range far larger than the number of "
            f"samples (limit {limit}); labels must be class indices 0..C-1"
        )
    present = sorted(int(v) for v in np.unique(np.asarray(y)))
    if present[0] < 0:  # often -1 for "unlabelled": refused, never remapped into a class
        raise DataError(
            f"{where} has {int((np.asarray(y) < 0).sum())} negative labels (smallest {present[0]}); labels must be "
            "class indices 0..C-1 (drop unlabelled samples, often marked -1)"
        )
    if present == list(range(len(present))):
        return [str(i) for i in range(top + 1)], None
    mapping = {old: new for new, old in enumerate(present)}
    shown = ", ".join(f"{old}->{new}" for old, new in mapping.items())
    warnings.warn(f"{where} labels are not 0..{len(present) - 1}; remapped {shown}", stacklevel=2)
    lookup = np.vectorize(lambda v: mapping[int(v)], otypes=[np.int64])
    return [str(old) for old in present], lambda labels: lookup(np.asarray(labels)) if np.size(labels) else np.asarray(labels, dtype=np.int64)


def as_tensors(x, y, where: str) -> tuple[Tensor, Tensor]:
    """Inputs as a float32 tensor and labels as int64 class indices; non-integer labels are refused."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    y_arr = np.asarray(y)
    if y_arr.dtype.kind == "f":
        if not np.all(np.isfinite(y_arr)) or np.any(y_arr != np.round(y_arr)):
            raise DataError(f"{where}: labels must be whole class indices, found non-integer values")
    elif y_arr.dtype.kind not in "iub":
        raise DataError(f"{where}: labels must be integer class indices, got dtype {y_arr.dtype}")
    return x, torch.as_tensor(y_arr.astype(np.int64))


def load_dataset(
    name: str,
    *,
    path: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    **options,
) -> Dataset:
    """Load a registered data set and carve a validation split from train, deterministically by `seed`.

    Args:
        name: a name from `DATASETS`.
        path: the local file or folder of loaders that read one (cifar10, arrays).
        val_fraction: share of the training split held out for validation.
        seed: seeds the validation carving (the test split never moves).
        **options: loader options (e.g. `label_column` for arrays); one the loader does not take is a ConfigError.

    Example:
        >>> data = load_dataset("digits", val_fraction=0.1, seed=0)
        >>> data.train.x.shape[1:], data.num_classes
        (torch.Size([1, 8, 8]), 10)
    """
    _check_val_fraction(val_fraction)
    loader = DATASETS.get(name)
    raw = loader(path=path, **check_options(loader, options, f"data set '{name}'", skip=("path",)))
    return from_raw(name, raw, val_fraction=val_fraction, seed=seed)


def _check_val_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")


def carve_test(x, y) -> tuple:
    """A fixed 20% test split of (x, y), independent of the user's seed, so the test set never moves."""
    order = np.random.default_rng(0).permutation(len(y))
    test, train = order[: len(order) // 5], order[len(order) // 5 :]
    return x[train], y[train], x[test], y[test]


def from_raw(name: str, raw: RawData, *, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """Validate a loader's train/test split and carve the validation split from train by `seed` (or take the raw data's own)."""
    _check_val_fraction(val_fraction)
    num_classes = len(raw.class_names)
    x_tr, y_tr = as_tensors(raw.x_train, raw.y_train, f"{name} train split")
    x_te, y_te = as_tensors(raw.x_test, raw.y_test, f"{name} test split")
    validate_arrays(x_tr, y_tr, num_classes, f"{name} train split")
    validate_arrays(x_te, y_te, num_classes, f"{name} test split")
    own_val = raw.x_val is not None
    if own_val:
        x_va, y_va = as_tensors(raw.x_val, raw.y_val, f"{name} validation split")
        validate_arrays(x_va, y_va, num_classes, f"{name} validation split")
    for split, xs in (("test", x_te), *((("validation", x_va),) if own_val else ())):
        if x_tr.shape[1:] != xs.shape[1:]:
            raise DataError(
                f"{name}: train samples have shape {tuple(x_tr.shape[1:])} but {split} samples "
                f"{tuple(xs.shape[1:])}; every sample must have the same shape"
            )
    if own_val:
        if len(y_va) == 0:
            raise DataError(f"{name}: the validation split you passed is empty; pass at least one sample, or leave x_val out")
        order = torch.arange(len(y_tr))
        val_idx, train_idx = order[:0], order
    else:
        order = torch.randperm(len(y_tr), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, math.floor(len(y_tr) * val_fraction))
        val_idx, train_idx = order[:n_val], order[n_val:]
    if num_classes < 2:
        raise DataError(f"{name}: only {num_classes} class ({', '.join(map(str, raw.class_names))}); a classifier needs at least 2 classes")
    if len(train_idx) < num_classes:
        raise ConfigError(
            f"data.val_fraction={val_fraction} leaves {len(train_idx)} of {len(y_tr)} training samples for "
            f"{num_classes} classes; lower it (0.1 is usual)"
        )
    return Dataset(
        name=name,
        train=Split(x_tr[train_idx], y_tr[train_idx]),
        val=Split(x_va, y_va) if own_val else Split(x_tr[val_idx], y_tr[val_idx]),
        test=Split(x_te, y_te),
        num_classes=num_classes,
        input_shape=tuple(x_tr.shape[1:]),
        class_names=tuple(str(c) for c in raw.class_names),
    )


def select_classes(data: Dataset, classes: Sequence[int], train_size: int | None = None) -> Dataset:
    """The samples of `classes` only, relabelled 0..len(classes)-1 in the given order.

    For transfer learning without downloads: pre-train on some classes, transfer
    to the others. `train_size` keeps the first n training samples (the training
    split is already in a seeded random order), to mimic a small target set.
    """
    keep = [int(c) for c in classes]
    if len(set(keep)) != len(keep) or not all(0 <= c < data.num_classes for c in keep):
        raise ConfigError(f"classes must be distinct indices in 0..{data.num_classes - 1}, got {list(classes)}")
    lookup = torch.full((data.num_classes,), -1, dtype=torch.int64)
    lookup[keep] = torch.arange(len(keep))

    def pick(split: Split, limit: int | None = None) -> Split:
        idx = (lookup[split.y] >= 0).nonzero().squeeze(1)[:limit]
        return Split(split.x[idx], lookup[split.y[idx]])

    return replace(
        data,
        train=pick(data.train, train_size),
        val=pick(data.val),
        test=pick(data.test),
        num_classes=len(keep),
        class_names=tuple(data.class_names[c] for c in keep),
    )
