"""The seam between a training script and a tool that watches it: a few hooks, called in a fixed order.

Contract (what `scripts.run` calls, in order):

    before_training(model, optimizer, loss_fn, batch, way=, name=, data=)
                                                            # once, before any step: the model, the
                                                            # optimiser (None in Lightning: the module's
                                                            # configure_optimizers has it), the loss the
                                                            # script computes, one (inputs, labels) batch,
                                                            # the way in, the case id, the prepared Dataset
    way "loop":      start(model, optimizer)                 # right before the loop
                     after_step(loss, labels)                # after each step's lines, whatever their order
                     after_epoch(metrics)                    # {"epoch", "train_loss", "train_accuracy",
                                                            #  "val_loss", "val_accuracy"}
    way "fit":       fit(model, data, recipe) -> history     # the tool's way of running bs.fit
    way "lightning": lightning_callbacks() -> [pl.Callback]  # handed to the Trainer
    finish() -> findings                                    # [{"id", "severity", "message"}] (babysit's keep
                                                            # "rule" and "explained_by" for its scores)

`Tool` is the plain tool (every hook does nothing) and the base of the others:
`BabysitTool` here, the peers (torchtest2, torch-audit) in `peers.py`.
`TOOLS` maps each name to its factory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

from torch import Tensor, nn

Findings = list[dict[str, Any]]


class Tool:
    """The plain tool: the script runs untouched (the verification, and the CPU-time baseline)."""

    name = "plain"

    def before_training(
        self, model: nn.Module, optimizer: Any, loss_fn: Callable, batch: tuple[Tensor, Tensor], *, way: str, name: str, data: Any
    ) -> None:
        """Called once before training."""

    def start(self, model: nn.Module, optimizer: Any) -> None:
        """Called right before a hand-written loop's first step."""

    def after_step(self, loss: Tensor, labels: Tensor) -> None:
        """Called after each step of a hand-written loop."""

    def after_epoch(self, metrics: dict[str, float]) -> None:
        """Called after each epoch's validation in a hand-written loop."""

    def fit(self, model: nn.Module, data: Any, recipe: dict[str, Any]) -> list[dict[str, float]]:
        """Train with `bs.fit` and this tool's fit callbacks; returns the per-epoch history."""
        import babysit as bs

        result = bs.fit(model, data, bs.Recipe(**recipe), callbacks=self.fit_callbacks(), progress=False)
        return list(result.history.records)

    def fit_callbacks(self) -> list[object]:
        """babysit fit callbacks (objects with `on_<event>(state)` methods) this tool attaches."""
        return []

    def lightning_callbacks(self) -> list[Any]:
        """Lightning callbacks this tool attaches to the Trainer."""
        return []

    def finish(self) -> Findings:
        """The tool's findings once training ended."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BabysitTool(Tool):
    """babysit as a user adds it: `bs.record` around a hand-written loop, `bs.doctor` for fit, the Lightning callback.

    Written against the program observer's API (issue 22): `run.log_step(loss, labels=...)` gives the
    loss check its labels, and `run.findings` holds the program findings beside the numbers'.

    Args:
        with_check: also run `bs.check(model, data, optimizer=..., loss_fn=...)` before training and
            attach it (`run.attach_check`); off until that signature is confirmed.
        runs_dir: where the run records go (a temporary folder by default, removed at `finish`).
    """

    name = "babysit"

    def __init__(self, with_check: bool = False, runs_dir: str | None = None) -> None:
        self.with_check = with_check
        self._tmp = None if runs_dir else tempfile.TemporaryDirectory(prefix="babysit-programs-")
        self.runs_dir = Path(runs_dir or self._tmp.name)
        self.run: Any = None
        self._check: Any = None
        self._doctor: Any = None
        self._callback: Any = None
        self._name = "case"

    def before_training(
        self, model: nn.Module, optimizer: Any, loss_fn: Callable, batch: tuple[Tensor, Tensor], *, way: str, name: str, data: Any
    ) -> None:
        self._name = name
        if self.with_check and way == "loop":
            import babysit as bs

            self._check = bs.check(model, data, optimizer=optimizer, loss_fn=loss_fn, progress=False)

    def start(self, model: nn.Module, optimizer: Any) -> None:
        import babysit as bs

        self.run = bs.record(model, optimizer, name=self._name, runs_dir=self.runs_dir, probes="light")
        if self._check is not None:
            self.run.attach_check(self._check)

    def after_step(self, loss: Tensor, labels: Tensor) -> None:
        self.run.log_step(loss, labels=labels)

    def after_epoch(self, metrics: dict[str, float]) -> None:
        self.run.log_epoch(**{k: v for k, v in metrics.items() if k != "epoch"})

    def fit(self, model: nn.Module, data: Any, recipe: dict[str, Any]) -> list[dict[str, float]]:
        import babysit as bs

        # As the diagnosis benchmark runs it: the config names a built-in model, `model=` replaces it.
        cfg = bs.build_config({"data": {"name": "arrays"}, "model": {"name": "mlp"}, "train": recipe})
        self._doctor = bs.doctor(cfg, model=model, data=data, runs_dir=self.runs_dir, name=self._name, progress=False, write_report=False)
        return list(self._doctor.report.record.metrics)

    def lightning_callbacks(self) -> list[Any]:
        from babysit.integrations.lightning import Babysit

        self._callback = Babysit(name=self._name, runs_dir=self.runs_dir, report=False)
        return [self._callback]

    def finish(self) -> Findings:
        if self._doctor is not None:
            found = self._doctor.findings
        else:
            run = self.run if self.run is not None else getattr(self._callback, "run", None)
            if run is None:
                return []
            run.close()
            found = run.findings
        out = [{"id": f.rule, "rule": f.rule, "severity": f.severity, "explained_by": f.explained_by, "message": f.title, "fix": f.fix}
               for f in found]  # fmt: skip
        if self._tmp is not None:
            self._tmp.cleanup()
        return out


def tools() -> dict[str, Callable[[], Tool]]:
    """Every tool by name: plain, babysit and the peers."""
    import peers

    return {"plain": Tool, "babysit": BabysitTool, **peers.TOOLS}
