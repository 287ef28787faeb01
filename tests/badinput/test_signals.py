"""SIGINT and SIGTERM on train, tune (panda and caviar), doctor and auto: what is complete is kept, the record says
"interrupted", the exit code is the shell's (130, 143), and caviar's workers end with their parent.

Each test waits until the command has done some work (a metrics line, a running trial), then
signals it. Deadlines are generous; no test asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import babysit as bs
from babysit.tune.store import STALE_KEY

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
DEADLINE_S = 300
CODE = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _sigint_default() -> None:
    # A shell starts a foreground command with SIGINT at its default action. A pytest worker may ignore SIGINT (a
    # library left it so: Lightning's Trainer sets SIG_IGN once it has handled a KeyboardInterrupt), and an ignored
    # signal stays ignored across exec: the command would never see the Ctrl-C this test sends (exit 0 in CI's order).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**ENV, "BABYSIT_RUNS_DIR": str(tmp_path / "runs"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.Popen([sys.executable, "-m", "babysit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=env, start_new_session=True, preexec_fn=_sigint_default)  # fmt: skip


def wait_until(ready, proc: subprocess.Popen) -> None:
    end = time.monotonic() + DEADLINE_S
    while not ready():
        assert proc.poll() is None, f"the command ended before it could be signalled: {proc.communicate()}"
        assert time.monotonic() < end, "the command never got there"
        time.sleep(0.05)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def signalled(proc: subprocess.Popen, sig: int) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=DEADLINE_S)
    return proc.returncode, out, err


TRAIN = ["train", "--data", "digits", "--model", "mlp", "--model.hidden=[32]", "--epochs", "15", "--train.batch_size=10",
         "--train.device=cpu", "--watch.probes=off", "--json"]  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_train_signalled_keeps_its_epochs_records_interrupted_and_exits_with_the_signal(sig: int, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "victim"
    proc = start([*TRAIN, "--name", "victim"], tmp_path)
    wait_until(lambda: lines(run / "metrics.jsonl") >= 1, proc)
    code, out, err = signalled(proc, sig)
    assert code == CODE[sig], err
    assert "Traceback" not in err and f"interrupted ({signal.Signals(sig).name})" in err and f"--resume {run}" in err
    record = bs.load_run(run)
    assert record.status == "interrupted" and len(record.metrics) >= 1
    assert not (run / ".lock").exists() and not list(run.rglob(".*.tmp"))  # no lock or half-written file left
    again = start(["train", "--resume", str(run), "--json"], tmp_path)
    out, err = again.communicate(timeout=DEADLINE_S)
    assert again.returncode == 0, err
    assert bs.load_run(run).status == "completed" and len(bs.load_run(run).metrics) == 15


def _tune(tmp_path: Path, mode: str, trials: int) -> list[str]:
    return ["tune", "--data", "digits", "--model", "mlp", "--model.hidden=[32]", "--epochs", "30", "--train.batch_size=10",
            "--train.device=cpu", "--trials", str(trials), "--mode", mode, "--workers", "2", "-p", "train.lr=log_uniform(1e-3,1e-2)",
            "--storage", str(tmp_path / "journal.log"), "--study", "s", "--report", str(tmp_path / "report.html"), "--json"]  # fmt: skip


def _trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")))
    return optuna.load_study(study_name="s", storage=storage).get_trials(deepcopy=False)


def _running(tmp_path: Path) -> int:
    journal = tmp_path / "journal.log"
    if not journal.is_file():
        return 0
    try:
        return sum(t.state == TrialState.RUNNING for t in _trials(tmp_path))
    except Exception:  # noqa: BLE001  (the study is being created)
        return 0


def _reporting(tmp_path: Path) -> int:
    """Running trials that have reported an epoch: training, not just claimed."""
    try:
        return sum(t.state == TrialState.RUNNING and bool(t.intermediate_values) for t in _trials(tmp_path))
    except Exception:  # noqa: BLE001  (the study is being created)
        return 0


def test_tune_panda_on_sigterm_requeues_its_trial_and_exits_143(tmp_path: Path) -> None:
    proc = start(_tune(tmp_path, "panda", 3), tmp_path)
    wait_until(lambda: (tmp_path / "journal.log").is_file() and _reporting(tmp_path) >= 1, proc)
    code, out, err = signalled(proc, signal.SIGTERM)
    assert code == 143 and "interrupted (SIGTERM)" in err and "Traceback" not in err, err
    trials = _trials(tmp_path)
    assert not any(t.state == TrialState.RUNNING for t in trials)  # the trial it was training is failed as stale: re-queued
    assert any(t.state == TrialState.FAIL and STALE_KEY in t.system_attrs for t in trials)


@pytest.mark.slow
def test_tune_caviar_on_sigterm_to_the_parent_stops_its_workers_and_exits_143(tmp_path: Path, processes) -> None:
    proc = start(_tune(tmp_path, "caviar", 6), tmp_path)
    wait_until(lambda: _running(tmp_path) >= 2, proc)
    workers = processes.children(proc.pid)
    assert len(workers) >= 2
    code, out, err = signalled(proc, signal.SIGTERM)  # the parent alone, as a scheduler or `kill PID` sends it
    assert code == 143 and "interrupted (SIGTERM)" in err and "Traceback" not in err, err
    end = time.monotonic() + 60  # (multiprocessing's resource tracker, also a child, ends once its pipe closes)
    while any(processes.alive(p) for p in workers) and time.monotonic() < end:
        time.sleep(0.05)
    assert not any(processes.alive(p) for p in workers), "a worker outlived its parent"
    assert not any(t.state == TrialState.RUNNING for t in _trials(tmp_path))


@pytest.mark.slow
def test_doctor_on_sigterm_records_its_run_as_interrupted(tmp_path: Path) -> None:
    proc = start(["doctor", "--data", "digits", "--model", "mlp", "--epochs", "40", "--train.batch_size=10", "--train.device=cpu", "--name", "look"], tmp_path)
    run = tmp_path / "runs" / "look"
    wait_until(lambda: lines(run / "metrics.jsonl") >= 1, proc)
    code, out, err = signalled(proc, signal.SIGTERM)
    assert code == 143 and "interrupted (SIGTERM)" in err and "Traceback" not in err, err
    assert bs.load_run(run).status == "interrupted"


@pytest.mark.slow
def test_auto_on_sigterm_exits_143_with_every_record_readable(tmp_path: Path) -> None:
    out_dir = tmp_path / "auto"
    proc = start(["auto", "--data", "digits", "--model", "mlp", "--budget", "10m", "--out", str(out_dir), "--json"], tmp_path)
    wait_until(lambda: (out_dir / "search").is_dir() or any(out_dir.glob("*/metrics.jsonl")) or any(out_dir.rglob("journal.log")), proc)
    code, out, err = signalled(proc, signal.SIGTERM)
    assert code == 143 and "interrupted (SIGTERM)" in err and "Traceback" not in err, err
    for summary in out_dir.rglob("summary.json"):
        assert json.loads(summary.read_text())["status"] in ("completed", "interrupted", "stopped", "diverged")
