"""A tune journal torn mid-line by a crash is repaired on the next run: the tail set aside, every complete trial kept."""

import json
import os
import subprocess
import sys
import warnings

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from babysit.cli import app

from babysit.errors import StoreError
from babysit.tune.store import FlockLock, repair_journal, slot_trials

TRIALS = 4


def command(tmp_path):
    return [
        sys.executable, "-m", "babysit", "tune", "--data", "digits", "--model", "mlp", "--model.hidden=[16]",
        "--param", "train.lr=log_uniform(1e-2, 0.3)", "--trials", str(TRIALS), "--epochs", "1",
        "--storage", str(tmp_path / "journal.log"), "--study", "torn", "--report", str(tmp_path / "report.html"), "--json",
    ]  # fmt: skip


def trials(tmp_path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")))
    return optuna.load_study(study_name="torn", storage=storage).get_trials(deepcopy=False)


def run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command(tmp_path), capture_output=True, text=True, timeout=300, env=env)


def is_state(line, state, trial=None):
    """Whether a journal line sets a trial's state to `state` (Optuna's op 6), for `trial` or any."""
    record = json.loads(line)
    return record["op_code"] == 6 and record["state"] == state.value and trial in (None, record["trial_id"])


def test_a_journal_torn_while_claiming_a_trial_resumes_in_process(tmp_path):
    """The fast variant: the crash tore the line claiming trial 2 (its WAITING -> RUNNING), so no worker holds it."""
    result = CliRunner().invoke(app, command(tmp_path)[3:])
    assert result.exit_code == 0, result.output
    journal = tmp_path / "journal.log"
    lines = journal.read_bytes().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if is_state(line, TrialState.RUNNING, trial=2))
    journal.write_bytes(b"".join(lines[:cut]) + lines[cut][:40])
    before = {t.number: (t.value, t.params) for t in trials(tmp_path) if t.state == TrialState.COMPLETE}
    assert sorted(before) == [0, 1]
    with pytest.warns(UserWarning, match=r"ended in a torn record \(40 bytes, from a crash\); set aside in 'journal.log.torn-"):
        rerun = CliRunner().invoke(app, command(tmp_path)[3:])
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout.strip().splitlines()[-1])["trials"] == {"completed": TRIALS}
    after = trials(tmp_path)
    assert len(after) == TRIALS and all(t.state == TrialState.COMPLETE for t in after)  # none duplicated, none failed
    assert all((after[n].value, after[n].params) == kept for n, kept in before.items())
    assert [p.read_bytes() for p in tmp_path.glob("journal.log.torn-*")] == [lines[cut][:40]]


@pytest.mark.slow
def test_a_journal_torn_mid_line_resumes_keeping_every_complete_trial(tmp_path):
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr
    journal = tmp_path / "journal.log"
    lines = journal.read_bytes().splitlines(keepends=True)
    # A crash during the third trial's final write: keep everything before the line that
    # completes trial 2 (numbered from 0), and half of that line.
    done = [i for i, line in enumerate(lines) if is_state(line, TrialState.COMPLETE)]
    assert len(done) == TRIALS
    cut = done[2]
    journal.write_bytes(b"".join(lines[:cut]) + lines[cut][: len(lines[cut]) // 2])
    before = {t.number: (t.value, t.params) for t in trials(tmp_path) if t.state == TrialState.COMPLETE}
    assert sorted(before) == [0, 1]

    rerun = run(tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    warning = [line for line in rerun.stderr.splitlines() if "torn record" in line]
    assert len(warning) == 1 and "set aside in 'journal.log.torn-" in warning[0]
    aside = list(tmp_path.glob("journal.log.torn-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == lines[cut][: len(lines[cut]) // 2]
    assert json.loads(rerun.stdout.strip().splitlines()[-1])["trials"] == {"completed": TRIALS}

    after = trials(tmp_path)
    for number, (value, params) in before.items():  # nothing complete is lost or changed
        assert after[number].state == TrialState.COMPLETE and (after[number].value, after[number].params) == (value, params)
    slots = slot_trials(after)  # one complete trial per slot: none duplicated
    assert sorted(slots) == [(1, i) for i in range(TRIALS)]
    assert all(t.state == TrialState.COMPLETE for t in slots.values())
    assert sum(t.state == TrialState.COMPLETE for t in after) == TRIALS
    assert after[2].state == TrialState.FAIL  # the torn trial's worker is gone: failed as stale, its slot trained again


def lock(path):
    return FlockLock(f"{path}.flock")


def test_a_whole_last_record_missing_only_its_newline_is_kept(tmp_path):
    journal = tmp_path / "journal.log"
    journal.write_bytes(b'{"op_code": 0}\n{"op_code": 1}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert repair_journal(journal, lock(journal)) is None
    assert journal.read_bytes() == b'{"op_code": 0}\n{"op_code": 1}\n'


def test_an_intact_journal_is_left_alone_and_damage_in_the_middle_is_refused(tmp_path):
    journal = tmp_path / "journal.log"
    intact = b'{"op_code": 0}\n{"op_code": 1}\n'
    journal.write_bytes(intact)
    assert repair_journal(journal, lock(journal)) is None and journal.read_bytes() == intact
    damaged = b'{"op_code": 0}\n{"op_co{"op_code": 1}\n{"op_code": 2}\n'
    journal.write_bytes(damaged)
    with pytest.raises(StoreError, match=r"journal line 2 of 3 is damaged, with records after it"):
        repair_journal(journal, lock(journal))
    assert journal.read_bytes() == damaged and not list(tmp_path.glob("*.torn-*"))
