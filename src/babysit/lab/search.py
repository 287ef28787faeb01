"""Lab `search`: grid vs random search at equal budget (Bergstra & Bengio 2012; docs/lectures.md §6).

With one important and one unimportant hyperparameter, a k x k grid tries only k
distinct values of the important one; k² random trials try k² of them, so random
search finds a better value of what matters for the same budget.
"""

from __future__ import annotations

import math
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from babysit.data.datasets import load_dataset
from babysit.data.preprocess import prepare
from babysit.lab.result import EXPERIMENTS, LabResult
from babysit.tune.search import TuneSettings
from babysit.tune.session import search
from babysit.tune.space import log_uniform


def important(x: np.ndarray, peak: float = 0.37) -> np.ndarray:
    """The score's dependence on the important parameter: a narrow peak at `peak`."""
    return np.exp(-((x - peak) ** 2) / (2 * 0.05**2))


def unimportant(y: np.ndarray) -> np.ndarray:
    """A weak dependence on the unimportant parameter."""
    return 0.05 * np.sin(3 * np.pi * y)


def score(x: np.ndarray, y: np.ndarray, peak: float = 0.37) -> np.ndarray:
    """f(x, y) = g(x) + h(y) with g dominant: the figure's function."""
    return important(x, peak) + unimportant(y)


def grid_points(per_axis: int) -> np.ndarray:
    """A per_axis x per_axis grid over the unit square (cell centres, as a careful user would place it)."""
    ticks = (np.arange(per_axis) + 0.5) / per_axis
    xs, ys = np.meshgrid(ticks, ticks)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def random_points(n: int, rng: np.random.Generator) -> np.ndarray:
    """n points uniform over the unit square."""
    return rng.uniform(size=(n, 2))


def real_search(strategy: str, trials: int, epochs: int, seed: int) -> list[tuple[float, float, float | None]]:
    """A real MNIST-1D MLP search over lr (important) and weight decay (nearly irrelevant at these sizes).

    Returns (lr, weight_decay, validation accuracy or None if the trial diverged) per trial.
    """
    data = prepare(load_dataset("mnist1d", seed=seed))
    base = {"data": {"name": "mnist1d"}, "model": {"name": "mlp"}, "train": {"optimizer": "adam", "seed": seed}}
    space = {"train.lr": log_uniform(1e-5, 1.0), "train.weight_decay": log_uniform(1e-7, 1e-5)}
    with tempfile.TemporaryDirectory() as root:  # the study is a means here, not a result to keep
        result = search(base, space, TuneSettings(strategy=strategy, trials=trials, epochs=epochs, seed=seed), progress=False, data=data, root=root)
    return [(t.values["train.lr"], t.values["train.weight_decay"], t.score) for t in result.trials]


