"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every file babysit saves (checkpoints, run records, reports, exported configs)
goes through here: write a temporary file in the same folder, fsync it, then
`os.replace` it over the target, so a crash or SIGKILL mid-write loses nothing.
"""

from __future__ import annotations

import time

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from babysit.errors import StoreError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], *, mode: int | None = None, size: int | None = None) -> Path:
    """Call `write(f)` on a temporary binary file, then atomically move it to `path`.

    A file system that refuses (full disk, no permission, a file where a folder
    should be) raises a one-line `StoreError` naming `path`, and leaves any old
    file at `path` as it was; the temporary file is removed.

    Args:
        mode: the file's permissions (0o600 for owner-only); default what a plain open() gives.
        size: the bytes `write` writes, when known (a full disk's message says how many were needed).
    """
    target = Path(path)
    try:
        return _atomic_write(target, write, mode)
    except StoreError:
        raise
    except OSError as e:
        raise store_error(e, target, "write", size=size) from None


# File-system refusals that are the machine's or the user's to fix, never a bug in babysit.
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                         errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP, errno.ENOENT, errno.EIO, errno.EMFILE, errno.ENFILE})  # fmt: skip


def store_error(error: OSError, path: str | Path | None = None, action: str = "use", *, size: int | None = None) -> StoreError:
    """A one-line StoreError for a file-system refusal: the path, the system's reason and what to do about it.

    On a full disk it says how much space the write needed (`size` bytes, when known)
    and how much the file system has free.
    """
    where = path if path is not None else error.filename
    what = f"{action} '{where}'" if where is not None else action
    link = _broken_link(Path(where)) if where is not None and error.errno in (errno.EEXIST, errno.ENOTDIR, errno.ENOENT, errno.ELOOP) else None
    if link is not None:
        return StoreError(f"cannot {what}: {link}; fix or remove the link, or pick another path")
    room = ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(Path(where).parent if where is not None else Path.cwd())
        need = f"it needs {_size(size)}" if size is not None else ""
        has = f"{_size(free)} free there" if free is not None else ""
        room = f" ({' and '.join(t for t in (need, has) if t)})" if need or has else ""
    return StoreError(f"cannot {what}: {error.strerror or error}{room}; {_fix(error)}")


def _broken_link(path: Path) -> str | None:
    """What is wrong with a symbolic link on `path` (the path itself or a folder above it): a loop, or a target that does not exist."""
    for part in (path, *path.parents):
        try:
            if not part.is_symlink():
                continue
        except OSError:
            continue
        try:
            part.resolve(strict=True)
        except (RuntimeError, OSError) as e:  # Python raises RuntimeError (3.11) or OSError(ELOOP) for a loop
            if isinstance(e, RuntimeError) or getattr(e, "errno", None) == errno.ELOOP:
                return f"'{part}' is a symbolic link that loops back on itself"
            return f"'{part}' is a symbolic link to '{os.readlink(part)}', which does not exist"
    return None


def _free_bytes(folder: Path) -> int | None:
    for candidate in (folder, *folder.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _size(n: int) -> str:
    """Bytes in a readable unit (1.5 MB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _fix(error: OSError) -> str:
    """What to do about a failed write, by its errno."""
    return {
        errno.ENOSPC: "free some disk space or write elsewhere",
        errno.EDQUOT: "free some disk space or write elsewhere",
        errno.EACCES: "make the folder writable or write elsewhere",
        errno.EPERM: "make the folder writable or write elsewhere",
        errno.EROFS: "the file system is read-only: write elsewhere",
        errno.ENOTDIR: "a file is in the way of a folder on that path: pick another path",
        errno.EISDIR: "a folder is in the way: pass a file name",
        errno.EEXIST: "a file is in the way of a folder on that path: pick another path",
        errno.ENAMETOOLONG: "use a shorter name",
        errno.ELOOP: "the path goes through a symbolic link loop: fix or remove the link, or pick another path",
        errno.ENOENT: "a folder on that path does not exist (or a link points nowhere): create it or pick another path",
        errno.EIO: "the disk reported an input/output error: check it, or write elsewhere",
        errno.EMFILE: "too many files are open: close other programs or raise the limit (ulimit -n)",
        errno.ENFILE: "too many files are open on the system: close other programs",
    }.get(error.errno or 0, "check the path")


def _atomic_write(target: Path, write: Callable[[IO[bytes]], None], mode: int | None = None) -> Path:
    if target.is_dir():
        raise IsADirectoryError(21, "it is a folder", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp creates the file 0600; give it the permissions asked for, or those a plain open() would.
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int | None = None) -> Path:
    """Write `data` to `path` atomically; a full disk's error says how many bytes it needed."""
    return atomic_write(path, lambda f: f.write(data), mode=mode, size=len(data))


def atomic_write_text(path: str | Path, text: str, *, mode: int | None = None) -> Path:
    """Write UTF-8 `text` to `path` atomically (with permissions `mode`, if given)."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN/inf float replaced by None, so it serialises as strict JSON.

    Python's json writes NaN and Infinity, which JSON itself (and jq, browsers,
    most parsers) rejects; a diverged run's test loss is NaN.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def loads_json(text: str) -> Any:
    """`json.loads`, with nesting too deep for Python's parser (a damaged or hostile record) raised as a JSONDecodeError like any other bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to read", text[:100], 0) from None


def json_line(obj: Any) -> str:
    """One line of strict JSON (what `--json` prints for scripts)."""
    return json.dumps(json_safe(obj), allow_nan=False, default=str)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically (NaN/inf kept as JSON's NaN/Infinity)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


class Throttle:
    """Lets a costly write (an atomic rewrite with its fsync) take at most `share` of the time.

    After a write that took t seconds the next may start t / `share` seconds later; `ready` says
    whether it may now, `wrote(start)` records one that began at `start` (`time.perf_counter`),
    and `release` lets the next one through at once (a run that ended).
    """

    def __init__(self, share: float) -> None:
        self.share = share
        self.due: float | None = None

    def ready(self) -> bool:
        return self.due is None or time.perf_counter() >= self.due

    def wrote(self, start: float) -> None:
        done = time.perf_counter()
        self.due = done + (done - start) / self.share

    def release(self) -> None:
        self.due = None
