"""The study store: where trials live, how workers claim them, and how dead workers' trials come back.

Storage. The default is Optuna's JournalFile storage in `runs/tune/<study>/journal.log`.
We chose it over SQLite because it is made for several processes on one machine:
an append-only JSON-lines log written under a file lock, so concurrent workers
never hit SQLite's "database is locked" errors, a SIGKILL can at worst leave an
unfinished last line (which readers skip), and no server is needed. The lock is a
kernel flock (`FlockLock`), which a killed worker cannot leave behind. Any Optuna
RDB URL works too (`postgresql://user@host/db` for several machines; `sqlite:///`
is accepted, with a long lock timeout, but the journal is the better local store).

Work protocol (the same for one process, many processes, or many machines):
  - each trial carries its `stage` and `slot` (user attributes); the trials of a
    stage are enqueued as WAITING trials, one per slot;
  - a worker claims a WAITING trial with the storage's atomic WAITING -> RUNNING
    transition (exactly one claimant wins), then records its host and pid;
  - if two planners raced and enqueued the same slot twice, the lowest-numbered
    trial is the slot's trial and a later one is failed as a duplicate when claimed;
  - a RUNNING trial is stale when its worker's process is gone (same host) or its
    heartbeat is older than STALE_AFTER_S (any host); it is marked and failed, and
    its slot is enqueued again, so nothing completed is ever touched.

A torn journal. A crash mid-append can leave a last line without its newline (or
not valid JSON). Optuna skips it when reading, but its next append would glue a
new record onto it and make the journal unreadable from there on; so opening a
journal first sets such a tail aside in `<journal>.torn-<time>` beside it (under
the write lock, so a live writer's line is never taken for a torn one) and warns.
Only the torn operation is lost: a trial whose "completed" record was torn is still
RUNNING, its worker is gone, and the reaper re-queues its slot.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, ProgrammingError

from babysit.errors import ConfigError, StoreError
from babysit.io import atomic_write_bytes, loads_json
from babysit.secrets import mask, mask_obj

try:
    import fcntl
except ImportError:  # Windows: Optuna's own lock files instead
    fcntl = None

ROOT = Path("runs") / "tune"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 4 * HEARTBEAT_S
PLAN_KEY = "babysit:plan"
WORKER_KEY = "babysit:worker"
HEARTBEAT_KEY = "babysit:heartbeat"
STALE_KEY = "babysit:stale"
DUPLICATE_KEY = "babysit:duplicate_of"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def study_dir(name: str, root: Path = ROOT) -> Path:
    """The folder of a study's default store and report: runs/tune/<name>/."""
    return root / name


