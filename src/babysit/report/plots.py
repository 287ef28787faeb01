"""The report's figures: small functions from run-record data to a matplotlib Figure.

Each takes the plain lists of the run record (docs/run-record.md: `metrics`
one dict per epoch, `probes` one dict per probed step) and returns a `Figure`,
or None when the record holds nothing to draw (a run without probes, a net
without ReLU or tanh layers). Figures are bare `matplotlib.figure.Figure`s
drawn by the Agg canvas: no pyplot state, no display, safe headless.

Colours follow depth: per-layer lines go from dark (input side) to light
(output side) along viridis, so "vanishing with depth" reads as a fan.
Reference lines come from the diagnosis thresholds themselves, so the plot and
the finding can never disagree about what is healthy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from babysit.diagnose import layer_rules

WIDTH = 10.0  # inches; at the report's 100 dpi, the page's 1000-pixel column
# Points a line keeps per pixel column of its panel, about: a table trained for 100,000 epochs drew every one
# (seconds of CPU in a budgeted report) on a panel 450 pixels wide. Each bucket keeps its lowest and highest
# value, so a one-epoch spike still shows. Markers are drawn only on lines this short or shorter.
BUCKETS = 500
MARKERS_UP_TO = 200


def text(label: Any) -> str:
    """A user string safe for matplotlib: '$' would start mathtext (and can fail to parse)."""
    return str(label).replace("$", r"\$")


def finite(values: Sequence[Any]) -> list[float]:
    """`values` as floats with NaN for anything missing or not finite (matplotlib leaves gaps there)."""
    out = []
    for v in values:
        x = float(v) if isinstance(v, (int, float)) or (isinstance(v, str) and v.lower() in ("nan", "inf", "-inf", "infinity", "-infinity")) else math.nan
        out.append(x if math.isfinite(x) else math.nan)
    return out


def thin(xs: Sequence[Any], ys: Sequence[float], buckets: int = BUCKETS) -> tuple[list[Any], list[float]]:
    """At most about 2 x `buckets` of the points (xs, ys), in order: each bucket of neighbours keeps its lowest and highest value.

    A bucket with no finite value keeps one NaN point, so a gap in the line stays a gap.
    """
    n = len(xs)
    if n <= 2 * buckets:
        return list(xs), list(ys)
    keep: list[int] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        seen = [i for i in range(lo, hi) if math.isfinite(ys[i])]
        if not seen:
            keep.append(lo)
            continue
        low, high = min(seen, key=ys.__getitem__), max(seen, key=ys.__getitem__)
        keep += sorted({low, high})
    return [xs[i] for i in keep], [ys[i] for i in keep]


def _style(marker: str, n: int) -> str:
    """`marker` with a line for short series, a bare line for long ones (markers would merge into a band)."""
    return f"{marker}-" if n <= MARKERS_UP_TO else "-"


def depth_colours(n: int) -> list[Any]:
    """`n` colours from dark (first layer) to light (last layer)."""
    cmap = colormaps["viridis"]
    return [cmap(0.05 + 0.85 * i / max(1, n - 1)) for i in range(n)]


def _log_scale_if_wide(ax: Any, values: list[float], axis: str = "y", span: float = 100.0) -> None:
    """Log axis when the positive values span more than `span`x (an explosion would flatten the rest)."""
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    if pos and max(pos) / min(pos) > span:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def learning_curves(metrics: list[dict[str, Any]], best_epoch: int | None = None) -> Figure | None:
    """Loss and accuracy per epoch, train vs validation, side by side (docs/lectures.md §7).

    Args:
        metrics: metrics.jsonl records ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy").
        best_epoch: marked with a dotted line (the epoch best.pt holds).
    """
    if not metrics:
        return None
    epochs = [m.get("epoch", i + 1) for i, m in enumerate(metrics)]
    fig = Figure(figsize=(WIDTH, 3.6))
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, key, label in ((loss_ax, "loss", "loss (cross-entropy)"), (acc_ax, "accuracy", "accuracy")):
        train, val = finite([m.get(f"train_{key}") for m in metrics]), finite([m.get(f"val_{key}") for m in metrics])
        for marker, colour, line, values in (("o", "C0", "train", train), ("s", "C1", "validation", val)):
            x, y = thin(epochs, values)
            ax.plot(x, y, _style(marker, len(x)), color=colour, ms=3, label=line)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.4", ls=":", lw=1, label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if key == "loss":
            _log_scale_if_wide(ax, train + val)
        else:
            ax.set_ylim(0, 1.02)
    acc_ax.legend(fontsize=8, loc="lower right")
    loss_ax.set_title("loss: flat = lr too low, explodes = too high")
    acc_ax.set_title("accuracy: a big train/val gap = overfitting")
    fig.tight_layout()
    return fig


def _probed_layers(probes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(name, type) of the activation layers of the probes, in module order (all layers when none is an activation)."""
    seen: dict[str, str] = {}
    for p in probes:
        for name, stats in layer_rules.activation_layers(p.get("layers") or {}).items():
            seen.setdefault(name, str(stats.get("type", "")))
    return list(seen.items())


