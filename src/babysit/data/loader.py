"""In-memory mini-batches over device-resident tensors, without per-sample Python.

The whole split lives on the training device; an epoch is one `randperm` and a
slice per batch, which is what makes small-data training fast on CPU and GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor


def batches(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    *,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    transform: Callable[[Tensor], Tensor] | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield `(x_batch, y_batch)` pairs covering the split once.

    Args:
        x: (N, ...) inputs, already on the target device.
        y: (N,) labels on the same device.
        batch_size: samples per batch.
        shuffle: draw a fresh permutation (from `generator`, a CPU generator, for
            reproducibility) instead of the stored order.
        drop_last: skip the final short batch.
        transform: applied to each input batch (the training split's augmentation).
    """
    n = len(y)
    if shuffle:
        order = torch.randperm(n, generator=generator).to(x.device)
    else:
        order = None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            # index_select: one row copy per sample, ~2x faster on CPU than x[idx]'s generic indexing.
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        yield (transform(xb) if transform is not None else xb), yb


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches `batches` yields for `n` samples."""
    return n // batch_size if drop_last else -(-n // batch_size)
