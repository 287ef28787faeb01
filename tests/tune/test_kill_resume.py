"""SIGKILL in the middle of a caviar search: re-running the same command finishes it, keeping every completed trial."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from babysit.tune.store import STALE_KEY, WORKER_KEY, slot_of, slot_trials

TRIALS = 6


def command(tmp_path):
    return [
        sys.executable, "-m", "babysit", "tune", "--data", "digits", "--model", "mlp", "--optimizer", "momentum",
        "--model.hidden=[64]", "--param", "train.lr=log_uniform(1e-2, 0.3)", "--param", "train.momentum=one_minus_log(0.5, 0.95)",
        "--trials", str(TRIALS), "--epochs", "3", "--mode", "caviar", "--workers", "2",
        "--storage", str(tmp_path / "journal.log"), "--study", "kill-me", "--report", str(tmp_path / "report.html"), "--json",
    ]  # fmt: skip


def load(tmp_path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")))
    return optuna.load_study(study_name="kill-me", storage=storage).get_trials(deepcopy=False)


def wait_for(tmp_path, proc, ready, timeout=180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the search ended before the test could kill it"
        if (tmp_path / "journal.log").exists():
            try:
                trials = load(tmp_path)
            except KeyError:  # the study is not created yet
                trials = []
            if ready(trials):
                return trials
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the search")


def mid_trial(trials):
    states = [t.state for t in trials]
    running = [t for t in trials if t.state == TrialState.RUNNING and WORKER_KEY in t.system_attrs]
    return states.count(TrialState.COMPLETE) >= 2 and running


def test_sigkill_mid_trial_then_rerun_finishes_with_every_completed_trial_kept(tmp_path):
    proc = subprocess.Popen(command(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for(tmp_path, proc, mid_trial)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and both workers, mid-trial
    finally:
        proc.wait()
    before = load(tmp_path)
    completed = {t.number: (t.value, t.params) for t in before if t.state == TrialState.COMPLETE}
    killed = [t.number for t in before if t.state == TrialState.RUNNING]
    assert completed and killed

    rerun = subprocess.run(command(tmp_path), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["trials"] == {"completed": TRIALS}

    after = load(tmp_path)
    for number, (value, params) in completed.items():  # nothing completed is lost or changed
        assert after[number].state == TrialState.COMPLETE and (after[number].value, after[number].params) == (value, params)
    for number in killed:  # the killed trials are failed as stale and their slots trained again
        assert after[number].state == TrialState.FAIL and STALE_KEY in after[number].system_attrs
    slots = slot_trials(after)
    assert sorted(slots) == [(1, i) for i in range(TRIALS)]
    assert all(t.state == TrialState.COMPLETE for t in slots.values())
    assert {slot_of(after[n]) for n in killed} <= set(slots)


def test_killing_one_caviar_worker_is_healed_by_the_other_without_a_rerun(tmp_path):
    proc = subprocess.Popen(command(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        trials = wait_for(tmp_path, proc, mid_trial)
        victim = next(t for t in trials if t.state == TrialState.RUNNING and WORKER_KEY in t.system_attrs)
        os.kill(victim.system_attrs[WORKER_KEY]["pid"], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr.decode()
    after = load(tmp_path)
    assert after[victim.number].state == TrialState.FAIL and STALE_KEY in after[victim.number].system_attrs
    slots = slot_trials(after)
    assert len(slots) == TRIALS and all(t.state == TrialState.COMPLETE for t in slots.values())
