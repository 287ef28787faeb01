"""Checkpoints: the best epoch (by a validation metric) and the last, safe to load and resume.

A checkpoint is a plain dict of tensors, numbers and strings (never a pickled
object), written atomically through `babysit.io` and read back with
`torch.load(weights_only=True)`:

    format        1
    model         model.state_dict()
    optimizer     optimizer.state_dict()
    epoch, step   completed epochs and optimiser steps
    history       the per-epoch records so far (History.records)
    rng           {"torch": CPU RNG state, "shuffle": the batch-shuffling generator's
                   state, "cuda": one state per GPU (empty on the CPU)}
    preprocessor  the data's fitted preprocessing (its state_dict(); rebuild it with
                  `babysit.load_preprocessor`), or None
    config        RunConfig.to_dict() of the run, or None
    metric        {"name": ..., "value": ...}: what made it the best (None before the first epoch)
    status        the run's status when it was written
    callbacks     the state of every callback with `state_dict()` (LR schedule, parameter
                  average, divergence guard), by class name ("Name#2" for a second one)

Python's and numpy's RNGs are not saved: `fit` draws only from torch's.
"""

from __future__ import annotations

import io
import math
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from babysit.errors import DataError, safe_reason
from babysit.io import Throttle, atomic_write_bytes
from babysit.status import DIVERGED
from babysit.train.history import History

if TYPE_CHECKING:
    from babysit.train.state import TrainState

FORMAT = 1
WRITE_SHARE = 0.01  # checkpoint writes take at most this share of a run's time (`Checkpointer`)


def training_state(state: TrainState, *, history: bool = True) -> dict[str, Any]:
    """Everything `fit` needs to continue `state` exactly: weights, optimiser, counters, history, RNGs.

    `history=False` leaves the history out (the caller adds the records up to "epoch" when it writes).
    """
    cuda = torch.cuda.get_rng_state_all() if state.device.type == "cuda" else []
    pre = state.data.preprocessor
    return {
        "format": FORMAT,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "epoch": len(state.history),
        "step": state.step,
        "history": [dict(r) for r in state.history.records] if history else [],
        "rng": {"torch": torch.get_rng_state(), "shuffle": state.generator.get_state(), "cuda": cuda},
        "preprocessor": pre.state_dict() if pre is not None else None,
        "status": state.status,
        "callbacks": {key: cb.state_dict() for key, cb in _stateful(state.callbacks)},
    }


def _stateful(callbacks: list[object]) -> list[tuple[str, Any]]:
    """The callbacks that save state, keyed by class name (then "Name#2", "Name#3", ...)."""
    seen: dict[str, int] = {}
    out = []
    for cb in callbacks:
        if callable(getattr(cb, "state_dict", None)) and callable(getattr(cb, "load_state_dict", None)):
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            out.append((name if seen[name] == 1 else f"{name}#{seen[name]}", cb))
    return out


