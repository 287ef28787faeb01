"""The tuning report: the lectures' plots of a search, on one self-contained HTML page.

- validation accuracy against each hyperparameter, on log axes where it was sampled
  on a log scale, coloured by stage (the coarse/fine scatter of the lectures);
- the range of every parameter stage by stage (how coarse-to-fine narrowed it);
- the loss and accuracy curves of the best trials;
- the fANOVA importance of each parameter; the edge warnings; every trial.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from babysit.report.html import Page
from babysit.status import DIVERGED, FAILED, PRUNED, STOPPED
from babysit.tune.live import fmt
from babysit.tune.results import TrialRecord, TuneResult
from babysit.tune.space import Param

NO_SCORE = (DIVERGED, PRUNED, FAILED, STOPPED)


def _axis(param: Param, key: str) -> tuple[Any, str, str]:
    """(value -> x, x scale, label): betas are drawn as 1 - beta on a log axis, as they were sampled."""
    if param.kind == "one_minus_log":
        return (lambda v: 1.0 - v), "log", f"1 - {key}"
    return (lambda v: v), ("log" if param.logarithmic else "linear"), key


def _set_scale(ax: Any, scale: str) -> None:
    """Log axes get plain labels at 1, 2, 5 x 10^k (readable even over less than a decade)."""
    ax.set_xscale(scale)
    if scale == "log":
        lo, hi = sorted(abs(v) for v in ax.get_xlim())
        decades = math.log10(hi / lo) if lo > 0 else math.inf
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 2 else (1.0,)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def _grid(n: int, width: float = 4.0, height: float = 3.2) -> tuple[Any, list[Any]]:
    cols = min(n, 3)
    rows = -(-n // cols)
    # Bare Figures render with Agg when saved and never touch pyplot's global state or backend.
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def scatter_figure(result: TuneResult) -> Any:
    """Validation accuracy against each parameter, one colour per stage; stopped trials as crosses."""
    space = result.plans[0].space
    fig, axes = _grid(len(space))
    colours = matplotlib.colormaps["viridis"]([i / max(len(result.plans) - 1, 1) for i in range(len(result.plans))])
    for ax, (key, param) in zip(axes, space.items()):
        to_x, scale, label = _axis(param, key)
        for plan, colour in zip(result.plans, colours):
            done = [t for t in result.trials if t.stage == plan.stage and key in t.values]
            ok = [t for t in done if t.score is not None]
            bad = [t for t in done if t.status in NO_SCORE and t.last() is not None]
            name = "coarse" if plan.stage == 1 and len(result.plans) > 1 else f"stage {plan.stage}"
            ax.scatter([_x(to_x, t.values[key], param) for t in ok], [t.score for t in ok], color=colour, s=22, label=f"{name} ({plan.epochs} ep)")
            if bad:
                ax.scatter([_x(to_x, t.values[key], param) for t in bad], [t.last() for t in bad], color="crimson", marker="x", s=22)
        if param.numeric:
            _set_scale(ax, scale)
        if param.kind == "one_minus_log":
            ax.invert_xaxis()  # beta grows to the right
        ax.set_xlabel(label)
        ax.set_ylabel("validation accuracy")
    axes[0].legend(fontsize=8)
    fig.suptitle("validation accuracy per hyperparameter (x: diverged or pruned)")
    fig.tight_layout()
    return fig


def _x(to_x: Any, value: Any, param: Param) -> Any:
    return to_x(value) if param.numeric else str(value)


def ranges_figure(result: TuneResult) -> Any:
    """Each numeric parameter's range per stage, with that stage's best value starred."""
    keys = [k for k, p in result.plans[0].space.items() if p.numeric]
    fig, axes = _grid(len(keys), height=0.6 + 0.5 * len(result.plans))
    for ax, key in zip(axes, keys):
        param0 = result.plans[0].space[key]
        to_x, scale, label = _axis(param0, key)
        for plan in result.plans:
            p = plan.space[key]
            ax.plot([to_x(p.low), to_x(p.high)], [plan.stage, plan.stage], lw=6, color="steelblue", solid_capstyle="butt")
            scored = [t for t in result.trials if t.stage == plan.stage and t.score is not None]
            if scored:
                best = max(scored, key=lambda t: t.score)
                ax.plot([to_x(best.values[key])], [plan.stage], marker="*", color="darkorange", ms=12)
        _set_scale(ax, scale)
        if param0.kind == "one_minus_log":
            ax.invert_xaxis()
        ax.set_yticks([p.stage for p in result.plans])
        ax.set_ylim(len(result.plans) + 0.5, 0.5)
        ax.set_ylabel("stage")
        ax.set_xlabel(label)
    fig.suptitle("searched range per stage (star: the stage's best)")
    fig.tight_layout()
    return fig


def curves_figure(best: list[TrialRecord]) -> Any:
    """Train (solid) and validation (dashed) loss, and validation accuracy, of the best trials."""
    fig = Figure(figsize=(11, 3.6))
    loss_ax, acc_ax = fig.subplots(1, 2)
    for t, colour in zip(best, matplotlib.colormaps["tab10"].colors):
        epochs = [r["epoch"] for r in t.history]
        loss_ax.plot(epochs, [r["train_loss"] for r in t.history], color=colour, label=f"#{t.number} ({t.score:.3f})")
        loss_ax.plot(epochs, [r["val_loss"] for r in t.history], color=colour, ls="--")
        acc_ax.plot(epochs, [r["val_accuracy"] for r in t.history], color=colour)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss (solid: train, dashed: validation)")
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def importance_figure(importance: dict[str, float]) -> Any:
    """Horizontal bars of the fANOVA importance, largest on top."""
    items = sorted(importance.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(6, 0.5 + 0.4 * len(items)))
    ax = fig.subplots()
    ax.barh([k for k, _ in items], [v for _, v in items], color="steelblue")
    ax.set_xlabel("share of the variance in validation accuracy (fANOVA)")
    fig.tight_layout()
    return fig


def build_page(result: TuneResult) -> Page:
    """The whole tuning report as a `Page`."""
    search, best = result.search, result.best
    page = Page(f"babysit tune: {search.study}")
    sec = page.section("Search")
    s = search.settings
    rows = [["strategy", s.strategy], ["trials", s.trials], ["stages", s.num_stages()], ["store", result.where]]
    sec.table(["setting", "value"], [*rows, ["superseded trials (stale or duplicate)", result.superseded]])
    sec.table(["stage", "trials", "epochs", "carried", *search.space], [[p.stage, len(p.configs), p.epochs, p.carried, *(str(p.space[k]) for k in search.space)] for p in result.plans])
    for plan in result.plans:
        for note in plan.notes:
            sec.text(f"stage {plan.stage}: {note}", "note")
    sec = page.section("Best configuration")
    if best is None:
        sec.text("no trial completed", "sev-error")
    else:
        sec.text(f"trial #{best.number}, stage {best.stage}, {best.epochs} epochs: validation accuracy {best.score:.4f}")
        sec.table(["parameter", "value"], [[k, fmt(v)] for k, v in best.values.items()])
    for w in result.warnings:
        sec.text(str(w), "sev-warning")
    if result.trials and any(t.score is not None for t in result.trials):
        page.section("Validation accuracy against each hyperparameter").figure(scatter_figure(result), "coloured by stage; crosses: diverged or pruned trials at their last validation accuracy")
        if any(p.numeric for p in result.plans[0].space.values()):
            page.section("Ranges, stage by stage").figure(ranges_figure(result), "coarse to fine: each stage searches the range drawn on its row")
        top = sorted((t for t in result.trials if t.stage == best.stage and t.score is not None and t.history), key=lambda t: -t.score)[:5]
        page.section("Curves of the best trials").figure(curves_figure(top), f"the {len(top)} best trials of stage {best.stage}")
    if result.importance:
        sec = page.section("Importance")
        sec.figure(importance_figure(result.importance), "fANOVA over stage 1 (widest ranges), in the sampled (log) space")
    rows, classes = [], []
    for t in result.trials:
        acc = t.score if t.score is not None else t.last()
        rows.append([t.number, t.stage, t.status, *(fmt(t.values.get(k, "")) for k in search.space), t.epochs, "" if acc is None else f"{acc:.4f}", t.reason])
        classes.append({DIVERGED: "sev-warn", FAILED: "sev-fail", PRUNED: "sev-info", STOPPED: "sev-info"}.get(t.status, ""))
    page.section("Trials").table(["#", "stage", "status", *search.space, "epochs", "val acc", "reason"], rows, classes)
    return page


def write_report(result: TuneResult, path: str | Path) -> Path:
    """Write the tuning report to `path` (atomically)."""
    return build_page(result).write(path)
