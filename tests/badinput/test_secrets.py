"""Secrets never reach disk or screen: a planted password is in no file a command wrote, nor in its output.

Crash logs go to the user's own cache folder (never the shared temp folder), owner-only;
every file a failed or crashed command wrote is searched for the password.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from babysit.cli import app
from babysit.secrets import HIDDEN, mask, mask_argv
from babysit.train.record import environment

PASSWORD = "S3cretPW"
URL = f"postgresql://alice:{PASSWORD}@127.0.0.1:1/optuna"


def _files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def _tune(tmp_path: Path) -> list[str]:
    return ["tune", "--data", "spiral", "--model", "mlp", "--epochs", "1", "--trials", "1", "-p", "train.lr=log_uniform(1e-3,1e-1)",
            "--storage", URL, "--study", "s", "--report", str(tmp_path / "report.html")]  # fmt: skip


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cache, runs and the current folder all under tmp_path, so every file a command writes can be searched."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("BABYSIT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_crashed_command_writes_its_owner_only_log_to_the_cache_and_the_password_nowhere(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(url, *args, **kwargs):  # a bug deep inside babysit, whose message quotes the URL
        raise RuntimeError(f"unexpected reply from {url}")

    monkeypatch.setattr("babysit.tune.store.open_storage", boom)
    temp_before = set(Path(tempfile.gettempdir()).glob("babysit-crash-*"))
    result = CliRunner().invoke(app, _tune(home))
    assert result.exit_code == 3, result.output
    assert PASSWORD not in result.stdout + result.stderr and "alice:***@" in result.stderr
    logs = list((home / "cache" / "babysit" / "crash").glob("babysit-crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in result.stderr.replace("\n", "")
    assert stat.S_IMODE(logs[0].stat().st_mode) == 0o600 and stat.S_IMODE(logs[0].parent.stat().st_mode) == 0o700
    text = logs[0].read_text()
    assert "RuntimeError: unexpected reply from postgresql://alice:***@127.0.0.1:1/optuna" in text and "--storage" in text
    assert _files_holding(home, PASSWORD) == []
    assert set(Path(tempfile.gettempdir()).glob("babysit-crash-*")) == temp_before  # nothing in the shared temp folder


def test_a_storage_that_cannot_be_opened_is_refused_with_the_password_masked_everywhere(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "BABYSIT_RUNS_DIR": str(tmp_path / "runs"),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "babysit", *_tune(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stdout + done.stderr
    assert "postgresql://alice:***@127.0.0.1:1/optuna" in done.stderr
    assert _files_holding(tmp_path, PASSWORD) == []


def test_the_run_record_masks_secrets_on_its_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(sys, "argv", ["babysit", "train", f"--data.path=https://bob:{PASSWORD}@data.example/x.npz?token=T0k3n", "--password", PASSWORD])
    argv = environment(torch.device("cpu"))["argv"]
    assert not any(PASSWORD in a or "T0k3n" in a for a in argv) and argv[-1] == HIDDEN
    assert "--data.path=https://bob:***@data.example/x.npz?token=***" in argv


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(["postgresql", "postgresql+psycopg2", "mysql", "redis", "https"]),
    user=st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd")), max_size=8),
    secret=st.text(st.characters(blacklist_categories=("Z", "C"), blacklist_characters="@/'\""), min_size=6, max_size=20),  # a URL password has no spaces or control characters
    key=st.sampled_from(["password", "token", "api_key", "sslpassword", "access-key", "secret"]),
)
def test_any_url_password_or_secret_value_is_masked(scheme: str, user: str, secret: str, key: str) -> None:
    url = f"{scheme}://{user}:{secret}@host:5432/db"
    assert secret not in mask(url).replace(f"{scheme}://{user}:", "", 1).replace("@host:5432/db", "")
    assert mask(url) == f"{scheme}://{user}:{HIDDEN}@host:5432/db"
    value = secret.replace("&", "x").replace(",", "x").replace(";", "x")
    assert value not in mask(f"https://host/x?{key}={value}&n=1").split("?", 1)[1]
    assert mask_argv([f"--{key}", value]) == [f"--{key}", HIDDEN]
