"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every file babysit saves (checkpoints, run records, reports, exported configs)
goes through here: write a temporary file in the same folder, fsync it, then
`os.replace` it over the target, so a crash or SIGKILL mid-write loses nothing.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from babysit.errors import StoreError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], *, mode: int | None = None) -> Path:
    """Call `write(f)` on a temporary binary file, then atomically move it to `path`.

    A file system that refuses (full disk, no permission, a file where a folder
    should be) raises a one-line `StoreError` naming `path`, and leaves any old
    file at `path` as it was; the temporary file is removed.

    Args:
        mode: the file's permissions (0o600 for owner-only); default what a plain open() gives.
    """
    target = Path(path)
    try:
        return _atomic_write(target, write, mode)
    except StoreError:
        raise
    except OSError as e:
        raise store_error(e, target, "write") from None


def store_error(error: OSError, path: str | Path | None = None, action: str = "use") -> StoreError:
    """A one-line StoreError for a file-system refusal: the path, the system's reason and what to do about it."""
    where = path if path is not None else error.filename
    return StoreError(f"cannot {action} '{where}': {error.strerror or error}; {_fix(error)}")


def _fix(error: OSError) -> str:
    """What to do about a failed write, by its errno."""
    import errno

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


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str, *, mode: int | None = None) -> Path:
    """Write UTF-8 `text` to `path` atomically (with permissions `mode`, if given)."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data), mode=mode)


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
