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
TensorBoard shows an epoch as soon as it ends. The events are built, diagnosed and
written by a thread of their own (`LiveTensorBoard`): the training thread only hands
over the numbers the probes already made.

Needs the `tensorboard` package (`pip install babysit[tensorboard]`).
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import warnings
from collections.abc import Callable
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


def _event_file(log_dir: Path, purge_step: int | None = None) -> Any:
    """A new `report.event_file.EventFile` (which needs the tensorboard package: a clear error without it)."""
    from babysit.report.event_file import EventFile

    return EventFile(log_dir, purge_step=purge_step)


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
            writer.add_summary(Summary(value=histograms + values), probe["step"])
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
    writer = _event_file(out_dir)
    try:
        write_metrics(writer, record.metrics, record.summary)
        write_probes(writer, record.probes)
    finally:
        writer.close()
    return out_dir


def finding_text(f: Finding) -> str:
    """One finding as TensorBoard's Text tab shows it (markdown): severity, id, phase, title, fix."""
    return f"**{f.severity}** `{f.rule}` ({f.phase}): {f.title}  \nfix: {f.fix}"


# A writer thread's task: a write and its arguments, an event to set once all before it are done, or None (the end).
_Task = tuple[Callable[..., Any], tuple[Any, ...]] | threading.Event | None
QUEUE_SIZE = 1024  # probed steps waiting for the writer thread; a probe beyond them is left out of the live events (counted)
# Probes that gather before the writer wakes: one wake (and the thread switches it brings to the training
# thread) per batch, not per probe. An epoch end, an event and the end wake it at once.
BATCH = 16
WAIT_SECONDS = 60.0  # the longest the training thread waits for the writer (an epoch end, the end) before going on without it


