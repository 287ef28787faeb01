"""Data a user already holds in memory: arrays, tensors, or a PyTorch Dataset/DataLoader.

`Dataset.from_arrays` and `Dataset.from_torch` (in `data/datasets.py`) use these
helpers to turn what they are given into `RawData`, which then goes through the
same validation and validation-split carving as every registered loader.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from babysit.data.datasets import RawData, as_tensors, carve_test, class_indices
from babysit.errors import DataError


def raw_from_arrays(x, y, x_test, y_test, class_names: Sequence[str] | None, name: str, *, x_val=None, y_val=None) -> RawData:
    """(x, y) with optional validation and test splits as RawData; no test split holds out a fixed 20% of (x, y)."""
    if (x_test is None) != (y_test is None):
        raise DataError(f"{name}: pass both x_test and y_test, or neither")
    if (x_val is None) != (y_val is None):
        raise DataError(f"{name}: pass both x_val and y_val, or neither")
    x, y = _numpy(x), _numpy(y)
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x)} inputs but {len(y)} labels; they must have the same length")
    if x_val is not None:
        x_val, y_val = _numpy(x_val), _numpy(y_val)
        if len(x_val) != len(y_val):
            raise DataError(f"{name}: {len(x_val)} validation inputs but {len(y_val)} labels; they must have the same length")
    if x_test is None:
        x, y, x_test, y_test = carve_test(x, y)
    else:
        x_test, y_test = _numpy(x_test), _numpy(y_test)
    if class_names is None:
        # Checked before anything is sized by it: a label of 10^12 must not build 10^12 classes.
        parts = [np.ravel(y), np.ravel(y_test), *([np.ravel(y_val)] if y_val is not None else [])]
        _, y_all = as_tensors(np.zeros((0,)), np.concatenate(parts), name)
        class_names, remap = class_indices(y_all.numpy(), name)
        if remap is not None:
            y, y_test = remap(y), remap(y_test)
            y_val = remap(y_val) if y_val is not None else None
    return RawData(x, y, x_test, y_test, [str(c) for c in class_names], x_val, y_val)


def _numpy(a) -> np.ndarray:
    if isinstance(a, Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def available_memory() -> int:
    """Bytes of memory available to this process now (MemAvailable on Linux; else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def materialise(data, where: str, *, progress: bool = True, memory: int | None = None) -> tuple[Tensor, Tensor]:
    """Read every (x, y) of a torch Dataset or DataLoader once into two tensors (x as float32).

    The size is estimated from the first sample (or batch) times their number and
    refused with a DataError, before reading further, when it exceeds the
    available memory (`memory` bytes, default: what the system reports now).
    """
    from torch.utils.data import DataLoader

    loader = data if isinstance(data, DataLoader) else None
    try:
        total = len(data)
    except TypeError:
        raise DataError(f"{where}: the data set has no len(); pass a map-style torch Dataset or a DataLoader over one") from None
    if total == 0:
        raise DataError(f"{where}: no samples")
    items = iter(data)
    first = _pair(next(items), where)
    per_item = first[0].numel() * 4 + first[1].numel() * 8
    # A DataLoader yields batches; len(data) counts them, and the last one may be smaller.
    need = per_item * total
    limit = available_memory() if memory is None else memory
    if need > limit:
        raise DataError(
            f"{where}: about {need / 2**30:.2f} GiB of samples but only {limit / 2**30:.2f} GiB of memory is "
            "available; use a subset (torch.utils.data.Subset) or train in your own loop with bs.record"
        )
    xs, ys = [first[0]], [first[1]]
    from rich.progress import Progress

    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"reading {where}", total=total, completed=1)
        for item in items:
            x, y = _pair(item, where)
            xs.append(x)
            ys.append(y)
            bar.advance(task)
    if loader is not None:
        return torch.cat([x.float() for x in xs]), torch.cat([y.reshape(-1) for y in ys])
    return torch.stack([x.float() for x in xs]), torch.stack([y.reshape(()) for y in ys])


def _pair(item, where: str) -> tuple[Tensor, Tensor]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise DataError(f"{where}: each sample must be an (input, label) pair, got {type(item).__name__}")
    x, y = item
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x), torch.as_tensor(y)
