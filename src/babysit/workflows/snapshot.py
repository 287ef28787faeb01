"""Which weights of `auto`'s final run it delivers: those of its last epoch, or of its best validation epoch.

The lectures' early stopping (docs/lectures.md; CS231n Neural Networks 3): train for a long time,
but always keep track of the model snapshot that worked best on validation. The final run's
schedule was planned to end at its last epoch, so its last weights are delivered unless
validation shows they overfit: unless the best epoch (checkpoints/best.pt) scored above the last
by more than chance explains for one comparison of two accuracies on the validation split
(`ranking.chance_margin`, the rule auto's ranking uses). On 2,000 MNIST-1D samples a final run of
1,000 to 6,000 epochs peaked on validation at a fifth to two thirds of its length and ended 2.5
to 9 points lower; a plateau that only wanders by a sample or two keeps the last epoch.

    chosen = deliver(run_dir, history_records, data, last_test_accuracy)  # Snapshot: which, epochs, scores, test accuracy
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from babysit.build import scored_model
from babysit.data.datasets import Dataset
from babysit.train.checkpoint import load_checkpoint
from babysit.train.trainer import evaluate
from babysit.workflows.ranking import chance_margin


@dataclass(frozen=True)
class Snapshot:
    """The weights delivered ("best": checkpoints/best.pt, or "last"), why, and their test accuracy."""

    which: str
    epoch: int  # the delivered weights' epoch
    last_epoch: int
    val_best: float
    val_last: float
    margin: float  # what chance explains between the two on `n` validation samples
    n: int
    test_accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def describe(self) -> str:
        """One sentence for the report and the notes."""
        scores = f"validation {self.val_best:.4f} at its best epoch against {self.val_last:.4f} at its last ({self.last_epoch})"
        if self.which == "best":
            return (f"the final run's best validation epoch ({self.epoch}, checkpoints/best.pt) is delivered, not its last: {scores}, "
                    f"more than the {self.margin:.1%} chance explains on {self.n} validation samples: it overfit past that epoch "
                    "(the lectures' early stopping; a stronger regularisation or a shorter run would not need it)")  # fmt: skip
        return f"the final run's last epoch is delivered: {scores}, within the {self.margin:.1%} chance explains on {self.n} validation samples"


def pick(val_best: float, val_last: float, n: int) -> tuple[str, float]:
    """"best" when the best epoch's validation accuracy beat the last epoch's by more than chance explains on `n` samples, else "last"; and that margin.

    A last epoch with no finite score (a run that diverged at its end) delivers the best one.
    """
    if not math.isfinite(val_last):
        return ("best" if math.isfinite(val_best) else "last"), math.nan
    margin = chance_margin(val_last, n, 1)
    return ("best" if val_best - val_last > margin else "last"), margin


def deliver(run_dir: Path, records: list[dict[str, Any]], data: Dataset, test_accuracy: float | None) -> Snapshot:
    """Pick the final run's delivered weights and score them on the test split.

    `run_dir`: the final run's record (its checkpoints/best.pt is read); `records`: its per-epoch
    history; `test_accuracy`: its last epoch's, which the last weights keep.
    """
    val_last = float(records[-1].get("val_accuracy", math.nan)) if records else math.nan
    path = run_dir / "checkpoints" / "best.pt"
    checkpoint = load_checkpoint(path) if path.is_file() else {}
    metric = checkpoint.get("metric") or {}
    val_best = float(metric["value"]) if metric.get("name") == "val_accuracy" else math.nan
    n = len(data.val.y)
    which, margin = pick(val_best, val_last, n)
    epoch = int(checkpoint.get("epoch", 0)) if which == "best" else len(records)
    if which == "best":
        model = scored_model(checkpoint, checkpoint["config"], data, "best.pt")
        _, test_accuracy = evaluate(model, data.test.x, data.test.y)
    return Snapshot(which, epoch, len(records), val_best, val_last, margin, n, test_accuracy)