class LiveTensorBoard:
    """Writes a run's TensorBoard events while it trains; a `fit` callback and the sink of the probes and the program observer.

    `babysit train --tensorboard`, `bs.record(..., tensorboard=True)` and the
    Lightning callback build one; in `fit` pass it as a callback and give its `probe`
    to the watch: `bs.watch(sink=live.probe)`.

    The training thread only hands each probe record and epoch line (plain numbers and
    lists, as the probes made them) to a queue; one writer thread, woken once per 16
    probes and at once at an epoch end, builds the events, runs the live diagnosis and
    writes (`report.event_file`), in the order they were handed over. At each epoch end
    and each run event the training thread waits until the writer has written and
    flushed everything so far, so TensorBoard shows an epoch as soon as it ends. If the
    writer falls behind by `queue_size` probed steps, the next ones are left out of the
    live events and counted (`dropped`; the status text at the end says how many;
    probes.jsonl holds them all). If writing fails (`error`), or the writer does not
    answer within 60 s, the live events stop there with a warning naming the cause;
    training goes on.

    Args:
        log_dir: the folder for the event files (a run's is RUN_DIR/tensorboard).
        findings: run the diagnosis at each epoch end and write each finding as it fires.
        run_dir: the run record being written beside (if any): the diagnosis written at the end
            is the record's, over all its probes (the live one reads the first and the latest).
        purge_step: a resumed run's first step: TensorBoard drops what an earlier writer put at or after it.
        queue_size: probed steps the writer may be behind before one is left out.
    """

    def __init__(
        self, log_dir: str | Path, *, findings: bool = True, run_dir: str | Path | None = None, purge_step: int | None = None, queue_size: int = QUEUE_SIZE
    ) -> None:
        if queue_size < 1:
            raise ConfigError(f"queue_size={queue_size} must be at least 1 (the probed steps the TensorBoard writer may be behind)")
        self.log_dir = Path(log_dir)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writer = _event_file(self.log_dir, purge_step)
        self.diagnose_live = findings
        self.dropped = 0  # probed steps left out of the live events: the writer was queue_size behind
        self.error: BaseException | None = None  # what stopped the writer, if anything
        # The writer thread's own state: only it reads and writes these while the run goes.
        self.metrics: list[dict[str, Any]] = []
        self.written: dict[str, int] = {}  # finding id -> the worst severity written so far (index in SEVERITIES)
        self._first: dict[str, Any] | None = None  # the first probe: the initialisation, which the layer rules compare with
        self._recent: list[dict[str, Any]] = []  # the probes since the last epoch's diagnosis
        self._fired: list[Finding] = []  # the findings the last epoch's diagnosis wrote
        self._program: dict[str, Any] | None = None  # set by the training thread (one assignment), read at each diagnosis
        self._step = 0  # the last step handed over (for the warnings)
        self._stopped = False  # the live events stopped early (an error, or a writer that did not answer): nothing more is handed over
        self._closed = False
        self._queue_size = queue_size
        self._batch = min(BATCH, queue_size)
        self._tasks: collections.deque[_Task] = collections.deque()  # appended by the training thread, taken by the writer
        self._wake_up = threading.Condition()
        self._urgent = False  # a task that must not wait for a batch (set and read under _wake_up)
        self._thread = threading.Thread(target=self._work, name=f"babysit-tensorboard:{self.log_dir.name}", daemon=True)
        self._thread.start()

    # -- sinks (the training thread) --------------------------------------------------------------

    def probe(self, record: dict[str, Any]) -> None:
        """One probed step (a `babysit.watch` record): histograms and scalars at its step, handed to the writer."""
        if self._closed or self._halted():
            return
        self._step = record.get("step", self._step)
        if len(self._tasks) >= self._queue_size:  # the writer is queue_size behind: leave this one out rather than slow training
            self.dropped += 1
            return
        self._tasks.append((self._write_probe, (record,)))
        if len(self._tasks) >= self._batch:
            self._wake(urgent=False)

    def program(self, facts: dict[str, Any]) -> None:
        """The program observer's facts so far (its sink): the live diagnosis reads them."""
        self._program = facts

    def event(self, step: int, event: str, detail: str = "") -> None:
        """An event of the run as it happens (a divergence the guard saw), as text, written out at once."""
        if self._closed or self._halted():
            return
        self._step = step
        self._hand(self._write_text, "events", f"**{event}** at step {step}" + (f": {detail}" if detail else ""), step)
        self._wait()

    def epoch(self, record: dict[str, Any]) -> list[Finding]:
        """One epoch's metrics (a metrics.jsonl line); then the findings that fired since the last epoch, written and returned.

        Waits until the writer has written and flushed everything handed to it so far.
        """
        if self._closed or self._halted():
            return []
        self._step = record.get("step", self._step)
        self._hand(self._write_epoch, record)
        return list(self._fired) if self._wait() else []

    def finish(self, status: str, steps: int, summary: dict[str, Any] | None = None, findings: list[Finding] | None = None) -> None:
        """Write the test metrics, the ending status and the run's whole diagnosis, close the file and end the writer (safe to call twice).

        A writer that failed or fell behind is told here as a warning, if it was not before.
        """
        if self._closed:
            return
        self._closed = True
        if not self._halted():
            self._hand(self._write_end, status, steps, summary, findings)
        self._put(None)
        self._thread.join(WAIT_SECONDS if not self._stopped else 1.0)  # a writer already stopped for not answering is not waited for again
        if self._thread.is_alive() and not self._stopped:
            self._stop(f"the writer did not finish within {WAIT_SECONDS:g} s")
        self._halted()  # a failure in the last writes is told now
        if self.dropped and not self._stopped:
            warnings.warn(f"live TensorBoard events in '{self.log_dir}': {self.dropped} probed steps were left out, the writer fell "
                          f"{self._queue_size} behind (the status text says so; the run record's probes.jsonl holds them all)",
                          RuntimeWarning, stacklevel=2)  # fmt: skip

    # -- handing over ---------------------------------------------------------------------------

    def _wake(self, urgent: bool) -> None:
        with self._wake_up:
            self._urgent = self._urgent or urgent
            self._wake_up.notify()

    def _put(self, task: _Task) -> None:
        """Hand over a task that is never left out (an epoch, an event, the end; few, so past the probes' bound), and wake the writer."""
        self._tasks.append(task)
        self._wake(urgent=True)

    def _hand(self, write: Callable[..., Any], *args: Any) -> None:
        self._put((write, args))

    def _wait(self) -> bool:
        """Wait until the writer has done everything handed to it so far (at most WAIT_SECONDS); False if it has not."""
        done = threading.Event()
        self._put(done)
        if not done.wait(WAIT_SECONDS):
            self._stop(f"the writer did not answer for {WAIT_SECONDS:g} s")
            return False
        return not self._halted()

    def _halted(self) -> bool:
        """Whether the live events have stopped; the first time a writer error is seen, it is told as a warning."""
        if self.error is not None and not self._stopped:
            self._stop(f"writing failed: {type(self.error).__name__}: {self.error}")
        return self._stopped

    def _stop(self, why: str) -> None:
        """Hand nothing more over, and say so: where the events stop, why, and where the rest is."""
        self._stopped = True
        rest = (f"the run record holds everything: `babysit export tensorboard {self.run_dir} --out DIR` writes it all as events" if self.run_dir
                else "what came after is not in these events")  # fmt: skip
        warnings.warn(f"live TensorBoard events in '{self.log_dir}' stopped near step {self._step}: {why}; {rest}", RuntimeWarning, stacklevel=3)

    # -- the writer thread ----------------------------------------------------------------------

    def _work(self) -> None:
        """Run the handed tasks in order, all that are there at each wake, until the end marker."""
        while True:
            with self._wake_up:
                self._wake_up.wait_for(lambda: self._urgent or len(self._tasks) >= self._batch)
                self._urgent = False
            while self._tasks:
                task = self._tasks.popleft()
                if task is None:
                    if self.error is not None:
                        with contextlib.suppress(Exception):  # already told; the events so far stay readable
                            self.writer.close()
                    return
                self._run(task)

    def _run(self, task: _Task) -> None:
        """One task; after an error nothing more is written, and those waiting are still released."""
        if isinstance(task, threading.Event):  # someone waits until everything before it is done
            task.set()
        elif self.error is None:
            write, args = task
            try:
                write(*args)
            except Exception as error:  # told to the training thread (and so the user) at its next hand-over
                self.error = error

    def _write_probe(self, record: dict[str, Any]) -> None:
        write_probes(self.writer, [record])
        if self._first is None:
            self._first = record
        else:
            self._recent.append(record)

    def _write_text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)
        self.writer.flush()

    def _write_epoch(self, record: dict[str, Any]) -> None:
        write_metrics(self.writer, [record], None)
        self.metrics.append(record)
        self._fired = self._new_findings(record["step"]) if self.diagnose_live else []
        self.writer.flush()

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

    def _write_end(self, status: str, steps: int, summary: dict[str, Any] | None, findings: list[Finding] | None) -> None:
        if summary:
            for key, tag in SUMMARY_TAGS.items():
                if isinstance(summary.get(key), (int, float)):
                    self.writer.add_scalar(tag, summary[key], steps)
        reason = (summary or {}).get("stop_reason") or ""
        left_out = f" ({self.dropped} probed steps left out of these events: the writer fell behind; the run record's probes.jsonl holds them)"
        self.writer.add_text("status", f"**{status}** at step {steps}" + (f": {reason}" if reason else "") + (left_out if self.dropped else ""), steps)
        if findings is not None:
            text = "  \n".join(f"{i + 1}. {finding_text(f)}" for i, f in enumerate(findings)) or "no findings"
            self.writer.add_text("diagnosis", text, steps)
        self.writer.close()

    # -- fit callback ---------------------------------------------------------------------------

    def on_epoch_end(self, state) -> None:
        self.epoch(state.history.records[-1])

    def final_findings(self, summary: dict[str, Any]) -> list[Finding]:
        """The run's whole diagnosis: of the run record when there is one (call after it is finished), else of what was seen live."""
        if self.run_dir is not None and (self.run_dir / "config.json").is_file():
            return diagnose(load_run(self.run_dir))
        if not self._closed and not self._halted():
            self._wait()  # the writer has taken in every probe handed to it
        probes = ([self._first] if self._first is not None else []) + self._recent
        return diagnose(RunView(metrics=list(self.metrics), probes=probes, program=self._program, summary=summary))

    def on_fit_end(self, state) -> None:
        summary = state.result.summary()
        self.finish(state.result.status, state.step, summary, self.final_findings(summary) if self.diagnose_live else None)

    def __repr__(self) -> str:
        return f"LiveTensorBoard({str(self.log_dir)!r}, findings={self.diagnose_live}, epochs={len(self.metrics)})"
