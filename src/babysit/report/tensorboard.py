"""A run record as TensorBoard event files: after the run (`export_tensorboard`) or while it trains (`LiveTensorBoard`).

    babysit export tensorboard runs/digits-mlp-20240501-120000
    babysit train --data digits --model mlp --tensorboard        # the same events, written as the run goes
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

Live (`--tensorboard`, `bs.record(..., tensorboard=True)`, the Lightning callback's
`tensorboard=True`), the same tags are written as each probe and epoch arrives, and
the diagnosis runs over what is recorded so far at each epoch end: a finding is
written as text (`findings/<id>`, TensorBoard's Text tab) at the step where it first
fires, and again if it grows worse; at the end, the run's status and its whole
ranked diagnosis (`diagnosis`). The file is flushed at each epoch end, so
TensorBoard shows an epoch as soon as it ends.

Needs the `tensorboard` package (`pip install babysit[tensorboard]`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from babysit.diagnose.findings import SEVERITIES, Finding
from babysit.diagnose.record import RunView
from babysit.diagnose.rules import diagnose
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


def histogram_value(tag: str, stats: dict[str, Any]) -> Any:
    """One probe histogram (`hist_edges`, `hist_counts`) as a raw TensorBoard histogram value; None if empty."""
    from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

    edges, counts = stats.get("hist_edges"), stats.get("hist_counts")
    num = sum(counts) if counts else 0
    if not num or not (_finite(edges[0]) and _finite(edges[-1])):
        return None  # a non-finite output range (the edges are evenly spaced between these two): the probe counted nothing
    mean = stats.get("act_mean", 0.0)
    std = stats.get("act_std", 0.0)
    mean, std = (mean, std) if _finite(mean) and _finite(std) else (0.0, 0.0)
    histogram = HistogramProto(min=edges[0], max=edges[-1], num=num, sum=mean * num, sum_squares=(std**2 + mean**2) * num,
                               bucket_limit=edges[1:], bucket=counts)  # fmt: skip
    return Summary.Value(tag=tag, histo=histogram)


def write_probes(writer: Any, probes: list[dict[str, Any]]) -> tuple[int, int]:
    """Per-layer histograms and scalars, per-parameter norms and ratios; returns (histograms, scalars).

    Each probed step goes in as one summary holding all its values (one event, not one per
    value): about half the cost of `add_scalar` per value (0.3 ms instead of 0.6 per probed step
    of bench_probes' convnet), which matters when every step is probed.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    hists = scalars = 0
    for probe in probes:
        histograms, values = [], []
        for name, stats in probe.get("layers", {}).items():
            hist = histogram_value(f"activations/{name}", stats)
            histograms += [hist] if hist is not None else []
            values += [Summary.Value(tag=f"{key}/{name}", simple_value=stats[key]) for key in LAYER_SCALARS if _finite(stats.get(key))]
        for name, stats in probe.get("params", {}).items():
            values += [Summary.Value(tag=f"{key}/{name}", simple_value=stats[key]) for key in PARAM_SCALARS if _finite(stats.get(key))]
        hists, scalars = hists + len(histograms), scalars + len(values)
        if histograms or values:
            writer.file_writer.add_summary(Summary(value=histograms + values), probe["step"])
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
    if any(out_dir.glob("events.out.tfevents.*")):
        raise ConfigError(
            f"'{out_dir}' already holds TensorBoard events (a run trained with --tensorboard writes them live): "
            f"view them with `tensorboard --logdir {out_dir}`, or export to another folder with --out"
        )
    SummaryWriter = _summary_writer()
    writer = SummaryWriter(log_dir=str(out_dir))
    try:
        write_metrics(writer, record.metrics, record.summary)
        write_probes(writer, record.probes)
    finally:
        writer.close()
    return out_dir


def finding_text(f: Finding) -> str:
    """One finding as TensorBoard's Text tab shows it (markdown): severity, id, phase, title, fix."""
    return f"**{f.severity}** `{f.rule}` ({f.phase}): {f.title}  \nfix: {f.fix}"


class LiveTensorBoard:
    """Writes a run's TensorBoard events while it trains; a `fit` callback and the sink of the probes and the program observer.

    `babysit train --tensorboard`, `bs.record(..., tensorboard=True)` and the
    Lightning callback build one; in `fit` pass it as a callback and give its `probe`
    to the watch: `bs.watch(sink=live.probe)`.

    Args:
        log_dir: the folder for the event files (a run's is RUN_DIR/tensorboard).
        findings: run the diagnosis at each epoch end and write each finding as it fires.
        run_dir: the run record being written beside (if any): the diagnosis written at the end
            is the record's, over all its probes (the live one reads the first and the latest).
        purge_step: a resumed run's first step: TensorBoard drops what an earlier writer put at or after it.
    """

    def __init__(self, log_dir: str | Path, *, findings: bool = True, run_dir: str | Path | None = None, purge_step: int | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writer = _summary_writer()(log_dir=str(self.log_dir), purge_step=purge_step)
        self.diagnose_live = findings
        self.metrics: list[dict[str, Any]] = []
        self.written: dict[str, int] = {}  # finding id -> the worst severity written so far (index in SEVERITIES)
        self._first: dict[str, Any] | None = None  # the first probe: the initialisation, which the layer rules compare with
        self._recent: list[dict[str, Any]] = []  # the probes since the last epoch's diagnosis
        self._program: dict[str, Any] | None = None
        self._closed = False

    # -- sinks ----------------------------------------------------------------------------------

    def probe(self, record: dict[str, Any]) -> None:
        """One probed step (a `babysit.watch` record): histograms and scalars at its step."""
        if self._closed:
            return
        write_probes(self.writer, [record])
        if self._first is None:
            self._first = record
        else:
            self._recent.append(record)

    def program(self, facts: dict[str, Any]) -> None:
        """The program observer's facts so far (its sink): the live diagnosis reads them."""
        self._program = facts

    def event(self, step: int, event: str, detail: str = "") -> None:
        """An event of the run as it happens (a divergence the guard saw), as text, written out at once."""
        if self._closed:
            return
        self.writer.add_text("events", f"**{event}** at step {step}" + (f": {detail}" if detail else ""), step)
        self.writer.flush()

    def epoch(self, record: dict[str, Any]) -> list[Finding]:
        """One epoch's metrics (a metrics.jsonl line); then the findings that fired since the last epoch, written and returned."""
        if self._closed:
            return []
        write_metrics(self.writer, [record], None)
        self.metrics.append(record)
        fired = self._new_findings(record["step"]) if self.diagnose_live else []
        self.writer.flush()
        return fired

    def _new_findings(self, step: int) -> list[Finding]:
        # The first probe and the recent ones: a fault of the initialisation is told apart from one that
        # appeared in training, and each epoch costs the same however long the run.
        probes = ([self._first] if self._first is not None else []) + self._recent
        self._recent = []
        fired = []
        for f in diagnose(RunView(metrics=list(self.metrics), probes=probes, program=self._program)):
            worst = SEVERITIES.index(f.severity)
            if worst < self.written.get(f.rule, len(SEVERITIES)):
                self.written[f.rule] = worst
                self.writer.add_text(f"findings/{f.rule}", finding_text(f), step)
                fired.append(f)
        return fired

    def finish(self, status: str, steps: int, summary: dict[str, Any] | None = None, findings: list[Finding] | None = None) -> None:
        """Write the test metrics, the ending status and the run's whole diagnosis, then close the file (safe to call twice)."""
        if self._closed:
            return
        if summary:
            for key, tag in SUMMARY_TAGS.items():
                if isinstance(summary.get(key), (int, float)):
                    self.writer.add_scalar(tag, summary[key], steps)
        reason = (summary or {}).get("stop_reason") or ""
        self.writer.add_text("status", f"**{status}** at step {steps}" + (f": {reason}" if reason else ""), steps)
        if findings is not None:
            text = "  \n".join(f"{i + 1}. {finding_text(f)}" for i, f in enumerate(findings)) or "no findings"
            self.writer.add_text("diagnosis", text, steps)
        self._closed = True
        try:
            self.writer.close()
        except OSError:
            pass  # a full disk: the run's own error (or record) is what matters; the events so far stay readable

    # -- fit callback ---------------------------------------------------------------------------

    def on_epoch_end(self, state) -> None:
        self.epoch(state.history.records[-1])

    def final_findings(self, summary: dict[str, Any]) -> list[Finding]:
        """The run's whole diagnosis: of the run record when there is one (call after it is finished), else of what was seen live."""
        if self.run_dir is not None and (self.run_dir / "config.json").is_file():
            return diagnose(load_run(self.run_dir))
        probes = ([self._first] if self._first is not None else []) + self._recent
        return diagnose(RunView(metrics=list(self.metrics), probes=probes, program=self._program, summary=summary))

    def on_fit_end(self, state) -> None:
        summary = state.result.summary()
        self.finish(state.result.status, state.step, summary, self.final_findings(summary) if self.diagnose_live else None)

    def __repr__(self) -> str:
        return f"LiveTensorBoard({str(self.log_dir)!r}, findings={self.diagnose_live}, epochs={len(self.metrics)})"
