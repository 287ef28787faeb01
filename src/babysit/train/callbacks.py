"""Callbacks: plain objects with optional methods, called at a few named events.

Contract (call order within `fit`):

    on_fit_start(state)
    for each epoch:
        on_epoch_start(state)
        for each batch: on_batch_end(state)     # state.loss is the batch loss (a tensor)
        on_epoch_end(state)                     # state.history has the epoch's record
    on_fit_end(state)                           # state.result is set
    on_exception(state)                         # instead, when training raises (an error, Ctrl-C); then it is re-raised
    on_replan(state)                            # when a callback changed the run's length (TrainState.replan)

A callback implements any subset. `state.request_stop(status, reason)` ends
training after the current batch.
A callback with state that a resumed run needs also defines `state_dict()` and
`load_state_dict(d)`: checkpoints save it, and a resumed `fit` loads it right
after `on_fit_start`.
"""

from __future__ import annotations

import html
import math
import time
import warnings
from typing import TYPE_CHECKING, Protocol

from babysit.errors import ConfigError, did_you_mean
from babysit.status import DIVERGED, STOPPED

if TYPE_CHECKING:  # rich loads when a bar is shown: `import babysit` and a recorded loop do without it
    from rich.console import Console
    from rich.progress import Progress

EVENTS = ("fit_start", "epoch_start", "batch_end", "epoch_end", "fit_end", "exception", "replan")


class Callback(Protocol):
    """Any object; the trainer calls `on_<event>(state)` for the methods it defines."""


def check_callbacks(callbacks) -> None:
    """Refuse a callback with an `on_...` method that no event calls (a typo would never run)."""
    known = [f"on_{e}" for e in EVENTS]
    for cb in callbacks:
        for attr in dir(cb):
            if attr.startswith("on_") and attr not in known and callable(getattr(cb, attr, None)):
                raise ConfigError(
                    f"callback {type(cb).__name__} has a method {attr}() that is never called{did_you_mean(attr, known)}; "
                    f"the events are {', '.join(known)}"
                )


def emit(callbacks, event: str, state) -> None:
    """Call `on_<event>(state)` on every callback that defines it (at fit_start, check them first)."""
    if event == EVENTS[0]:
        check_callbacks(callbacks)
    for cb in callbacks:
        method = getattr(cb, f"on_{event}", None)
        if method is not None:
            method(state)


def emit_exception(callbacks, state) -> None:
    """Call `on_exception(state)` on every callback that defines it, while training's own error is being raised (theirs are warned about)."""
    for cb in callbacks:
        method = getattr(cb, "on_exception", None)
        if method is not None:
            try:
                method(state)
            except Exception as e:  # the run's error is the one the user must see
                warnings.warn(f"{type(cb).__name__}.on_exception failed ({type(e).__name__}: {e}) while training was failing", stacklevel=2)


class NotebookBar:
    """A progress line in a Jupyter cell: one output updated in place through IPython's display ids.

    rich draws its live bar in a notebook only through ipywidgets (and warns without it); a
    display id needs nothing beyond IPython, and the last state stays in the saved notebook.

    Args:
        total: how many units the work has.
        unit: what one is ("steps", "checks").
    """

    def __init__(self, total: int, unit: str) -> None:
        from IPython.display import display

        self.total, self.unit, self.completed, self.note = total, unit, 0, ""
        self._started = time.perf_counter()
        self._handle = display(self, display_id=True)

    def update(self, completed: int, note: str) -> None:
        """Show `completed` of the total units, with `note` before the count (what is being done)."""
        self.completed, self.note = completed, note
        self._handle.update(self)

    def __repr__(self) -> str:
        share = self.completed / self.total if self.total else 1.0
        return f"{self.note}  {self.completed}/{self.total} {self.unit} ({share:.0%})  {time.perf_counter() - self._started:.1f}s"

    def _repr_html_(self) -> str:
        return f'<progress value="{self.completed}" max="{max(self.total, 1)}" style="width:40%"></progress> <code>{html.escape(repr(self))}</code>'


