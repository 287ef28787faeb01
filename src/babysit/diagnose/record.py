"""What the diagnosis rules read from a run: metrics, probes, events, summary.

The run record (written while training, see `watch/` and `train/record.py`) has
this JSON schema; the rules read only these parts:

    metrics: [{"epoch", "step", "train_loss", "train_accuracy",
               "val_loss", "val_accuracy", "lr", "seconds"}, ...]        one per epoch
    probes:  [{"step", "epoch",
               "layers": {qualified name: {"type", "act_mean", "act_std",
                                            "hist_edges", "hist_counts",
                                            "dead_fraction"        (ReLU family),
                                            "saturated_fraction"   (tanh/sigmoid, recurrent),
                                            "first_step_std", "last_step_std", "time_steps"
                                                                   (unbounded recurrent states)}},
               "params": {qualified name: {"grad_norm", "weight_norm", "update_ratio"}}}, ...]
    events:  [{"step", "event", "detail"}, ...]
    summary: {"status": "completed" | "stopped" | "diverged", "stop_reason", "test_accuracy", ...} or None
    program: the program's facts (program.json, `watch.program.ProgramWatch.facts`) or None

Layers appear in call order and params in module order (input side first), which
is what the rules use as depth. Anything with the first four attributes (`RecordLike`)
is accepted, `program` when it has one; `run_view` also takes the dict form, a
`FitResult` or a `History`.
A part or a metric the record lacks makes the rules that need it stay silent;
a metric name that looks like a misspelling of one they read (`train_acc`,
Keras' `val_acc`) is rejected with the name to use.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from babysit.errors import DataError


# The metric names the rules read, and names other loops write for them (Keras, Lightning, habit).
METRICS = ("epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")
ALIASES = {
    "loss": "train_loss", "acc": "train_accuracy", "accuracy": "train_accuracy", "train_acc": "train_accuracy",
    "val_acc": "val_accuracy", "valid_loss": "val_loss", "valid_acc": "val_accuracy", "valid_accuracy": "val_accuracy",
    "validation_loss": "val_loss", "validation_accuracy": "val_accuracy", "learning_rate": "lr", "test_acc": "test_accuracy",
}


def check_metric_names(metrics: list[dict[str, Any]]) -> None:
    """Reject metric names that look like a misspelling or another loop's name for one the rules read.

    Names far from every known one (a user's own extra metric) are kept and ignored:
    only a near miss would silently turn a rule off.

    Raises:
        DataError: naming the key and the name to use instead.
    """
    known = set(METRICS) | {"test_loss", "test_accuracy"}
    for key in dict.fromkeys(k for m in metrics for k in m):
        if key in known:
            continue
        close = ALIASES.get(key) or next(iter(difflib.get_close_matches(key, METRICS, n=1, cutoff=0.75)), None)
        if close:
            raise DataError(f"unknown metric name {key!r} in the run record; did you mean {close!r}? (the rules read {', '.join(METRICS)})")


@runtime_checkable
class RecordLike(Protocol):
    """Any run record exposing the four parts the rules read."""

    metrics: list[dict[str, Any]]
    probes: list[dict[str, Any]]
    events: list[dict[str, Any]]
    summary: dict[str, Any] | None


@dataclass
class RunView:
    """The parts of a run record the diagnosis rules read (see the module docstring for the schema)."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    program: dict[str, Any] | None = None
    # series() per key, with the epoch count it was read at: the rules ask for the same few series many times,
    # and on a table trained for 100,000 epochs each read is a pass over as many dicts.
    _series: dict[str, tuple[int, list[float]]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @staticmethod
    def recorded(metrics: dict[str, Any], key: str) -> bool:
        """Whether one epoch's metrics hold a number for `key` (NaN counts: it was recorded; a missing key does not)."""
        return isinstance(metrics.get(key), (int, float)) and not isinstance(metrics.get(key), bool)

    def series(self, key: str) -> list[float]:
        """Per-epoch values of `key` (NaN where an epoch lacks it, so index i is epoch i+1); a new list each call."""
        cached = self._series.get(key)
        if cached is None or cached[0] != len(self.metrics):
            cached = (len(self.metrics), [float(m[key]) if isinstance(m.get(key), (int, float)) else float("nan") for m in self.metrics])
            self._series[key] = cached
        return list(cached[1])

    def __repr__(self) -> str:
        status = (self.summary or {}).get("status", "?")
        return f"RunView(epochs={len(self.metrics)}, probes={len(self.probes)}, events={len(self.events)}, status={status})"


def run_view(record: Any) -> RunView:
    """Normalise a record (RecordLike, its dict form, a FitResult or a History) into a `RunView`.

    Raises:
        DataError: `record` has none of the parts the rules read.
    """
    if isinstance(record, RunView):
        return record
    if isinstance(record, Mapping):
        if not {"metrics", "probes", "events", "summary", "program"} & set(record):
            raise DataError("a run record needs 'metrics', 'probes', 'events' or 'summary'; is this a run record file?")
        check_metric_names(list(record.get("metrics") or []))
        program = record.get("program")
        return RunView(
            list(record.get("metrics") or []),
            list(record.get("probes") or []),
            list(record.get("events") or []),
            record.get("summary"),
            program if isinstance(program, Mapping) else None,
        )
    if isinstance(record, RecordLike):
        check_metric_names(list(record.metrics))
        program = getattr(record, "program", None)
        return RunView(list(record.metrics), list(record.probes), list(record.events), record.summary,
                       program if isinstance(program, Mapping) else None)  # fmt: skip
    history = getattr(record, "history", record)
    if hasattr(history, "records"):
        summary = record.summary() if callable(getattr(record, "summary", None)) else None
        program = getattr(record, "program", None)
        return RunView(metrics=list(history.records), summary=summary, program=program if isinstance(program, Mapping) else None)
    raise DataError(f"cannot read a run record from {type(record).__name__}; pass a record dict, a RunRecord or a FitResult")
