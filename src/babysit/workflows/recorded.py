"""Recorded runs: what `babysit train` does, as two library calls.

    run = start_run(cfg, runs_dir="runs")        # runs/<data>-<model>-<date>-<time>/
    run = resume_run("runs/digits-mlp-...")      # after a kill: continue from last.pt

A recorded run trains with four callbacks around `fit`: the divergence guard
(stop at NaN/inf or `watch.divergence_factor` x the initial loss), the probes
(`watch.probes` preset, streamed to probes.jsonl), the checkpointer (best.pt by
validation accuracy, last.pt every epoch) and the run recorder (docs/run-record.md);
with `watch.tensorboard`, a fifth writes TensorBoard events as the run goes
(`report.tensorboard.LiveTensorBoard`, in RUN_DIR/tensorboard).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from babysit.config import RunConfig, build_config
from babysit.data.datasets import Dataset
from babysit.errors import ConfigError, DataError
from babysit.build import Run, load_data, run
from babysit.status import COMPLETED, DIVERGED, FAILED, INTERRUPTED
from babysit.train import distributed
from babysit.train.callbacks import DivergenceGuard
from babysit.train.checkpoint import Checkpointer, load_checkpoint
from babysit.train.record import RunRecorder, create_run_dir, hold_run, load_run, release_run, tee
from babysit.watch.probes import watch
from babysit.watch.program import ProgramWatch


def start_run(
    cfg: RunConfig,
    *,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    progress: bool = True,
    data: Dataset | None = None,
    callbacks: Sequence[object] = (),
) -> Run:
    """Train `cfg` with guard, probes and checkpoints, recording it in `runs_dir/<name>/`.

    Args:
        cfg: the run's config.
        runs_dir: the folder holding run records.
        name: the run's folder name; None generates `<data>-<model>-<date>-<time>`.
        progress: show progress on stderr.
        data: an already prepared data set (must be what `cfg.data` loads).
        callbacks: more callbacks, called after babysit's own.
    """
    # Under torch.distributed, rank 0 creates the one run folder; every rank trains, rank 0 records.
    path = distributed.on_main(lambda: create_run_dir(runs_dir, name, stem=f"{cfg.data.name}-{cfg.model.name}"))
    return _train(cfg, path, data=data, checkpoint=None, progress=progress, callbacks=callbacks)


def resume_run(path: str | Path, *, progress: bool = True, callbacks: Sequence[object] = (), data: Dataset | None = None) -> Run:
    """Continue a killed or interrupted run from its checkpoints/last.pt, with its saved config.

    On the CPU the resumed run ends with the same metrics as an uninterrupted one:
    the checkpoint restores weights, optimiser, history and every RNG `fit` draws from
    (tests/faults/test_resume_exact.py stops every built-in profile at random steps).

    Args:
        path: the run folder.
        progress: show progress on stderr.
        callbacks: more callbacks, called after babysit's own.
        data: an already prepared data set (must be what the saved config loads; its
            preprocessing statistics are checked against the checkpoint's).
    """
    path = Path(path)
    record = load_run(path, probes=False)
    hold_run(path)  # refuses while another process still writes this run (two writers would interleave the record)
    try:
        record = load_run(path, probes=False)  # again, now that nobody else writes it
        if record.status == COMPLETED:
            raise ConfigError(f"run '{path}' already completed; there is nothing to resume (start a new run to train longer)")
        if record.status == DIVERGED:
            raise ConfigError(f"run '{path}' diverged; resuming would repeat it: start a new run with a lower train.lr")
        cfg = build_config(record.config)
        checkpoint = load_checkpoint(path / "checkpoints" / "last.pt")
    except BaseException:
        release_run(path)
        raise
    return _train(cfg, path, data=data, checkpoint=checkpoint, progress=progress, callbacks=callbacks)


def live_tensorboard(path: Path, checkpoint: dict[str, Any] | None) -> Any:
    """The live TensorBoard writer of a recorded run, in RUN_DIR/tensorboard.

    A resumed run purges the events written after its checkpoint's step (TensorBoard's
    `purge_step`): the resumed run writes them again.
    """
    from babysit.report.tensorboard import LiveTensorBoard  # tensorboard loads only when asked for

    return LiveTensorBoard(path / "tensorboard", run_dir=path, purge_step=checkpoint["step"] + 1 if checkpoint is not None else None)


def live_failed(live: Any, recorder: RunRecorder, error: BaseException) -> None:
    """End the live events of a run that raised: its status ("interrupted" for Ctrl-C and SIGTERM, else "failed") and the error."""
    status = INTERRUPTED if isinstance(error, KeyboardInterrupt) else FAILED
    live.finish(status, recorder.state.step if recorder.state is not None else 0, {"stop_reason": f"{type(error).__name__}: {error}"})


def _check_same_data(checkpoint: dict[str, Any], data: Dataset) -> None:
    """Refuse to resume on data whose fitted preprocessing differs from the checkpoint's."""
    saved = checkpoint.get("preprocessor")
    pre = data.preprocessor
    if saved is None or pre is None:
        return
    now = pre.state_dict()
    same = saved.keys() == now.keys() and all(
        torch.equal(v, now[k].cpu()) if isinstance(v, torch.Tensor) else v == now[k] for k, v in saved.items()
    )
    if not same:
        raise DataError("the data changed since this run started (its preprocessing statistics differ); resume needs the same data")


def _train(
    cfg: RunConfig,
    path: Path,
    *,
    data: Dataset | None,
    checkpoint: dict[str, Any] | None,
    progress: bool,
    callbacks: Sequence[object],
) -> Run:
    recorder = RunRecorder(path, cfg.to_dict(), resumed=checkpoint is not None)
    live = None
    try:
        data = data if data is not None else load_data(cfg.data)
        if checkpoint is not None:
            _check_same_data(checkpoint, data)
        guard = DivergenceGuard(cfg.watch.divergence_factor)
        checkpointer = Checkpointer(path / "checkpoints", config=cfg.to_dict())
        live = live_tensorboard(path, checkpoint) if cfg.watch.tensorboard and distributed.is_main() else None
        program = ProgramWatch(sink=tee(recorder.program, live.program if live else None), where="fit", loss_known=True)
        with watch(preset=cfg.watch.probes, sink=tee(recorder.probe, live.probe if live else None)) as probes:
            done = run(
                cfg,
                # The recorder before the checkpointer: config.json is on disk before any checkpoint, so a disk
                # that fills at the first checkpoint still leaves a folder that can be reported and resumed.
                # The live events after the recorder: the diagnosis at the end reads the finished record.
                callbacks=[guard, probes, program, recorder, checkpointer, *([live] if live else []), *callbacks],
                progress=progress,
                data=data,
                resume_from=checkpoint,
            )
        return replace(done, record=path)
    except BaseException as error:
        if live is not None:
            live_failed(live, recorder, error)
        if recorder.started:
            recorder.fail(error)
            if isinstance(error, KeyboardInterrupt) and (path / "checkpoints" / "last.pt").is_file():
                error.add_note(f"run '{path}' is saved as interrupted; continue it with `babysit train --resume {path}`")
        elif distributed.is_main():
            release_run(path)
            if not any(path.iterdir()):
                path.rmdir()  # nothing was recorded (bad data or settings): leave no empty run behind
        raise
    finally:
        release_run(path)