def open_storage(url: str | None, name: str, root: Path = ROOT) -> tuple[BaseStorage, str]:
    """The storage at `url` (an Optuna RDB URL, or a journal file path), or the default journal; and where it is."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"study name {name!r} must be letters, digits, '_', '.' or '-' (at most 100), e.g. --study lr-search")
    if url is None or "://" not in url:
        path = Path(url) if url else study_dir(name, root) / "journal.log"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"cannot create the study folder '{path.parent}': a file is in the way; move it or pass another --storage") from None
        if path.is_dir():
            raise StoreError(f"journal '{path}' is a folder; pass a file path to --storage, e.g. {path / 'journal.log'}")
        lock = FlockLock(f"{path}.flock") if fcntl is not None else optuna.storages.journal.JournalFileOpenLock(str(path))
        repair_journal(path, lock)
        backend = optuna.storages.journal.JournalFileBackend(str(path), lock_obj=lock)
        return optuna.storages.JournalStorage(backend), str(path)
    # A long busy timeout makes SQLite writers wait for the lock instead of failing.
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs), _redact(url)
        except (IntegrityError, ProgrammingError) as e:
            # Machines starting at once on a fresh database race to create Optuna's tables
            # (PostgreSQL's CREATE TABLE IF NOT EXISTS is not atomic); the loser finds them next time.
            error: Exception = e
            time.sleep(0.5 * (attempt + 1))
        except ModuleNotFoundError as e:
            raise ConfigError(f"storage {_redact(url)} needs the Python driver '{e.name}'; install it (for PostgreSQL: pip install psycopg2-binary)") from None
        except Exception as e:  # sqlalchemy's URL and connection errors: one line naming the store
            error = e
            break
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise ConfigError(f"cannot open storage {_redact(url)}: {reason}; check the URL (e.g. postgresql://user:password@host:5432/db) and that the server is running")


def _torn_tail(data: bytes) -> int:
    """Where the torn tail of a journal starts (len(data) when there is none).

    The tail is the last line when it is not a JSON object (a record cut anywhere
    before its closing brace); a bad line followed by good ones is damage in the
    middle, which no repair can undo safely.
    """
    lines = data.splitlines(keepends=True)
    offset = 0
    for i, line in enumerate(lines):
        try:
            complete = not line.strip() or isinstance(loads_json(line), dict)
        except ValueError:  # JSONDecodeError, and UnicodeDecodeError for cut multi-byte text
            complete = False
        if not complete:
            if i < len(lines) - 1:
                raise StoreError(f"journal line {i + 1} of {len(lines)} is damaged, with records after it")
            return offset
        offset += len(line)
    return offset


def repair_journal(path: Path, lock: Any) -> Path | None:
    """Set a journal's torn last line aside in `<journal>.torn-<time>`, warn, and return that file (None: intact).

    `lock` is the journal's write lock, held meanwhile so a worker's append in progress
    is never mistaken for a torn one.
    """
    if not path.is_file():
        return None
    lock.acquire()
    try:
        try:
            data = path.read_bytes()
            start = _torn_tail(data)
        except StoreError as e:
            raise StoreError(f"{e} in '{path}'; restore it from a backup or pass --study NEW_NAME to start afresh") from None
        except OSError as e:
            raise StoreError(f"cannot read journal '{path}' ({e.strerror}); check its permissions") from None
        if start == len(data):
            if data and not data.endswith(b"\n"):  # a whole record cut just before its newline: keep it
                with open(path, "ab") as f:
                    f.write(b"\n")
            return None
        aside = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        atomic_write_bytes(aside, data[start:])  # first keep the tail, then cut it off
        with open(path, "r+b") as f:
            f.truncate(start)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
    warnings.warn(f"journal '{path}' ended in a torn record ({len(data) - start} bytes, from a crash); set aside in '{aside.name}', every complete record kept", stacklevel=2)
    return aside


class FlockLock:
    """The journal's write lock as a kernel `flock`: the OS releases it the moment its holder dies.

    Optuna's default journal locks are lock *files*; a worker SIGKILLed while appending
    leaves the file behind and every other process waits out a 30 s grace period before
    breaking it. A kernel lock cannot be left behind. (Local file systems; Optuna's
    lock files remain the choice for NFS.) Duck-types Optuna's journal lock: acquire, release.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"FlockLock({self.path!r})"


def _redact(url: str) -> str:
    """The URL without its password or tokens, for messages and reports."""
    return mask(url)


@dataclass
class StudyHandle:
    """An open study plus the storage calls the work protocol needs."""

    study: optuna.Study
    storage: BaseStorage
    where: str
    study_id: int

    @property
    def name(self) -> str:
        return self.study.study_name

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def trials(self, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states)

    def __repr__(self) -> str:
        return f"StudyHandle({self.name!r} at {self.where}, trials={len(self.trials())})"


def open_study(
    url: str | None,
    name: str,
    plan: dict[str, Any],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    root: Path = ROOT,
) -> StudyHandle:
    """Create the study, or load it to resume; a study started with a different `plan` is refused."""
    storage, where = open_storage(url, name, root)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True)
    stored = study.user_attrs.get(PLAN_KEY)
    canonical = mask_obj(loads_json(json.dumps(plan)))  # the study's attributes never hold a password
    if stored is None:
        study.set_user_attr(PLAN_KEY, canonical)
    elif stored != canonical:
        changed = sorted(k for k in set(stored) | set(canonical) if stored.get(k) != canonical.get(k))
        raise ConfigError(
            f"study '{name}' in {where} was started with a different search (changed: {', '.join(changed)}); "
            "re-run with the same settings to resume it, or pass --study NEW_NAME to start another"
        )
    return StudyHandle(study, storage, where, storage.get_study_id_from_name(name))


