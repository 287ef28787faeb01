"""The run record: one folder per run under runs/<name>/, written as the run happens.

The schema is a contract that the report, the diagnosis and the tuner read; it
is documented in docs/run-record.md:

    config.json     RunConfig.to_dict()
    env.json        versions, device, threads, hostname, start time
    metrics.jsonl   one History record per epoch, appended and flushed as it arrives
    probes.jsonl    one line per probed step (babysit.watch records)
    events.jsonl    {"step", "event", "detail"}: started, resumed, diverged, completed, ...
    summary.json    FitResult.summary() plus best_epoch and steps, written at the end
    program.json    the training program's facts (watch.program), rewritten at epoch ends (at most 1% of the time) and at the end
    checkpoints/    best.pt and last.pt (babysit.train.checkpoint)

JSON lines are appended and flushed line by line, so a run killed at any moment
keeps everything up to the kill; a final line cut short by the kill is skipped
when reading. Non-finite numbers are written as JSON's NaN / Infinity.
"""

from __future__ import annotations

import json
import os

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent writers of one folder are not detected there
    fcntl = None  # type: ignore[assignment]
import platform
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from babysit.errors import ConfigError, DataError
from babysit.io import Throttle, atomic_write_json, atomic_write_text, loads_json
from babysit.secrets import mask_argv, mask_obj
from babysit.status import FAILED, INCOMPLETE, INTERRUPTED, RUN, check, read
from babysit.train.history import History

if TYPE_CHECKING:
    from babysit.train.state import TrainState

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


# program.json's rewrites take at most this share of a run's time (`RunRecorder.program`).
PROGRAM_SHARE = 0.01


def append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    """Append one JSON line and flush it to the OS at once (a SIGKILL cannot lose it)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj) + "\n")


def tee(*sinks: Callable[[Any], None] | None) -> Callable[[Any], None]:
    """One sink that hands each record to every given sink, in order (None: left out); e.g. the recorder's and the live TensorBoard's."""
    given = [s for s in sinks if s is not None]
    if len(given) == 1:
        return given[0]

    def each(record: Any) -> None:
        for sink in given:
            sink(record)

    return each


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON-lines file ([] if absent); a last line cut short by a kill is skipped."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(loads_json(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # written when the run was killed
            raise DataError(f"{path}, line {i + 1}: not valid JSON; the run record is damaged") from None
    return out


def _read_json(path: Path) -> Any:
    try:
        return loads_json(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read '{path}' ({e}); the run record is damaged") from None


def environment(device: torch.device) -> dict[str, Any]:
    """What ran the run: versions, device, threads, host, process and start time."""
    from babysit import __version__

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "babysit": __version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "pid": os.getpid(),
        "argv": mask_argv(sys.argv),  # a password or token on the command line never reaches the record
        "start_time": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


CHECK_OUTPUT = frozenset({"check.json", "lr_range.png"})
# The writer's lock: held (flock) by the one process writing a run folder, with its pid inside.
LOCK = ".lock"
_HELD: dict[Path, int] = {}  # this process's locks: folder -> open descriptor


def hold_run(path: Path) -> None:
    """Take the run folder's writer lock for this process, or refuse (ConfigError naming the pid) when another holds it.

    The lock is an flock on `path/.lock`: the kernel drops it when the process ends,
    however it ends, so a killed run never leaves its folder locked.
    """
    path = Path(path)
    if path in _HELD or fcntl is None:
        return
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(_busy(path, run_holder(path))) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[path] = fd


def release_run(path: Path) -> None:
    """Drop this process's writer lock on `path` (and its lock file); nothing when it holds none."""
    fd = _HELD.pop(Path(path), None)
    if fd is not None:
        Path(path, LOCK).unlink(missing_ok=True)
        os.close(fd)


def run_holder(path: Path) -> int | None:
    """The pid of another live process writing the run folder `path`, or None (0 when its pid cannot be read)."""
    lock = Path(path) / LOCK
    if fcntl is None or Path(path) in _HELD or not lock.is_file():
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it: a run killed earlier left the file
    except OSError:
        text = os.read(fd, 32).decode(errors="replace").strip()
        return int(text) if text.isdigit() else 0
    finally:
        os.close(fd)


def _busy(path: Path, pid: int | None) -> str:
    who = f"another babysit process (pid {pid})" if pid else "another babysit process"
    return f"run '{path}' is being written by {who}; wait for it to end, or use another run name"


