"""Per-epoch metrics of a run, in JSON-ready form."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    """One dict per epoch: epoch, train_loss, train_accuracy, val_loss, val_accuracy, lr, seconds."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(dict(record))

    def series(self, key: str) -> list[float]:
        """The values of `key` over epochs (NaN where an epoch lacks it)."""
        return [r.get(key, math.nan) for r in self.records]

    def best(self, key: str = "val_accuracy", mode: str = "max") -> dict[str, Any] | None:
        """The epoch record with the best finite `key`."""
        finite = [r for r in self.records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if not finite:
            return None
        pick = max if mode == "max" else min
        return pick(finite, key=lambda r: r[key])

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        last = self.records[-1] if self.records else {}
        return f"History(epochs={len(self)}, last={last})"
