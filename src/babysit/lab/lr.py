"""Lab `lr`: the lectures' four loss curves, for a learning rate too low, too high, high and good (docs/lectures.md §7)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

from babysit.checks.lr_range import smooth
from babysit.data.datasets import load_dataset
from babysit.data.preprocess import prepare
from babysit.lab.result import EXPERIMENTS, LabResult, option_limits
from babysit.nn.models import mlp
from babysit.train.callbacks import DivergenceGuard
from babysit.train.state import Recipe
from babysit.train.trainer import fit, seed_everything


class _StepLosses:
    """Record every batch loss (the curve the lecture plots)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_batch_end(self, state) -> None:
        self.losses.append(float(state.loss))


@EXPERIMENTS.register("lr")
@option_limits(low=(1e-10, 1e3), good=(1e-10, 1e3), high=(1e-10, 1e3), too_high=(1e-10, 1e4))
def lr_experiment(
    data: str = "digits",
    epochs: int = 15,
    low: float = 1e-6,
    good: float = 1e-3,
    high: float = 3e-2,
    too_high: float = 10.0,
    optimizer: str = "adam",
    seed: int = 0,
) -> LabResult:
    """Loss curves on a real data set (Adam, MLP) for learning rates too low, good, high and too high."""
    result = LabResult(
        "lr",
        "Learning rate and the shape of the loss curve",
        "CS231n lecture 6, babysitting the learning process: a too-low rate gives a slow, nearly linear decrease; "
        "a too-high rate explodes; a high rate drops fast then plateaus at a worse loss; a good rate keeps improving.",
    )
    dataset = prepare(load_dataset(data, seed=seed))
    rates = {"too low": low, "good": good, "high": high, "too high": too_high}
    curves, rows, summary = {}, [], {}
    for label, rate in rates.items():
        seed_everything(seed)
        model = mlp(dataset.input_shape, dataset.num_classes, hidden=(100, 100))
        rec, guard = _StepLosses(), DivergenceGuard(factor=3.0)
        res = fit(model, dataset, Recipe(optimizer=optimizer, lr=rate, epochs=epochs, batch_size=50, seed=seed), callbacks=[rec, guard], progress=False)
        curves[label] = rec.losses
        finite = [v for v in rec.losses if math.isfinite(v)]
        steps_per_epoch = math.ceil(len(dataset.train) / 50)
        first_epoch = sum(finite[:steps_per_epoch]) / max(1, len(finite[:steps_per_epoch]))
        last_epoch = sum(finite[-steps_per_epoch:]) / max(1, len(finite[-steps_per_epoch:]))
        summary[label] = {"status": res.status, "first": first_epoch, "last": last_epoch, "steps": len(rec.losses), "val": res.history.series("val_accuracy")[-1]}
        rows.append([label, rate, res.status, len(rec.losses), first_epoch, last_epoch, summary[label]["val"]])

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {"too low": "C0", "good": "C2", "high": "C1", "too high": "C3"}
    for label, losses in curves.items():
        shown = [min(v, 10.0) if math.isfinite(v) else 10.0 for v in losses]
        ax.plot(smooth(shown, 10), label=f"{label} (lr={rates[label]:g})", color=colors[label])
        if summary[label]["status"] == "diverged":
            ax.plot(len(shown) - 1, min(ax.get_ylim()[1], shown[-1]), "x", ms=12, mew=3, color=colors[label])
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (smoothed, clipped at 10)")
    ax.set_ylim(0, max(4.0, 1.2 * math.log(dataset.num_classes)))
    ax.legend()
    ax.set_title(f"{optimizer} on {data}: the lecture's four learning-rate curves")
    result.figure("loss curves for four learning rates", fig)
    result.table(
        "Per learning rate",
        ["curve", "lr", "status", "steps", "mean loss epoch 1", "mean loss last epoch", "final val accuracy"],
        rows,
    )

    s = summary
    result.claim("a too-high learning rate explodes and is stopped", s["too high"]["status"] == "diverged", f"status {s['too high']['status']} after {s['too high']['steps']} steps")
    result.claim(
        "a too-low learning rate barely moves the loss",
        s["too low"]["last"] > 0.8 * s["too low"]["first"],
        f"last/first epoch loss = {s['too low']['last'] / s['too low']['first']:.2f}",
    )
    result.claim(
        "a high learning rate drops faster at first than a good one",
        s["high"]["first"] < s["good"]["first"],
        f"epoch-1 loss: high {s['high']['first']:.3f} vs good {s['good']['first']:.3f}",
    )
    result.claim(
        "a high learning rate plateaus at a worse loss than a good one",
        s["high"]["last"] > s["good"]["last"],
        f"last-epoch loss: high {s['high']['last']:.3f} vs good {s['good']['last']:.3f}",
    )
    return result