class ProgressBar:
    """A rich progress bar over all steps, with one line of metrics per epoch (on stderr); in Jupyter, a `NotebookBar`."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self._progress: Progress | NotebookBar | None = None
        self._task = None

    def on_fit_start(self, state) -> None:
        if self.console.is_jupyter:
            self._progress = NotebookBar(state.total_steps, "steps")
            self._progress.update(state.step, "epoch 1  loss -")
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        # One line at once, before the first epoch ends (the bar itself only draws on a terminal).
        self.console.print(
            f"training {type(state.model).__name__} on {len(state.data.train.y):,} samples: "
            f"{state.recipe.epochs} epoch{'s' if state.recipe.epochs != 1 else ''}, {state.total_steps:,} steps ({state.device.type})"
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=state.total_steps, epoch=1, loss="-")

    def on_batch_end(self, state) -> None:
        # Reading the loss forces a device sync; do it only every few steps.
        if state.step % 10 == 0 or state.step == state.total_steps:
            if isinstance(self._progress, NotebookBar):
                self._progress.update(state.step, f"epoch {state.epoch + 1}  loss {float(state.loss):.4f}")
            else:
                self._progress.update(self._task, completed=state.step, epoch=state.epoch + 1, loss=f"{float(state.loss):.4f}")

    def on_replan(self, state) -> None:
        if isinstance(self._progress, NotebookBar):
            self._progress.total = state.total_steps
        elif self._progress is not None:
            self._progress.update(self._task, total=state.total_steps)
        self.console.print(f"re-planned to {state.recipe.epochs} epochs, {state.total_steps:,} steps")

    def on_epoch_end(self, state) -> None:
        r = state.history.records[-1]
        self.console.print(
            f"epoch {r['epoch']:>3}  train loss {r['train_loss']:.4f} acc {r['train_accuracy']:.3f}  "
            f"val loss {r['val_loss']:.4f} acc {r['val_accuracy']:.3f}  ({r['seconds']:.1f}s)"
        )

    def on_fit_end(self, state) -> None:
        if isinstance(self._progress, NotebookBar):  # the notebook's line stays, at the step the run ended on
            self._progress.update(state.step, self._progress.note)
        elif self._progress is not None:
            self._progress.stop()


class DivergenceGuard:
    """Stop a run whose loss is NaN/inf or exceeds `factor` x its first loss (docs/lectures.md §6).

    The lectures' rule for killing exploding runs early: "if the cost exceeds 3x
    the initial cost, stop". Sets `state.status = "diverged"` with the step and
    the values in `state.stop_reason`; `self.diverged_at` keeps the step.

    Args:
        factor: multiple of the first batch loss that counts as an explosion.
        every: check every `every` steps (reading the loss syncs the device).
    """

    def __init__(self, factor: float = 3.0, every: int = 1) -> None:
        if factor <= 1.0:
            raise ValueError(f"DivergenceGuard factor must be > 1, got {factor}")
        self.factor = factor
        self.every = max(1, every)
        self.initial: float | None = None
        self.diverged_at: int | None = None

    def on_fit_start(self, state) -> None:
        self.initial, self.diverged_at = None, None

    def state_dict(self) -> dict[str, float | None]:
        """The reference loss, so a resumed run compares against the original run's first loss."""
        return {"initial": self.initial}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.initial = state["initial"]

    def on_batch_end(self, state) -> None:
        if self.initial is not None and state.step % self.every:
            return
        loss = float(state.loss)
        if self.initial is None:
            self.initial = loss
        if not math.isfinite(loss):
            why = f"loss became {loss} at step {state.step}"
        elif loss > self.factor * self.initial:
            why = f"loss {loss:.4g} at step {state.step} exceeds {self.factor:g}x the initial loss {self.initial:.4g}"
        else:
            return
        self.diverged_at = state.step
        state.request_stop(DIVERGED, why)

    def __repr__(self) -> str:
        return f"DivergenceGuard(factor={self.factor}, every={self.every})"


class EarlyStopping:
    """Stop training (status "stopped") once `monitor` has not improved for `patience` epochs.

    The lectures' advice is to track validation performance and keep the best
    model; this stops the run when it no longer pays. The weights evaluated at
    the end are the last epoch's (or their average), not the best epoch's: the
    result's summary names both accuracies.

    Args:
        patience: epochs without a new best before stopping, >= 1.
        monitor: "val_loss" (lower is better) or "val_accuracy" (higher is better).
    """

    MONITORS = ("val_loss", "val_accuracy")

    def __init__(self, patience: int, monitor: str = "val_loss") -> None:
        if patience < 1:
            raise ConfigError(f"train.patience must be at least 1 epoch, got {patience}")
        if monitor not in self.MONITORS:
            raise ConfigError(f"train.monitor must be one of {', '.join(self.MONITORS)}, got {monitor!r}{did_you_mean(monitor, self.MONITORS)}")
        self.patience, self.monitor = patience, monitor
        self.best: float | None = None
        self.waited = 0

    def on_fit_start(self, state) -> None:
        self.best, self.waited = None, 0

    def state_dict(self) -> dict[str, float | int | None]:
        return {"best": self.best, "waited": self.waited}

    def load_state_dict(self, state: dict[str, float | int | None]) -> None:
        self.best, self.waited = state["best"], int(state["waited"] or 0)

    def on_epoch_end(self, state) -> None:
        value = state.history.records[-1][self.monitor]
        sign = -1.0 if self.monitor == "val_loss" else 1.0
        if self.best is None or sign * value > sign * self.best:
            self.best, self.waited = value, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            state.request_stop(STOPPED, f"early stopping: no better {self.monitor} than {self.best:.4g} for {self.patience} epochs")

    def __repr__(self) -> str:
        return f"EarlyStopping(patience={self.patience}, monitor={self.monitor!r})"