def slot_of(trial: FrozenTrial) -> tuple[int, int] | None:
    """(stage, slot) of a trial babysit enqueued, else None."""
    attrs = trial.user_attrs
    return (attrs["stage"], attrs["slot"]) if "stage" in attrs and "slot" in attrs else None


def superseded(trial: FrozenTrial) -> bool:
    """A trial failed as stale or as a duplicate: its slot is someone else's to fill."""
    return trial.state == TrialState.FAIL and (STALE_KEY in trial.system_attrs or DUPLICATE_KEY in trial.system_attrs)


def slot_trials(trials: list[FrozenTrial]) -> dict[tuple[int, int], FrozenTrial]:
    """Each slot's trial: the lowest-numbered one that is not superseded."""
    out: dict[tuple[int, int], FrozenTrial] = {}
    for t in sorted(trials, key=lambda t: t.number):
        key = slot_of(t)
        if key is not None and not superseded(t):
            out.setdefault(key, t)
    return out


def enqueue(handle: StudyHandle, stage: int, slot: int, params: dict[str, Any], epochs: int) -> None:
    """Add one WAITING trial for (stage, slot) with fixed stored params (empty: the sampler picks)."""
    handle.study.enqueue_trial(params, user_attrs={"stage": stage, "slot": slot, "epochs": epochs})


def _worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def claim(handle: StudyHandle) -> optuna.Trial | None:
    """Atomically take one WAITING trial for this process; None when none is left."""
    for t in handle.trials((TrialState.WAITING,)):
        trial_id = handle.trial_id(t.number)
        try:
            if not handle.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                continue  # another worker won it
            handle.storage.set_trial_system_attr(trial_id, WORKER_KEY, _worker())
            handle.storage.set_trial_system_attr(trial_id, HEARTBEAT_KEY, time.time())
        except UpdateFinishedTrialError:
            continue
        owner = slot_trials(handle.trials()).get(slot_of(t))
        if owner is not None and owner.number != t.number:
            fail_trial(handle, trial_id, DUPLICATE_KEY, owner.number)
            continue
        return optuna.Trial(handle.study, trial_id)
    return None


def fail_trial(handle: StudyHandle, trial_id: int, key: str, why: Any) -> bool:
    """Mark a RUNNING trial with `key` (STALE_KEY: its slot is re-queued) and fail it; False when it had already finished."""
    try:
        handle.storage.set_trial_system_attr(trial_id, key, why)
        handle.storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether a process with this id is running on this machine (POSIX; a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    # A SIGKILLed worker whose parent died stays a zombie until init reaps it, and some
    # container inits never do; Linux shows the state after the last ')' of /proc/<pid>/stat.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def is_stale(worker: dict[str, Any] | None, last_beat: float, now: float, host: str) -> bool:
    """A RUNNING trial is stale when its process is gone (same host, POSIX) or its heartbeat is too old."""
    if worker and worker.get("host") == host and os.name == "posix" and not pid_alive(int(worker["pid"])):
        return True
    return now - last_beat > STALE_AFTER_S


def reap(handle: StudyHandle) -> list[int]:
    """Fail the stale RUNNING trials (their slots are then enqueued again); returns their numbers."""
    now, host, reaped = time.time(), socket.gethostname(), []
    for t in handle.trials((TrialState.RUNNING,)):
        start = t.datetime_start.timestamp() if t.datetime_start else now
        worker = t.system_attrs.get(WORKER_KEY)
        if is_stale(worker, float(t.system_attrs.get(HEARTBEAT_KEY, start)), now, host):
            why = f"worker {worker} stopped during the trial" if worker else "no heartbeat"
            if fail_trial(handle, handle.trial_id(t.number), STALE_KEY, why):
                reaped.append(t.number)
    return reaped


@contextmanager
def heartbeat(handle: StudyHandle, trial_id: int, every: float = HEARTBEAT_S) -> Iterator[None]:
    """Refresh the trial's heartbeat every `every` seconds while the block runs (so other machines see it alive)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                handle.storage.set_trial_system_attr(trial_id, HEARTBEAT_KEY, time.time())
            except UpdateFinishedTrialError:
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