@EXPERIMENTS.register("search")
def search_experiment(per_axis: int = 5, repeats: int = 100, real_per_axis: int = 4, real_epochs: int = 2, seed: int = 0) -> LabResult:
    """Grid vs random search at equal budget: on Bergstra & Bengio's function, and on a real MNIST-1D search."""
    result = LabResult(
        "search",
        "Random search vs grid search",
        "CS231n lecture 6, hyperparameter optimisation (Bergstra & Bengio 2012): with one important and one "
        "unimportant parameter, a grid wastes its budget repeating values of the important one.",
    )
    budget = per_axis**2
    rng = np.random.default_rng(seed)
    grid = grid_points(per_axis)
    # Where the good value lies is unknown in advance: draw the peak anew each repeat, so
    # the grid is not judged on one lucky or unlucky placement.
    peaks = rng.uniform(0.05, 0.95, size=repeats)
    grid_scores, rand_best, rand_distinct = [], [], []
    for peak in peaks:
        grid_scores.append(float(score(grid[:, 0], grid[:, 1], peak).max()))
        pts = random_points(budget, rng)
        rand_best.append(float(score(pts[:, 0], pts[:, 1], peak).max()))
        rand_distinct.append(len(np.unique(np.round(pts[:, 0], 12))))
    grid_best = float(np.mean(grid_scores))
    grid_distinct = len(np.unique(grid[:, 0]))
    optimum = 1.05  # g's peak plus h's maximum
    wins = float(np.mean(np.array(rand_best) > np.array(grid_scores)))
    result.table(
        f"Equal budget of {budget} trials (mean over {repeats} repeats, each with a new peak location)",
        ["strategy", "distinct values of the important parameter", "best score found", "gap to optimum"],
        [
            ["grid", grid_distinct, grid_best, optimum - grid_best],
            ["random", float(np.mean(rand_distinct)), float(np.mean(rand_best)), optimum - float(np.mean(rand_best))],
        ],
    )
    result.table("How often random beats the grid", ["random better than grid", "repeats"], [[wins, repeats]])

    pts = random_points(budget, np.random.default_rng(seed))
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), gridspec_kw={"wspace": 0.45})
    xs = np.linspace(0, 1, 400)
    for ax, (title, p) in zip(axes, (("grid layout", grid), ("random layout", pts))):
        ax.scatter(p[:, 0], p[:, 1], color="C0", zorder=3)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"important parameter\n{title}", ylabel="unimportant parameter")
        top = ax.inset_axes([0, 1.02, 1, 0.22], sharex=ax)
        top.plot(xs, important(xs), color="C2")
        top.plot(p[:, 0], important(p[:, 0]), "|", color="C0", ms=12)
        top.axis("off")
        side = ax.inset_axes([1.02, 0, 0.18, 1], sharey=ax)
        side.plot(unimportant(xs), xs, color="C1")
        side.axis("off")
    fig.suptitle("each point is one trial; the curves are g(x) (top) and h(y) (right)", y=1.2)
    result.figure("grid vs random layout with the important and unimportant functions", fig)

    if real_per_axis > 0:
        _real_part(result, real_per_axis, real_epochs, seed)
    result.claim(
        f"random search tries {per_axis}x more distinct values of the important parameter",
        float(np.mean(rand_distinct)) >= per_axis * grid_distinct,
        f"{np.mean(rand_distinct):.0f} vs {grid_distinct}",
    )
    result.claim(
        "random search finds a better score than the grid, on average",
        float(np.mean(rand_best)) > grid_best,
        f"mean best {np.mean(rand_best):.3f} vs grid {grid_best:.3f} (random better in {wins:.0%} of {repeats} repeats)",
    )
    if not math.isfinite(grid_best):  # pragma: no cover
        raise RuntimeError("non-finite score")
    return result


def _real_part(result: LabResult, per_axis: int, epochs: int, seed: int) -> None:
    """The same comparison on a real search: an MNIST-1D MLP, lr and weight decay, equal budgets.

    The best scores are reported, not claimed: with one seed and 16 trials either
    strategy can win by a point; the structural claim (distinct values tried) is exact.
    """
    budget = per_axis**2
    runs = {name: real_search(name, budget, epochs, seed) for name in ("grid", "random")}
    rows = []
    for name, trials in runs.items():
        scores = [s for _, _, s in trials if s is not None]
        distinct = len({round(math.log10(lr), 9) for lr, _, _ in trials})
        rows.append([name, len(trials), distinct, max(scores, default=0.0), len(trials) - len(scores)])
    result.table(
        f"Real search: MNIST-1D MLP, {budget} trials of {epochs} epochs, lr in [1e-5, 1] and weight decay in [1e-7, 1e-5] (log)",
        ["strategy", "trials", "distinct lr values", "best val accuracy", "trials without a score (diverged)"],
        rows,
    )
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, trials) in enumerate(runs.items()):
        done = [(lr, s) for lr, _, s in trials if s is not None]
        ax.scatter([lr for lr, _ in done], [s for _, s in done], label=name, color=f"C{i}", marker="os"[i], alpha=0.8)
    ax.set(xscale="log", xlabel="learning rate (log)", ylabel="val accuracy", title="real search: score against the important parameter")
    ax.legend()
    result.figure("real MNIST-1D search: val accuracy against learning rate", fig)
    g, r = rows
    result.claim(
        f"on the real search, random tries {per_axis}x more distinct learning rates than the grid",
        r[2] >= per_axis * g[2],
        f"{r[2]} vs {g[2]}",
    )
