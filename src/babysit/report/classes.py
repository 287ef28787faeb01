"""Per-class validation accuracy of a recorded run's best checkpoint, and its confusion matrix.

One accuracy number hides how rare or hard classes fare (the class-balance
check's advice is to report per-class accuracy). The report rebuilds the run
from its record: the data from config.json (preprocessing fitted on the
training split again, which is deterministic), the model (a built-in one or
the model script), the weights of checkpoints/best.pt (the averaged weights
when `train.averaging` was on: what validation scored), and evaluates the
validation split in eval mode. The recomputed accuracy must match the one the
run recorded for that epoch; if it does not, the data or the model script
changed since the run, and the numbers would describe another model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from babysit.config import build_config
from babysit.data.datasets import Dataset
from babysit.data.loader import batches
from babysit.errors import DataError
from babysit.build import load_data, model_from_config
from babysit.train.checkpoint import load_checkpoint
from babysit.train.record import RunRecord


@dataclass
class ClassAccuracy:
    """Validation results per class: the confusion matrix `matrix[true][predicted]` of the best checkpoint."""

    class_names: tuple[str, ...]
    matrix: list[list[int]]
    epoch: int

    @property
    def counts(self) -> list[int]:
        """Validation samples per true class."""
        return [sum(row) for row in self.matrix]

    @property
    def accuracy(self) -> list[float]:
        """Per class: correct / samples (NaN for a class without validation samples)."""
        return [row[i] / n if n else math.nan for i, (row, n) in enumerate(zip(self.matrix, self.counts))]

    @property
    def overall(self) -> float:
        """All correct / all samples."""
        total = sum(self.counts)
        return sum(self.matrix[i][i] for i in range(len(self.matrix))) / total if total else math.nan

    def confused_with(self, i: int) -> tuple[str, int] | None:
        """The class most often predicted for true class `i` besides itself, and how often; None if never wrong."""
        wrong = [(count, j) for j, count in enumerate(self.matrix[i]) if j != i and count]
        if not wrong:
            return None
        count, j = max(wrong)
        return self.class_names[j], count

    def __repr__(self) -> str:
        return f"ClassAccuracy(classes={len(self.class_names)}, samples={sum(self.counts)}, overall={self.overall:.4f}, epoch={self.epoch})"


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The predicted class of every sample, in eval mode."""
    model.eval()
    return torch.cat([model(xb).argmax(1) for xb, _ in batches(x, y, 1000, shuffle=False)])


def class_accuracy(record: RunRecord, data: Dataset | None = None) -> ClassAccuracy:
    """Rebuild the run's data and best model, and tabulate its validation predictions per class.

    Args:
        record: the run record (its config.json and checkpoints/best.pt are read).
        data: the run's data set when already loaded (must be what the config loads).

    Raises:
        DataError / ConfigError: the run has no checkpoint, its data or model
            script cannot be loaded any more, or they changed since the run.
    """
    checkpoint = load_checkpoint(record.path / "checkpoints" / "best.pt")
    if checkpoint.get("metric") is None:
        raise DataError("best.pt still holds the initial weights: no epoch finished with a finite validation accuracy")
    cfg = build_config(record.config)
    data = data if data is not None else load_data(cfg.data)
    model = model_from_config(cfg.model, data, seed=cfg.train.seed)
    averaged = (checkpoint.get("callbacks") or {}).get("ParameterAveraging")
    # AveragedModel keeps the network under "module." (plus its "n_averaged" counter).
    state = {k.removeprefix("module."): v for k, v in averaged.items() if k.startswith("module.")} if averaged else checkpoint["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise DataError(f"best.pt does not fit the model config.json builds ({str(e).splitlines()[0]}); the model changed since the run") from None
    y = data.val.y
    predicted = _predict(model, data.val.x, y)
    c = data.num_classes
    matrix = torch.bincount(y * c + predicted, minlength=c * c).reshape(c, c).tolist()
    result = ClassAccuracy(tuple(data.class_names), matrix, int(checkpoint.get("epoch", 0)))
    recorded = checkpoint["metric"]["value"]
    # One sample of slack (a GPU-trained run re-evaluated on the CPU may flip a borderline prediction).
    if abs(result.overall - recorded) > 1.5 / len(y):
        raise DataError(
            f"the rebuilt model scores {result.overall:.4f} on validation but the run recorded {recorded:.4f} at epoch {result.epoch}: "
            "the data or the model script changed since the run"
        )
    return result
