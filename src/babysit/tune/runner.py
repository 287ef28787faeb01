"""Running a search: trials through `babysit.build.run`, in this process (panda) or in N worker processes (caviar).

docs/lectures.md §6: "panda" babysits one model at a time when compute is scarce;
"caviar" trains many in parallel and keeps the best. Both run the same worker
loop against one Optuna study (see `tune.store` for the claim protocol):

    while True:
        fail stale trials of dead workers
        claim a WAITING trial  -> train it, report epochs, tell the result
        else plan/enqueue the next missing slots, or wait for the stage to finish, or stop

so re-running a killed command resumes it, and the same command started on
several machines against one PostgreSQL URL shares the work.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from babysit.config import RunConfig, build_config
from babysit.data.datasets import Dataset
from babysit.errors import BabysitError, ConfigError
from babysit.registry import Registry
from babysit.data.memory import available_memory
from babysit.secrets import mask
from babysit.signals import exit_code, interrupts_as_exceptions
from babysit.status import COMPLETED, FAILED, INTERRUPTED
from babysit.build import load_data, run
from babysit.train.callbacks import DivergenceGuard
from babysit.tune.pruning import PRUNERS, OptunaReporter
from babysit.tune.search import STRATEGIES, Outcome, StagePlan, TuneSettings, plan_stage
from babysit.tune.space import Param
from babysit.tune.store import ROOT, STALE_KEY, StudyHandle, claim, enqueue, fail_trial, heartbeat, open_study, reap, slot_of, slot_trials

POLL_S = 0.5  # how often an idle worker looks for new work
ENQUEUE_BATCH = 32  # slots a worker enqueues at a time
STOP_GRACE_S = 10.0  # how long stopped workers get to re-queue their trials before SIGKILL


@dataclass(frozen=True)
class Search:
    """One search: the base run config, the space, the settings, and where its study lives (picklable)."""

    base: RunConfig
    space: dict[str, Param]
    settings: TuneSettings
    storage: str | None = None
    study: str = ""
    root: Path = ROOT
    incumbent: dict[str, Any] | None = None  # stage 1's first trial: the configuration to beat (search.plan_stage)

    def __post_init__(self) -> None:
        check_space(self.base, self.space)
        if not self.study:
            object.__setattr__(self, "study", default_study_name(self))

    def plan(self) -> dict[str, Any]:
        """What identifies the search: resuming with anything else changed is refused (the device may differ)."""
        base = self.base.to_dict()
        base["train"].pop("device", None)
        plan = {"settings": asdict(self.settings), "space": {k: str(p) for k, p in self.space.items()}, "base": base}
        return plan if self.incumbent is None else {**plan, "incumbent": self.incumbent}

    def open(self, worker: int = 0) -> StudyHandle:
        """Open (or create) the study, with this worker's sampler seed."""
        strategy = STRATEGIES.get(self.settings.strategy)()
        sampler = strategy.sampler(self.settings.seed + worker)
        return open_study(self.storage, self.study, self.plan(), sampler, PRUNERS.get(self.settings.prune)(self.settings.grace), self.root)

    def __repr__(self) -> str:
        return f"Search({self.study!r}, {self.settings.strategy}, {len(self.space)} params, {self.settings.trials} trials)"