def restore_training_state(state: TrainState, checkpoint: dict[str, Any]) -> None:
    """Load a checkpoint into a fresh `fit` state, so training continues where it was saved.

    Callbacks' own state is loaded separately, by `restore_callback_states`, once
    their `on_fit_start` has built what it restores into.
    """
    state.model.load_state_dict(checkpoint["model"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.history = History([dict(r) for r in checkpoint["history"]])
    state.epoch, state.step = checkpoint["epoch"], checkpoint["step"]
    rng = checkpoint["rng"]
    torch.set_rng_state(rng["torch"])
    state.generator.set_state(rng["shuffle"])
    if rng["cuda"] and state.device.type == "cuda":
        torch.cuda.set_rng_state_all(rng["cuda"])


def restore_callback_states(state: TrainState, checkpoint: dict[str, Any]) -> None:
    """Load each saved callback state into the callback of the same key (others keep theirs).

    Then the optimiser's hyperparameters are loaded again: a callback's `on_fit_start`
    may have rewritten them (torch's OneCycleLR sets every group's lr *and* its
    momentum or Adam beta1 when it is built), and the saved groups hold the values the
    next step must use. Before this, a resumed one-cycle run took its first step with
    beta1 at the cycle's start (0.95) and drifted from the uninterrupted run from there.
    """
    saved = checkpoint.get("callbacks", {})
    for key, cb in _stateful(state.callbacks):
        if key in saved:
            cb.load_state_dict(saved[key])
    state.optimizer.load_state_dict(checkpoint["optimizer"])


def serialize(checkpoint: dict[str, Any]) -> bytes:
    """`checkpoint` as the bytes `torch.save` writes, for an atomic write (`io.atomic_write_bytes`)."""
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    return buf.getvalue()


def load_checkpoint(path: str | Path, kind: int | str = FORMAT) -> dict[str, Any]:
    """Read a checkpoint with `torch.load(weights_only=True)` onto the CPU; DataError if missing, damaged or not of format `kind`."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"checkpoint '{p}' does not exist; a run writes checkpoints/last.pt after its first epoch")
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle protocol, asking for an issue to be filed
            warnings.simplefilter("ignore")
            checkpoint = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        # safe_reason: torch's refusal suggests weights_only=False, which would run the file's code.
        raise DataError(f"checkpoint '{p}' cannot be read ({type(e).__name__}: {safe_reason(e)}); it is damaged or not a babysit checkpoint") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != kind:
        raise DataError(f"'{p}' is not a babysit checkpoint (format {kind})")
    return checkpoint


def _detached(obj: Any) -> Any:
    """`obj` (a state dict: nested dicts, lists, tensors) with every tensor cloned, so training on does not change it."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _detached(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detached(v) for v in obj)
    return obj


class Checkpointer:
    """Keep checkpoints/last.pt (every epoch) and checkpoints/best.pt (when the metric improves), written at most `WRITE_SHARE` of the time.

    Each epoch's state is taken at its end (tensors copied in memory); the files are written
    when at least 1/`WRITE_SHARE` times the last write's cost has passed since it, and always
    after the first epoch, at the run's end (`on_fit_end`) and when training raises (an error,
    Ctrl-C: `on_exception`). A write serialises the state with the
    history up to its epoch, so a run of thousands of short epochs (a small table) no longer
    pickles its whole history and fsyncs twice every epoch, a cost that grew with the run and
    passed the training's own. Each file is written atomically (temporary file, fsync,
    rename through `babysit.io`), so a kill mid-write leaves the previous one; a kill
    (SIGKILL, power loss) between writes loses at most the epochs of one interval.

    At the start of a fresh run both files hold the initial weights, so even a
    run that diverges in its first steps keeps a loadable checkpoint. A diverged
    epoch, or one whose metric is NaN/inf, is not kept: a good checkpoint is
    never overwritten by a broken model (docs/lectures.md §6).

    Args:
        directory: where best.pt and last.pt go.
        config: the run's config dict, stored in every checkpoint.
        metric: the History key that picks the best epoch.
        mode: "max" (accuracy) or "min" (loss).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        config: dict[str, Any] | None = None,
        metric: str = "val_accuracy",
        mode: str = "max",
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"Checkpointer mode must be 'max' or 'min', got {mode!r}")
        self.directory = Path(directory)
        self.config, self.metric, self.mode = config, metric, mode
        self.best: float | None = None
        self._records: list[dict[str, Any]] = []  # the run's history records (the list itself, appended to by fit)
        self._pending: dict[Path, dict[str, Any]] = {}  # file -> the state to write there, history left out
        self._writes = Throttle(WRITE_SHARE)  # when the next epoch may write
        self._failed = False  # the last write raised (a full disk): the run is failing because of it

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def _state(self, state: TrainState, value: float | None) -> dict[str, Any]:
        checkpoint = _detached(training_state(state, history=False))
        checkpoint["config"] = self.config
        checkpoint["metric"] = {"name": self.metric, "value": value} if value is not None else None
        return checkpoint

    def flush(self) -> None:
        """Write every state taken and not yet written (the best and the last), each once, atomically."""
        written: dict[int, bytes] = {}
        for path, checkpoint in list(self._pending.items()):
            key = id(checkpoint)
            if key not in written:  # last and best are often the same epoch: serialise it once
                written[key] = serialize({**checkpoint, "history": [dict(r) for r in self._records[: checkpoint["epoch"]]]})
            self._failed = True  # until the write returns: a failing run does not retry a write that just failed
            atomic_write_bytes(path, written[key])
            self._failed = False
            del self._pending[path]

    def on_fit_start(self, state: TrainState) -> None:
        self._records = state.history.records
        if state.history:  # resumed: the files already hold this run's checkpoints
            best = state.history.best(self.metric, self.mode)
            self.best = best[self.metric] if best else None
            return
        checkpoint = self._state(state, None)
        self._pending = {self.last_path: checkpoint, self.best_path: checkpoint}
        self.flush()

    def on_epoch_end(self, state: TrainState) -> None:
        self._records = state.history.records
        value = state.history.records[-1].get(self.metric, math.nan)
        if state.status == DIVERGED or not math.isfinite(value):
            return
        improved = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        checkpoint = self._state(state, value)
        self._pending[self.last_path] = checkpoint
        if improved:
            self.best = value
            self._pending[self.best_path] = checkpoint
        if not self._writes.ready():
            return
        start = time.perf_counter()
        self.flush()
        self._writes.wrote(start)

    def on_fit_end(self, state: TrainState) -> None:
        self.flush()

    def on_exception(self, state: TrainState) -> None:
        if not self._failed:  # the run failed for another reason: keep what it trained
            self.flush()

    def __repr__(self) -> str:
        return f"Checkpointer({str(self.directory)!r}, metric={self.metric!r}, mode={self.mode!r}, best={self.best})"
