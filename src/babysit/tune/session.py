"""A tuning session from Python: run or resume a search, with the live table, and collect its results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from babysit.config import RunConfig, build_config
from babysit.data.datasets import Dataset
from babysit.tune.live import LiveView
from babysit.tune.results import TuneResult, collect
from babysit.tune.runner import Execution, Search, bounded, default_workers, execute
from babysit.tune.search import TuneSettings
from babysit.tune.space import Param, parse_space
from babysit.tune.store import ROOT


def search(
    base: RunConfig | dict[str, Any],
    space: dict[str, str | Param],
    settings: TuneSettings | None = None,
    *,
    mode: str = "panda",
    workers: int | None = None,
    storage: str | None = None,
    study: str = "",
    progress: bool = True,
    data: Dataset | None = None,
    root: str | Path = ROOT,
    oversubscribe: bool = False,
) -> TuneResult:
    """Run (or resume) a hyperparameter search and return its results.

    Args:
        base: the run config every trial starts from (a `RunConfig` or its nested dict).
        space: dotted config key -> range, a `Param` or its spec text ('log_uniform(1e-4, 1)').
        settings: strategy, budget, epochs, stages, pruning; defaults to `TuneSettings()` (random search).
        mode: 'panda' (one trial at a time, here) or 'caviar' (`workers` processes).
        workers: caviar's worker processes; default one per GPU, else one per CPU core. Never
            more than the trials left, the CPU cores (unless `oversubscribe`) and what memory
            holds are started; a line on stderr says so when fewer than asked.
        storage: an Optuna RDB URL (postgresql://...) or a journal file path; default
            runs/tune/<study>/journal.log under `root`.
        study: the study name; default data-model-strategy-<hash of the search>, so the
            same call resumes the same study.
        progress: show the live table of trials on stderr (in panda, with the current trial's probes).
        data: the prepared data set, when already loaded (must match base's [data]).
        oversubscribe: allow more caviar workers than CPU cores.
    """
    cfg = base if isinstance(base, RunConfig) else build_config(base)
    job = Search(cfg, parse_space(space), settings or TuneSettings(), storage, study, Path(root))
    execution = Execution(mode, workers or default_workers(), oversubscribe=oversubscribe)
    handle = job.open()
    execution, note = bounded(execution, job, handle, data)  # before the live view, so the note is its own line
    if note:
        print(note, file=sys.stderr)
    if progress:
        # Panda trains here, so the view can also show the current trial's probes.
        with LiveView(handle, job, probes=execution.mode == "panda") as view:
            execute(job, execution, data, on_change=view.refresh, callbacks=view.callbacks())
    else:
        execute(job, execution, data)
    return collect(handle, job)
