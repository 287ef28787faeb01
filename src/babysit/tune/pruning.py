"""Early stopping of trials: Optuna's pruners, fed by a training callback.

The divergence rule (NaN/inf or loss > 3x the first loss, docs/lectures.md §6) is
`babysit.train.callbacks.DivergenceGuard`; this module adds the optional
statistical pruners for longer searches. `OptunaReporter` reports each epoch's
validation accuracy to the trial and stops the run when the pruner says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from babysit.status import PRUNED
from babysit.registry import Registry

if TYPE_CHECKING:  # Optuna loads when a pruner is built, so the registry lists without it (`babysit blocks`, `bs.blocks`)
    import optuna

PRUNERS: Registry = Registry("pruner")


@PRUNERS.register("none")
def no_pruning(grace: int = 1) -> optuna.pruners.BasePruner:
    """No statistical pruning; diverging trials are still stopped."""
    import optuna

    return optuna.pruners.NopPruner()


@PRUNERS.register("median")
def median_pruning(grace: int = 1) -> optuna.pruners.BasePruner:
    """Stop a trial whose validation accuracy falls below the median of earlier trials at the same epoch (from epoch `grace` on)."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=grace)


@PRUNERS.register("halving")
def successive_halving(grace: int = 1) -> optuna.pruners.BasePruner:
    """Successive halving (Jamieson & Talwalkar 2016): at epochs g, 3g, 9g, ... (g: the grace period) keep the top third."""
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=grace, reduction_factor=3)


class OptunaReporter:
    """A training callback: report each epoch's validation accuracy to `trial`; stop when it should be pruned."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_epoch_end(self, state) -> None:
        record = state.history.records[-1]
        self.trial.report(record["val_accuracy"], record["epoch"])
        if not state.stop and self.trial.should_prune():
            why = f"pruned at epoch {record['epoch']}: validation accuracy {record['val_accuracy']:.3f} is behind the other trials"
            state.request_stop(PRUNED, why)

    def __repr__(self) -> str:
        return f"OptunaReporter(trial={self.trial.number})"
