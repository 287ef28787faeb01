"""A full disk never leaves an unusable folder: config.json comes before any checkpoint, a failed write leaves no
temporary file, and the one-line message says how much space the write needed.

The disk fills in three ways: babysit's atomic write fails in fsync (patched, for the
checkpoints only, as a file system reports ENOSPC), a real 256 kB tmpfs when this machine
lets the test mount one, and Optuna's own journal write failing (patched) under `tune`.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import babysit as bs
from babysit.cli import app

TRAIN = ["train", "--data", "spiral", "--model", "mlp", "--model.hidden=[16]", "--epochs", "3", "--train.device=cpu", "--watch.probes=off", "--json"]


def _full_at(monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """From the `nth` checkpoint write on (1-based), fsync fails with ENOSPC, as on a full file system."""
    real = os.fsync
    seen = {"checkpoints": 0}

    def fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if ".last.pt." in name or ".best.pt." in name:
            seen["checkpoints"] += 1
            if seen["checkpoints"] >= nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr("babysit.io.os.fsync", fsync)


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp")]


def test_a_disk_full_at_the_first_checkpoint_leaves_a_folder_that_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _full_at(monkeypatch, 1)
    result = CliRunner().invoke(app, [*TRAIN, "--runs-dir", str(tmp_path), "--name", "full"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: cannot write") and "checkpoints/last.pt" in error and "No space left on device" in error
    assert "it needs" in error and "free some disk space" in error
    run = tmp_path / "full"
    assert (run / "config.json").is_file() and _temporaries(tmp_path) == [] and not (run / ".lock").exists()
    record = bs.load_run(run)
    assert record.status == "failed" and "No space left" in record.summary["stop_reason"]
    monkeypatch.undo()
    report = CliRunner().invoke(app, ["report", str(run), "--no-per-class"])
    assert report.exit_code == 0, report.output


def test_a_disk_full_at_a_later_checkpoint_resumes_once_space_is_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _full_at(monkeypatch, 4)  # fit start writes last.pt and best.pt, epoch 1 writes last.pt (and best.pt): the 4th fails
    result = CliRunner().invoke(app, [*TRAIN, "--runs-dir", str(tmp_path), "--name", "full"])
    assert result.exit_code == 2 and "No space left on device" in result.stderr, result.output
    assert _temporaries(tmp_path) == []
    monkeypatch.undo()  # space freed
    again = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "full"), "--json"])
    assert again.exit_code == 0, again.output
    assert bs.load_run(tmp_path / "full").status == "completed" and len(bs.load_run(tmp_path / "full").metrics) == 3


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A real 256 kB file system (tmpfs), or a skip where this machine cannot mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_real_full_disk_refuses_in_one_line_with_the_space_needed(tiny_disk: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    # 2 x 8,000 + 8,000 x 3 weights with Adam's two moments: a checkpoint of about 0.5 MB, twice the disk.
    args = [sys.executable, "-m", "babysit", "train", "--data", "spiral", "--model", "mlp", "--model.hidden=[8000]", "--epochs", "2",
            "--train.device=cpu", "--watch.probes=off", "--runs-dir", str(tiny_disk), "--name", "full", "--json"]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert "No space left on device" in error and "it needs" in error and "free there" in error
    run = tiny_disk / "full"
    assert (run / "config.json").is_file() and _temporaries(tiny_disk) == []
    bs.load_run(run)  # every record file still reads


def test_tune_on_a_full_disk_is_one_line_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    real = optuna.storages.journal.JournalFileBackend.append_logs
    calls = {"n": 0}

    def append_logs(self, logs):  # the journal's first writes (the study) fit; the disk fills after them
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as Optuna's write raises it: no file name
        return real(self, logs)

    monkeypatch.setattr(optuna.storages.journal.JournalFileBackend, "append_logs", append_logs)
    args = ["tune", "--data", "spiral", "--model", "mlp", "--model.hidden=[8]", "--epochs", "1", "--trials", "2", "--train.device=cpu",
            "-p", "train.lr=log_uniform(1e-3,1e-1)", "--storage", str(tmp_path / "journal.log"), "--study", "s",
            "--report", str(tmp_path / "r.html"), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot write") and "No space left on device" in result.stderr