def holds_only_checks(path: Path) -> bool:
    """True for a folder holding nothing but what `babysit check --out` writes, which a run may join."""
    if not path.is_dir():
        return False
    held = {p.name for p in path.iterdir() if not p.name.startswith(".")}
    return bool(held) and held <= CHECK_OUTPUT


def create_run_dir(runs_dir: str | Path, name: str | None, stem: str) -> Path:
    """A new, empty runs/<name>/ folder (or one holding only `babysit check --out` output); a taken
    `name` is an error, a generated one gets a suffix.

    Args:
        runs_dir: the folder holding runs (created if missing).
        name: the run's name; None generates `<stem>-<date>-<time>`.
        stem: the start of generated names, e.g. "digits-mlp".
    """
    root = Path(runs_dir)
    if name is not None:
        if not NAME.fullmatch(name):
            raise ConfigError(f"run name {name!r} must be letters, digits, '.', '_' or '-' (no slashes), e.g. --name digits-lr1e-3")
        path = root / name
        if holds_only_checks(path):
            hold_run(path)
            return path  # `babysit check --out runs/<name>` first: the run joins its preflight report
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            holder = run_holder(path)
            if holder is not None:
                raise ConfigError(_busy(path, holder)) from None
            if not (path / "config.json").is_file():
                raise ConfigError(f"run '{path}' already exists without a run record yet (another process is creating it, or the folder is not a run); pick another run name") from None
            raise ConfigError(f"run '{path}' already exists; pick another run name, or continue it with `babysit train --resume {path}`") from None
        hold_run(path)
        return path
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir(exist_ok=False)  # atomic: two processes starting in the same second get distinct folders
            hold_run(path)
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"could not find a free run name starting with '{base}' in '{root}'; pass a run name")


class RunRecorder:
    """Callback writing a run record: config and environment at the start, metrics per epoch,
    events, the summary at the end; `probe` is the sink for `babysit.watch` records.

    Args:
        path: the run folder (runs/<name>/), already created.
        config: RunConfig.to_dict() of the run.
        resumed: the run continues from a checkpoint: the metrics and probes written
            after that checkpoint are dropped (the resumed run writes them again) and
            a "resumed" event is added; config.json and env.json are kept.
    """

    def __init__(self, path: str | Path, config: dict[str, Any], *, resumed: bool = False) -> None:
        self.path = Path(path)
        self.config = config
        self.resumed = resumed
        self.state: TrainState | None = None  # set once the run has started
        self._program_facts: dict[str, Any] | None = None  # program facts not yet on disk (`program`)
        self._program_writes = Throttle(PROGRAM_SHARE)  # when program.json may be rewritten next
        self._finished = False

    def event(self, step: int, event: str, detail: Any = "") -> None:
        """Append one line to events.jsonl (its detail with secrets masked)."""
        append_jsonl(self.path / "events.jsonl", {"step": step, "event": event, "detail": mask_obj(detail), "time": time.time()})

    def probe(self, record: dict[str, Any]) -> None:
        """Append one probed step to probes.jsonl (the watch's sink)."""
        append_jsonl(self.path / "probes.jsonl", record)

    def program(self, facts: dict[str, Any]) -> None:
        """Rewrite program.json with the program observer's facts so far (its sink), atomically, at most `PROGRAM_SHARE` of the time.

        An atomic rewrite costs a few milliseconds (the fsync), a few per cent of a small
        model's epoch: between rewrites at least 1/`PROGRAM_SHARE` times the last one's
        cost passes, the facts held meanwhile are written by `finish` (or by the next
        call that may write), so the record's last facts are never lost.
        """
        self._program_facts = facts
        if not self._program_writes.ready():
            return
        start = time.perf_counter()
        atomic_write_json(self.path / "program.json", facts)
        self._program_facts = None
        if not self._finished:
            self._program_writes.wrote(start)

    @property
    def started(self) -> bool:
        return self.state is not None

    def on_fit_start(self, state: TrainState) -> None:
        self.state = state
        if self.resumed:
            # Keep what the checkpoint covers; the steps after it are recomputed identically.
            metrics = "".join(json.dumps(r) + "\n" for r in state.history.records)
            atomic_write_text(self.path / "metrics.jsonl", metrics)
            probes = [p for p in read_jsonl(self.path / "probes.jsonl") if p["step"] <= state.step]
            atomic_write_text(self.path / "probes.jsonl", "".join(json.dumps(p) + "\n" for p in probes))
            (self.path / "summary.json").unlink(missing_ok=True)
            env = environment(state.device)
            self.event(state.step, "resumed", f"from epoch {state.epoch} on {env['hostname']} ({env['device']}), pid {env['pid']}")
            return
        self.start(state.device, f"{state.total_steps} steps planned")

    def start(self, device: torch.device, detail: str = "") -> None:
        """Write config.json, env.json and the "started" event (a fresh run; `on_fit_start` calls it)."""
        atomic_write_json(self.path / "config.json", self.config)
        atomic_write_json(self.path / "env.json", environment(device))
        self.event(0, "started", detail)

    def on_epoch_end(self, state: TrainState) -> None:
        append_jsonl(self.path / "metrics.jsonl", state.history.records[-1])

    def on_fit_end(self, state: TrainState) -> None:
        result = state.result
        best = result.history.best("val_accuracy")
        summary = {**result.summary(), "best_epoch": best["epoch"] if best else None, "steps": state.step}
        self.finish(summary)

    def finish(self, summary: dict[str, Any]) -> None:
        """Write the ending event (`summary["status"]`, one of `status.RUN`, and its stop reason) and summary.json."""
        check(summary["status"], RUN, "a run record's")
        summary = mask_obj(summary)  # an error's text (the stop reason) may quote a URL with its password
        self._finished = True  # from here on, every program call writes at once
        self._program_writes.release()
        if self._program_facts is not None:
            self.program(self._program_facts)
        self.event(summary["steps"], summary["status"], summary.get("stop_reason", ""))
        atomic_write_json(self.path / "summary.json", summary)
        release_run(self.path)  # the record is complete: the folder is free for --resume or a report

    def fail(self, error: BaseException) -> None:
        """Record a started run that ended with an exception ("interrupted" for Ctrl-C and SIGTERM, else "failed").

        Best effort: when the disk that refused the run refuses the summary too, the
        record stays as it was (readable, "incomplete") and the first error is the one reported.
        """
        status = INTERRUPTED if isinstance(error, KeyboardInterrupt) else FAILED
        detail = f"{type(error).__name__}: {error}"
        step = self.state.step if self.state is not None else 0
        try:
            self.finish({"status": status, "stop_reason": detail, "steps": step})
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"RunRecorder({str(self.path)!r}, resumed={self.resumed})"


