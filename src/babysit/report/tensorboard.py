"""Any run record as TensorBoard event files: `export_tensorboard(run_dir) -> out_dir`.

    babysit export tensorboard runs/digits-mlp-20240501-120000
    tensorboard --logdir runs/digits-mlp-20240501-120000/tensorboard

What is written (x axis: the optimiser step, the same count as the record's `step`):

    loss/train, loss/val, accuracy/train, accuracy/val, lr    one point per epoch (metrics.jsonl)
    loss/test, accuracy/test                                   one point at the last step (summary.json)
    activations/<layer>                                        histogram per probed step (probes.jsonl)
    act_std/<layer>, dead_fraction/<layer>, saturated_fraction/<layer>
    grad_norm/<param>, weight_norm/<param>, update_ratio/<param>

The probes keep a fixed-bin histogram of up to 2,048 sampled values per layer,
not the values themselves, so the histograms go in as TensorBoard's raw
histogram (bucket right edges and counts); its sum and sum of squares are
rebuilt from the layer's mean and std over the sampled count, which is what
TensorBoard uses only for its summary statistics. Update ratios that are NaN
(a tensor with zero norm, e.g. a bias at its zero initialisation) are left out;
a non-finite loss is written as it is, so a diverged run shows where it broke.

Needs the `tensorboard` package (`pip install babysit[tensorboard]`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from babysit.errors import ConfigError
from babysit.train.record import RunRecord, load_run

# metrics.jsonl keys -> TensorBoard tags; the split is the tag's last part so the
# train and val curves of one quantity land in the same TensorBoard section.
SCALAR_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/val",
    "lr": "lr",
}
SUMMARY_TAGS = {"test_loss": "loss/test", "test_accuracy": "accuracy/test"}
LAYER_SCALARS = ("act_std", "dead_fraction", "saturated_fraction")
PARAM_SCALARS = ("grad_norm", "weight_norm", "update_ratio")
NOT_PLOTTED = {"epoch", "step", "seconds"}


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("exporting to TensorBoard needs the tensorboard package: pip install 'babysit[tensorboard]'") from None
    return SummaryWriter


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def write_metrics(writer: Any, metrics: list[dict[str, Any]], summary: dict[str, Any] | None) -> int:
    """Epoch scalars of metrics.jsonl (and the test metrics of summary.json); returns the points written."""
    n = 0
    for record in metrics:
        for key, value in record.items():
            if key in NOT_PLOTTED or not isinstance(value, (int, float)):
                continue
            writer.add_scalar(SCALAR_TAGS.get(key, f"metrics/{key}"), value, record["step"])
            n += 1
    if summary and metrics:
        for key, tag in SUMMARY_TAGS.items():
            if isinstance(summary.get(key), (int, float)):
                writer.add_scalar(tag, summary[key], metrics[-1]["step"])
                n += 1
    return n


def write_histogram(writer: Any, tag: str, stats: dict[str, Any], step: int) -> bool:
    """One probe histogram (`hist_edges`, `hist_counts`) as a raw TensorBoard histogram; False if empty."""
    edges, counts = stats.get("hist_edges"), stats.get("hist_counts")
    num = sum(counts) if counts else 0
    if not num or not all(_finite(e) for e in edges):
        return False  # a non-finite output range: the probe counted nothing
    mean = stats.get("act_mean", 0.0)
    std = stats.get("act_std", 0.0)
    mean, std = (mean, std) if _finite(mean) and _finite(std) else (0.0, 0.0)
    writer.add_histogram_raw(
        tag,
        min=edges[0],
        max=edges[-1],
        num=num,
        sum=mean * num,
        sum_squares=(std**2 + mean**2) * num,
        bucket_limits=list(edges[1:]),
        bucket_counts=list(counts),
        global_step=step,
    )
    return True


def write_probes(writer: Any, probes: list[dict[str, Any]]) -> tuple[int, int]:
    """Per-layer histograms and scalars, per-parameter norms and ratios; returns (histograms, scalars)."""
    hists = scalars = 0
    for probe in probes:
        step = probe["step"]
        for name, stats in probe.get("layers", {}).items():
            hists += write_histogram(writer, f"activations/{name}", stats, step)
            for key in LAYER_SCALARS:
                if _finite(stats.get(key)):
                    writer.add_scalar(f"{key}/{name}", stats[key], step)
                    scalars += 1
        for name, stats in probe.get("params", {}).items():
            for key in PARAM_SCALARS:
                if _finite(stats.get(key)):
                    writer.add_scalar(f"{key}/{name}", stats[key], step)
                    scalars += 1
    return hists, scalars


def export_tensorboard(run: str | Path | RunRecord, out: str | Path | None = None) -> Path:
    """Write a run record's metrics and probes as TensorBoard event files; returns the folder.

    Args:
        run: a run folder (runs/<name>/) or a `RunRecord` from `babysit.load_run`.
        out: the folder for the event files (default: RUN_DIR/tensorboard). View it with
            `tensorboard --logdir OUT`; several runs' folders under one parent compare side by side.

    Example:
        >>> path = export_tensorboard("runs/digits-mlp-20240501-120000")   # doctest: +SKIP
    """
    record = run if isinstance(run, RunRecord) else load_run(run)
    out_dir = Path(out) if out is not None else record.path / "tensorboard"
    SummaryWriter = _summary_writer()
    writer = SummaryWriter(log_dir=str(out_dir))
    try:
        write_metrics(writer, record.metrics, record.summary)
        write_probes(writer, record.probes)
    finally:
        writer.close()
    return out_dir