def _spread(items: Sequence[Any], k: int) -> list[Any]:
    """At most `k` items evenly spread over `items`, always keeping the first and the last."""
    if len(items) <= k:
        return list(items)
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def activation_histograms(probes: list[dict[str, Any]], max_layers: int = 8, max_steps: int = 4) -> Figure | None:
    """Per-layer activation histograms over time: one column per layer, one row per probed step.

    The lectures' activation-statistics figure (docs/lectures.md §3) at a few
    moments of training: the first probe (initialisation), the last, and
    evenly spaced ones between; each cell notes the layer's std.
    """
    layers = _spread(_probed_layers(probes), max_layers)
    steps = _spread([p for p in probes if p.get("layers")], max_steps)
    if not layers or not steps:
        return None
    fig = Figure(figsize=(min(WIDTH, 1.0 + 2.2 * len(layers)), 1.3 * len(steps) + 0.6))
    axes = fig.subplots(len(steps), len(layers), squeeze=False)
    for r, probe in enumerate(steps):
        for c, (name, kind) in enumerate(layers):
            ax = axes[r][c]
            stats = (probe.get("layers") or {}).get(name)
            ax.tick_params(labelsize=6, length=2)
            ax.set_yticks([])
            if r == 0:
                ax.set_title(text(f"{name} ({kind})"), fontsize=8)
            if c == 0:
                ax.set_ylabel(f"step {probe.get('step')}", fontsize=8)
            edges, counts = finite((stats or {}).get("hist_edges", [])), (stats or {}).get("hist_counts", [])
            total = sum(counts) if counts else 0
            if not stats or total == 0 or len(edges) != len(counts) + 1 or any(math.isnan(e) for e in edges):
                ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=7, color="0.5", transform=ax.transAxes)
                ax.set_xticks([])
                continue
            widths = [b - a for a, b in zip(edges, edges[1:])]
            ax.bar(edges[:-1], [n / total for n in counts], width=widths, align="edge", color=depth_colours(len(layers))[c], lw=0)
            ax.text(0.5, 0.95, f"std {stats.get('act_std', math.nan):.2g}", ha="center", va="top", fontsize=7, transform=ax.transAxes,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
            ax.set_xticks([edges[0], edges[-1]])
            ax.set_xticklabels([f"{edges[0]:.2g}", f"{edges[-1]:.2g}"])
    fig.tight_layout(h_pad=0.4, w_pad=0.3)
    return fig


def _per_step(probes: list[dict[str, Any]], part: str, value: Any) -> dict[str, tuple[list[int], list[float]]]:
    """name -> (steps, values) of `value(stats)` over the probes' `part` ("layers"/"params"), None skipped."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for p in probes:
        for name, stats in (p.get(part) or {}).items():
            v = value(name, stats)
            if v is not None:
                steps, values = series.setdefault(name, ([], []))
                steps.append(int(p.get("step", 0)))
                values.append(finite([v])[0])
    return series


def _lines(ax: Any, series: dict[str, tuple[list[int], list[float]]], log: bool | None = True) -> None:
    """One line per layer, coloured by depth, against the step (log-x: the default probes are dense early).

    `log`: True for a log y-axis, False for linear, None for log only when the values span over 10x.
    """
    for colour, (name, (steps, values)) in zip(depth_colours(len(series)), series.items()):
        x, y = thin(steps, values)
        ax.plot(x, y, _style("o", len(x)), ms=2.5, lw=1.2, color=colour, label=text(name))
    if log:
        ax.set_yscale("log")
    elif log is None:
        _log_scale_if_wide(ax, [v for _, values in series.values() for v in values], span=10.0)
        if ax.get_yscale() == "linear":
            ax.set_ylim(bottom=0)  # from 0: a steady std reads as steady, not as noise around its value
    if any(s > 0 for steps, _ in series.values() for s in steps):
        ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=1 + len(series) // 8, loc="center left", bbox_to_anchor=(1.01, 0.5))


def activation_std(probes: list[dict[str, Any]]) -> Figure | None:
    """The std of each activation layer over training, log scale: a fan that closes or opens with depth is the problem."""
    layers = dict(_probed_layers(probes))
    series = _per_step(probes, "layers", lambda n, s: s.get("act_std") if n in layers and (s.get("act_std") or 0) > 0 else None)
    if not series:
        return None
    fig = Figure(figsize=(WIDTH, 3.4))
    ax = fig.subplots()
    _lines(ax, series, log=None)
    ax.set_ylabel("activation std")
    ax.set_title("activation std per layer (docs/lectures.md §3: about constant across layers)")
    fig.tight_layout()
    return fig


def _is_weight(name: str) -> bool:
    """Weight tensors only (biases start at 0; their ratios say nothing)."""
    return not layer_rules.is_bias(name)


def update_ratios(probes: list[dict[str, Any]]) -> Figure | None:
    """||ΔW||/||W|| per weight tensor over training, on a log axis, with 1e-3 and the band the diagnosis accepts."""
    series = _per_step(probes, "params", lambda n, s: s.get("update_ratio") if _is_weight(n) and (s.get("update_ratio") or 0) > 0 else None)
    if not series:
        return None
    fig = Figure(figsize=(WIDTH, 3.6))
    ax = fig.subplots()
    ax.axhspan(layer_rules.UPDATE_LOW_WARN, layer_rules.UPDATE_HIGH_WARN, color="C2", alpha=0.10, lw=0)
    ax.axhline(1e-3, color="C2", ls="--", lw=1.5)
    _lines(ax, series)
    ax.text(0.01, 0.02, f"shaded: {layer_rules.UPDATE_LOW_WARN:g} to {layer_rules.UPDATE_HIGH_WARN:g}, where the diagnosis stays silent; dashed: 1e-3",
            transform=ax.transAxes, fontsize=7, color="0.3")
    ax.set_ylabel("update / weight  ||ΔW|| / ||W||")
    ax.set_title("update/weight ratio per layer (docs/lectures.md §7: about 1e-3)")
    fig.tight_layout()
    return fig


def relative_gradients(probes: list[dict[str, Any]]) -> Figure | None:
    """||∇W||/||W|| per weight tensor over training, log axis: the gradient flow from output to input layer."""

    def rel(name: str, s: dict[str, Any]) -> float | None:
        g, w = s.get("grad_norm"), s.get("weight_norm")
        ok = _is_weight(name) and isinstance(g, (int, float)) and isinstance(w, (int, float)) and w > 0 and g > 0
        return g / w if ok else None

    series = _per_step(probes, "params", rel)
    if not series:
        return None
    fig = Figure(figsize=(WIDTH, 3.4))
    ax = fig.subplots()
    _lines(ax, series)
    ax.set_ylabel("||∇W|| / ||W||")
    ax.set_title("relative gradient per layer (docs/lectures.md §3: gradients shrink or grow with the activations)")
    fig.tight_layout()
    return fig


def unit_health(probes: list[dict[str, Any]]) -> Figure | None:
    """Dead-ReLU and saturated tanh/sigmoid fractions per layer over training, with the diagnosis thresholds."""
    panels = [
        ("dead_fraction", "dead ReLU units (never active on the batch)", layer_rules.DEAD_WARN, layer_rules.DEAD_ERROR),
        ("saturated_fraction", "saturated tanh/sigmoid outputs", layer_rules.SATURATED_WARN, layer_rules.SATURATED_ERROR),
    ]
    drawn = []
    for key, title, warn, error in panels:
        series = _per_step(probes, "layers", lambda n, s, k=key: s.get(k))
        if series:
            drawn.append((key, title, warn, error, series))
    if not drawn:
        return None
    fig = Figure(figsize=(WIDTH, 3.2 * len(drawn)))
    axes = fig.subplots(len(drawn), 1, squeeze=False)
    for ax, (_, title, warn, error, series) in zip((a[0] for a in axes), drawn):
        ax.axhline(warn, color="C1", ls="--", lw=1)
        ax.axhline(error, color="C3", ls="--", lw=1)
        _lines(ax, series, log=False)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("fraction")
        ax.set_title(f"{title}; dashed: warning {warn:.0%}, error {error:.0%}", fontsize=10)
    fig.tight_layout()
    return fig


def confusion(matrix: list[list[int]], class_names: Sequence[str]) -> Figure:
    """Row-normalised confusion matrix (true class down, predicted across), with the counts written in.

    Args:
        matrix: C x C counts, matrix[true][predicted].
        class_names: the C names, in label order.
    """
    n = len(class_names)
    size = min(7.0, 1.8 + 0.3 * n)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.subplots()
    rows = [[c / max(1, sum(row)) for c in row] for row in matrix]
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    labels = [text(name)[:18] for name in class_names]
    ax.set_xticks(range(n), labels, rotation=90 if max(map(len, labels), default=0) > 3 else 0, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    if n <= 20:
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=6, color="white" if rows[i][j] > 0.5 else "0.2")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    return fig