@dataclass
class RunRecord:
    """A run record read back from disk (see docs/run-record.md for every field)."""

    path: Path
    config: dict[str, Any]
    env: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    program: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        """The summary's status (one of `status.RUN`, "unknown" for anything else); "incomplete" when there is none (killed, or still running)."""
        if not self.summary:
            return INCOMPLETE
        return read(self.summary["status"], RUN)  # no status at all: a KeyError, the summary is damaged

    def best(self, key: str = "val_accuracy", mode: str = "max") -> dict[str, Any] | None:
        """The epoch record with the best finite `key`, or None."""
        return History(self.metrics).best(key, mode)

    def _repr_html_(self) -> str:
        """In a Jupyter notebook: the run's facts, findings and learning curves (plots inline)."""
        from babysit.report.run_report import run_html  # the report (matplotlib) loads only when a notebook asks

        return run_html(self.path)

    def __repr__(self) -> str:
        return f"RunRecord({self.name!r}, status={self.status!r}, epochs={len(self.metrics)}, probes={len(self.probes)})"


def load_run(path: str | Path, *, probes: bool = True) -> RunRecord:
    """Read runs/<name>/ back; `probes=False` skips probes.jsonl (the largest file) for listings.

    Example:
        >>> run = load_run("runs/digits-mlp-20240101-120000")   # doctest: +SKIP
        >>> run.status, run.best()["val_accuracy"], run.probes[0]["layers"].keys()
    """
    p = Path(path)
    if not (p / "config.json").is_file():
        raise DataError(f"'{p}' is not a run record (no config.json); runs live in runs/<name>/, see `babysit runs`")
    env_path, summary_path, program_path = p / "env.json", p / "summary.json", p / "program.json"
    return RunRecord(
        path=p,
        config=_read_json(p / "config.json"),
        env=_read_json(env_path) if env_path.is_file() else {},
        metrics=read_jsonl(p / "metrics.jsonl"),
        probes=read_jsonl(p / "probes.jsonl") if probes else [],
        events=read_jsonl(p / "events.jsonl"),
        summary=_read_json(summary_path) if summary_path.is_file() else None,
        program=_read_json(program_path) if program_path.is_file() and probes else None,
    )


def list_runs(runs_dir: str | Path) -> list[RunRecord]:
    """Every run record under `runs_dir` (without probes), oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    runs = [load_run(d, probes=False) for d in root.iterdir() if (d / "config.json").is_file()]
    return sorted(runs, key=lambda r: (r.env.get("start_time", ""), r.name))
