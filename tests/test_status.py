"""Statuses are declared once (babysit.status): producers refuse others, readers show anything else as "unknown", escaped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import babysit as bs
from babysit import status
from babysit.cli import app
from babysit.train.record import RunRecorder
from babysit.tune.results import TrialRecord

HOSTILE = "[bold red]completed[/][link=file:///etc/passwd]x"


def _record(folder: Path, summary_status: object) -> Path:
    """A minimal run record by hand, with `summary_status` in summary.json."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(bs.build_config({"data": {"name": "spiral"}, "model": {"name": "mlp"}}).to_dict()))
    (folder / "env.json").write_text(json.dumps({"start_time": "2026-01-01T00:00:00+00:00"}))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "step": 9, "train_loss": 1.0, "val_loss": 1.1, "val_accuracy": 0.5}) + "\n")
    (folder / "summary.json").write_text(json.dumps({"status": summary_status, "steps": 9, "stop_reason": ""}))
    return folder


def test_the_vocabulary_is_declared_once_and_its_subsets_come_from_it() -> None:
    assert set(status.STATUSES) >= status.RUN | status.TRIAL | {status.INCOMPLETE, status.UNKNOWN, status.DAMAGED}
    assert status.FIT <= status.RUN and status.FIT <= status.TRIAL and status.FINAL <= status.RUN
    assert "complete" not in status.STATUSES  # one word for a finished run, trial and fit: "completed"


@pytest.mark.parametrize("value", ["done", "complete", "", HOSTILE])
def test_a_producer_refuses_an_undeclared_status(value: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="status must be one of"):
        status.check(value, status.RUN, "a run record's")
    recorder = RunRecorder(tmp_path, {})
    with pytest.raises(ValueError, match="status must be one of"):
        recorder.finish({"status": value, "steps": 0})
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize("value", ["finished", "complete", 7, None, ["completed"], HOSTILE])
def test_an_unknown_recorded_status_reads_as_unknown_and_is_listed_escaped(value: object, tmp_path: Path) -> None:
    run = _record(tmp_path / "odd", value)
    assert bs.load_run(run).status == "unknown"
    listed = CliRunner().invoke(app, ["runs", "--runs-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "Traceback" not in listed.output and "link=" not in listed.output and "internal error" not in listed.output
    as_json = CliRunner().invoke(app, ["runs", "--runs-dir", str(tmp_path), "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout.splitlines()[-1])["status"] == "unknown"


def test_a_hostile_status_cannot_reach_the_terminal_as_markup(tmp_path: Path) -> None:
    _record(tmp_path / "odd", HOSTILE)
    listed = CliRunner().invoke(app, ["runs", "--runs-dir", str(tmp_path)])
    assert listed.exit_code == 0 and "unknown" in listed.stdout and "bold red" not in listed.stdout


def test_markup_is_built_from_the_declaration_only() -> None:
    assert status.markup("completed") == "[green]completed[/]"
    assert status.markup(HOSTILE) == "[magenta]unknown[/]"


def test_a_trial_with_an_undeclared_recorded_status_reads_as_unknown() -> None:
    from optuna.trial import TrialState, create_trial

    trial = create_trial(state=TrialState.PRUNED, user_attrs={"status": HOSTILE, "stage": 1, "slot": 0}, system_attrs={})
    trial.number = 0
    assert TrialRecord.from_trial(trial).status == "unknown"
    done = create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs={"stage": 1, "slot": 0})
    assert TrialRecord.from_trial(done).status == "completed"