def default_study_name(search: Search) -> str:
    """data-model-strategy-<8 hex of the plan>: the same command finds the same study again."""
    digest = hashlib.sha1(json.dumps(search.plan(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{search.base.data.name}-{search.base.model.name}-{search.settings.strategy}-{digest}"


def check_space(base: RunConfig, space: dict[str, Param]) -> None:
    """Refuse keys a trial cannot set, and values the config rejects, before any trial runs."""
    for key in space:
        if "." not in key:
            raise ConfigError(f"search space key '{key}' must be a dotted config key, e.g. train.lr or model.hidden")
        if key.startswith("data."):
            raise ConfigError(f"'{key}' cannot be searched: every trial must see the same data; search model.* and train.* keys")
        if key == "train.epochs":
            raise ConfigError("'train.epochs' is set by the search (tune.epochs, tune.epoch_growth); remove it from the space")
    # Both ends of every range must make a valid config (unknown keys get the config's suggestion;
    # a momentum range reaching 1 is refused by the recipe).
    lows = {k: p.from_t(p.t_range()[0]) if p.numeric else p.options[0] for k, p in space.items()}
    highs = {k: p.from_t(p.t_range()[1]) if p.numeric else p.options[-1] for k, p in space.items()}
    every_choice = [{**lows, k: c} for k, p in space.items() if not p.numeric for c in p.options]
    for values in (lows, highs, *every_choice):
        trial_config(base, values, 1)


def trial_config(base: RunConfig, values: dict[str, Any], epochs: int, device: str | None = None) -> RunConfig:
    """The run config of one trial: base < sampled values < epochs (a scalar for a list key fills every entry)."""
    raw = base.to_dict()
    for key, value in values.items():
        section, name = key.split(".", 1)
        current = raw.setdefault(section, {}).get(name)
        if isinstance(current, list) and not isinstance(value, (list, tuple)):
            value = [value] * len(current)  # e.g. model.hidden = 64 with two hidden layers -> [64, 64]
        raw[section][name] = value
    raw["train"]["epochs"] = epochs
    if device is not None:
        raw["train"]["device"] = device
    return build_config(raw)


def _finite(x: Any) -> Any:
    """JSON-portable numbers: NaN/inf (a diverged loss) become None."""
    return x if not isinstance(x, float) or math.isfinite(x) else None


def outcome(trial: optuna.trial.FrozenTrial) -> Outcome:
    """What planning sees of a finished trial (score only when it completed)."""
    stage, slot = slot_of(trial)
    score = trial.value if trial.state == TrialState.COMPLETE else None
    return Outcome(stage, slot, dict(trial.user_attrs.get("config", {})), score)


class Planner:
    """Plans stages from the study's finished trials and enqueues missing slots; caches immutable plans."""

    def __init__(self, search: Search) -> None:
        self.search = search
        self._plans: dict[int, StagePlan] = {}

    def plan(self, stage: int, trials: Sequence[optuna.trial.FrozenTrial]) -> StagePlan:
        """The plan of `stage`; valid once every stage before it has finished."""
        if stage not in self._plans:
            done = [outcome(t) for t in slot_trials(list(trials)).values() if t.state.is_finished()]
            self._plans[stage] = plan_stage(stage, self.search.space, self.search.settings, done, self.search.incumbent)
        return self._plans[stage]

    def next_step(self, handle: StudyHandle) -> tuple[str, StagePlan | None, list[int]]:
        """('missing', plan, slots to enqueue), ('waiting', plan, []) while a stage runs, or ('done', None, [])."""
        trials = handle.trials()
        slots = slot_trials(trials)
        for stage in range(1, self.search.settings.num_stages() + 1):
            plan = self.plan(stage, trials)
            missing = [i for i in range(len(plan.configs)) if (stage, i) not in slots]
            if missing:
                return "missing", plan, missing
            if not all(slots[(stage, i)].state.is_finished() for i in range(len(plan.configs))):
                return "waiting", plan, []
        return "done", None, []

    def advance(self, handle: StudyHandle) -> str:
        """Enqueue the next missing slots (at most `ENQUEUE_BATCH`): 'enqueued', 'waiting' (trials of the stage still run) or 'done'.

        A batch at a time, so a large search starts training at once instead of first
        writing every trial to the study; the next call enqueues the next batch.
        """
        state, plan, missing = self.next_step(handle)
        if state != "missing":
            return state
        for i in missing[:ENQUEUE_BATCH]:
            if (plan.stage, i) in slot_trials(handle.trials()):
                continue  # another worker or machine enqueued it meanwhile
            config = plan.configs[i]
            params = {} if config is None else {plan.space[k].study_name(k): plan.space[k].stored(v) for k, v in config.items()}
            enqueue(handle, plan.stage, i, params, plan.epochs)
        return "enqueued"


def run_trial(handle: StudyHandle, trial: optuna.Trial, plan: StagePlan, search: Search, data: Dataset, *, device: str | None = None, callbacks: Sequence[object] = ()) -> None:
    """Train one claimed trial through `babysit.build.run` and tell Optuna how it ended.

    COMPLETE with the last epoch's validation accuracy; PRUNED when the divergence guard
    (NaN/inf or > divergence_factor x the first loss) or the pruner stopped it; FAIL with
    the reason when the sampled config cannot train. Ctrl-C marks the trial for re-queueing.
    """
    trial_id = handle.trial_id(trial.number)
    values = {key: param.suggest(trial, key) for key, param in plan.space.items()}
    trial.set_user_attr("config", values)
    guard = DivergenceGuard(search.settings.divergence_factor)
    try:
        with heartbeat(handle, trial_id):
            cfg = trial_config(search.base, values, plan.epochs, device)
            # A trial is ranked on validation and its test numbers are never read: it tests on one view, not
            # the augmentation's averaged views (data.test_augment), which cost several test passes.
            result = run(cfg, callbacks=[guard, OptunaReporter(trial), *callbacks], progress=False, data=replace(data, test_views=())).result
    except KeyboardInterrupt:
        fail_trial(handle, trial_id, STALE_KEY, INTERRUPTED)
        raise
    except Exception as e:  # a config that cannot train (bad value, out of memory) fails its trial, not the search
        trial.set_user_attr("status", FAILED)
        trial.set_user_attr("reason", mask(f"{type(e).__name__}: {e}".splitlines()[0]))
        handle.study.tell(trial, state=TrialState.FAIL)
        return
    history = [{k: _finite(v) for k, v in r.items()} for r in result.history.records]
    trial.set_user_attr("status", result.status)
    trial.set_user_attr("reason", mask(result.stop_reason))
    trial.set_user_attr("history", history)
    trial.set_user_attr("seconds", round(result.seconds, 3))
    if guard.diverged_at is not None:
        trial.set_user_attr("diverged_at", guard.diverged_at)
    if result.status == COMPLETED:
        handle.study.tell(trial, history[-1]["val_accuracy"])
    else:
        handle.study.tell(trial, state=TrialState.PRUNED)


def work(
    search: Search,
    data: Dataset,
    *,
    worker: int = 0,
    device: str | None = None,
    on_change: Callable[[], None] | None = None,
    callbacks: Sequence[object] = (),
    stop_when: Callable[[list[optuna.trial.FrozenTrial]], bool] | None = None,
) -> int:
    """The worker loop (module docstring) until the search is done; returns how many trials it trained.

    `on_change` is called after each trial and while waiting; `callbacks` join every trial's training.
    `stop_when` is asked with the study's trials before each claim: True ends the loop with the search
    unfinished (a budget that is spent claims no more trials, whose fixed costs alone would overrun it;
    a first stage whose incumbent no trial beat is not worth a second).
    """
    handle = search.open(worker)
    planner = Planner(search)
    trained = 0
    notify = on_change or (lambda: None)
    while stop_when is None or not stop_when(handle.trials()):
        reap(handle)
        trial = claim(handle)
        if trial is not None:
            try:
                plan = planner.plan(trial.user_attrs["stage"], handle.trials())
                run_trial(handle, trial, plan, search, data, device=device, callbacks=callbacks)
            except KeyboardInterrupt:  # also between the claim and the training: the slot goes back to the queue
                fail_trial(handle, handle.trial_id(trial.number), STALE_KEY, INTERRUPTED)
                raise
            trained += 1
            notify()
            continue
        state = planner.advance(handle)
        if state == "done":
            return trained
        if state == "waiting":
            notify()
            time.sleep(POLL_S)
    return trained


MODES: Registry = Registry("execution mode")


@MODES.register("panda")
def panda(search: Search, data: Dataset, workers: int, on_change: Callable[[], None], callbacks: Sequence[object]) -> None:
    """One trial at a time, in this process: babysit one model when compute is scarce."""
    work(search, data, on_change=on_change, callbacks=callbacks)


def worker_devices(workers: int, device: str) -> list[str | None]:
    """One GPU per worker where there are GPUs (round robin), else None (the config's device)."""
    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    return [f"cuda:{i % gpus}" for i in range(workers)] if gpus else [None] * workers


def _exit_with_parent() -> None:
    """Stop this worker the moment its parent dies (SIGKILL included), so no orphan trains on.

    multiprocessing gives a spawned child a sentinel that becomes readable when its parent
    is gone; a daemon thread waits on it and ends the process. The trial it was training
    stays RUNNING with a dead pid, so the next run of the command re-queues its slot.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)  # the parent is gone: nobody is left to report to

    threading.Thread(target=watch, name="babysit-parent-watch", daemon=True).start()


def _worker_main(search: Search, data: Dataset, index: int, device: str | None, threads: int) -> None:
    """Entry point of a caviar worker process: SIGTERM (from its parent, or anyone) re-queues its trial and ends it with 143."""
    _exit_with_parent()
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with interrupts_as_exceptions():
            work(search, data, worker=index, device=device)
    except BabysitError as e:
        print(f"error: {mask(str(e))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        sys.exit(exit_code(e))


def _stop_workers(procs: Sequence[multiprocessing.process.BaseProcess], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every live worker (each re-queues its trial and exits), then SIGKILL any still alive after `grace_s`.

    Workers that got Ctrl-C themselves (the terminal signals the whole group) are given
    a moment to finish re-queueing their trial before the SIGTERM could cut it short.
    """
    end = time.monotonic() + min(2.0, grace_s)
    for p in procs:
        p.join(timeout=max(0.0, end - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
    end = time.monotonic() + grace_s
    for p in procs:
        p.join(timeout=max(0.0, end - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()


@MODES.register("caviar")
def caviar(search: Search, data: Dataset, workers: int, on_change: Callable[[], None], callbacks: Sequence[object]) -> None:
    """N worker processes pulling trials from one study: train many in parallel when compute is plentiful.

    `callbacks` live in this process and cannot follow trials into the workers; they are not used.
    """
    devices = worker_devices(workers, search.base.train.device)
    # CPU workers share the cores: each gets its slice of torch threads instead of oversubscribing.
    threads = max(1, cpu_cores() // workers)
    ctx = multiprocessing.get_context("spawn")  # a clean interpreter per worker: safe with torch threads and CUDA
    procs = [ctx.Process(target=_worker_main, args=(search, data, i, devices[i], threads), name=f"babysit-tune-{i}") for i in range(workers)]
    try:
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs):
            on_change()
            time.sleep(POLL_S)
    except BaseException:  # Ctrl-C, SIGTERM or an error here: the workers follow their parent
        _stop_workers([p for p in procs if p.pid is not None])
        raise
    finally:
        for p in procs:
            if p.pid is not None:
                p.join()
    failed = [f"worker {i} exit code {p.exitcode}" for i, p in enumerate(procs) if p.exitcode]
    if failed and Planner(search).next_step(search.open())[0] != "done":
        raise BabysitError(f"{'; '.join(failed)} before the search finished; re-run the same command to resume it")


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers() -> int:
    """Caviar's default: one worker per GPU, else one per CPU core."""
    return torch.cuda.device_count() or cpu_cores()


@dataclass
class Execution:
    """How to run a search (does not change its results): 'panda' or 'caviar', and caviar's worker count.

    Args:
        mode: a name from `MODES`.
        workers: caviar's worker processes, an upper bound: `worker_count` starts no more
            than the trials left, the CPU cores (unless `oversubscribe`) and what memory holds.
        oversubscribe: allow more workers than CPU cores (`babysit tune --oversubscribe`),
            e.g. when trials wait on I/O or a remote GPU; still at most the trials left
            and what memory holds.
    """

    mode: str = "panda"
    workers: int = field(default_factory=default_workers)
    oversubscribe: bool = False

    def __post_init__(self) -> None:
        MODES.get(self.mode)
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")


# What one caviar worker costs before its trial's own tensors: a fresh interpreter with torch
# imported (measured ~140 MB resident) plus its copy of the data set, rounded up for the trial.
WORKER_BYTES = 300 * 2**20


def trials_left(search: Search, handle: StudyHandle) -> int:
    """The search's trials not yet finished (at least 1): more workers than this would only wait."""
    finished = sum(t.state.is_finished() for t in slot_trials(handle.trials()).values())
    return max(1, search.settings.trials - finished)


def worker_count(requested: int, left: int, *, oversubscribe: bool = False, data_bytes: int = 0, memory: int | None = None) -> tuple[int, str]:
    """How many caviar workers to start, and a line saying why when fewer than `requested` (else "").

    Bounded before anything is spawned: by the trials left, by the CPU cores unless
    `oversubscribe`, and by the memory available (`memory` bytes, default what the
    system has now) at `WORKER_BYTES` plus a copy of the data per worker.
    """
    cores = cpu_cores()
    available = available_memory() if memory is None else memory
    by_memory = max(1, available // (WORKER_BYTES + data_bytes))
    bounds = {"{} trials left": left, "memory for {} workers": by_memory}
    if not oversubscribe:
        bounds["{} CPU cores"] = cores
    n = max(1, min(requested, *bounds.values()))
    if n == requested:
        return n, ""
    why = ", ".join(name.format(value) for name, value in bounds.items() if value == n)
    hint = "" if oversubscribe or cores != n else "; --oversubscribe allows more workers than cores"
    return n, f"caviar: {requested} workers asked, {n} started (bounded by {why}){hint}"


def execute(
    search: Search,
    execution: Execution,
    data: Dataset | None = None,
    on_change: Callable[[], None] | None = None,
    callbacks: Sequence[object] = (),
    notify: Callable[[str], None] | None = None,
) -> StudyHandle:
    """Run (or resume) `search` to the end; returns the study handle for the results.

    Args:
        on_change: called whenever the study may have changed (the live view's refresh).
        callbacks: training callbacks for every trial run in this process (panda).
        notify: shows a one-line note (how many caviar workers were started, when fewer than asked); default stderr.
    """
    handle = search.open()  # creates the study, or refuses a changed search, before any worker starts
    data = data if data is not None else load_data(search.base.data)
    execution, note = bounded(execution, search, handle, data)
    if note:
        (notify or (lambda line: print(line, file=sys.stderr)))(note)
    MODES.get(execution.mode)(search, data, execution.workers, on_change or (lambda: None), callbacks)
    return handle


def bounded(execution: Execution, search: Search, handle: StudyHandle, data: Dataset | None = None) -> tuple[Execution, str]:
    """`execution` with caviar's workers bounded by `worker_count` (panda is left as it is), and the note saying why."""
    if execution.mode != "caviar":
        return execution, ""
    size = 0 if data is None else sum(t.numel() * t.element_size() for split in (data.train, data.val, data.test) for t in (split.x, split.y))
    workers, note = worker_count(execution.workers, trials_left(search, handle), oversubscribe=execution.oversubscribe, data_bytes=size)
    return replace(execution, workers=workers), note
