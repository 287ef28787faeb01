"""What every framework callback shares: the metric names it may rename, and the report at the end of training.

Each callback records through `babysit.record` (the one recorder, probes and program
observer of a hand-written loop); this module holds only the few steps around it that
are the same for every framework, so they are written once.
"""

from __future__ import annotations

from pathlib import Path

from babysit.errors import ConfigError, did_you_mean
from babysit.status import FAILED, INTERRUPTED
from babysit.train.own_loop import METRICS, OwnLoopRun


def metric_keys(metrics: dict[str, str] | None, where: str) -> dict[str, str]:
    """babysit's metric name -> the key the framework logs it under, with the user's renames applied.

    Args:
        metrics: renames, babysit's name -> the user's key (e.g. {"val_accuracy": "val_acc"}).
        where: the callback's name for the error message, e.g. "Babysit(metrics=...)".
    """
    for key in metrics or {}:
        if key not in METRICS:
            raise ConfigError(f"{where} got {key!r}{did_you_mean(key, METRICS)}; babysit's metric names are {', '.join(METRICS)}")
    return {m: (metrics or {}).get(m, m) for m in METRICS}


def check_divergence_factor(factor: float) -> None:
    """Refuse a divergence factor that would stop a healthy run at once (the guard stops at factor x the first loss)."""
    if factor <= 1.0:
        raise ConfigError(f"Babysit(divergence_factor=...) must be > 1 (3 is the lectures' rule), got {factor}")


def close_failed(run: OwnLoopRun, error: BaseException | None, unknown: str) -> None:
    """Close a run that training left by an exception: "interrupted" for Ctrl-C, else "failed"; the exception (or `unknown`) is the stop reason.

    A run that had diverged stays "diverged" (`OwnLoopRun.close`): the divergence is why it ended.
    """
    status = INTERRUPTED if isinstance(error, KeyboardInterrupt) else FAILED
    run.close(status, stop_reason=f"{type(error).__name__}: {error}" if error is not None else unknown)


def report_run(run: OwnLoopRun) -> Path:
    """Diagnose a closed run, print its findings and write report.html (what `babysit report runs/<name>` writes); returns its path."""
    from babysit.report.run_report import run_report  # the report's plotting stack loads only when used

    built = run_report(run.path, per_class=False)  # the framework owns the model: no checkpoint to rebuild per class
    built.print()
    path = built.write()
    print(f"report: {path}")
    return path
