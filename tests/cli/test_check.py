"""`babysit check` driven as a user would: tables, JSON, exit codes, files, one-line errors."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babysit.checks.preflight import PIPELINE
from babysit.cli import app

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QUICK = ("--data", "digits", "--model", "mlp", "--model.hidden=[32]")


def invoke(*args):
    return runner.invoke(app, ["check", *args])


def last_json(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_json_report_of_a_healthy_model():
    result = invoke(*QUICK, "--json")
    assert result.exit_code == 0, result.output
    report = last_json(result)
    assert report["status"] == "pass" and [c["name"] for c in report["checks"]] == list(PIPELINE)
    assert report["suggested_lr"] > 0 and report["findings"] == []


def test_table_shows_every_check_and_the_suggested_rate():
    result = invoke(*QUICK)
    assert result.exit_code == 0, result.output
    assert all(name in result.stdout for name in PIPELINE)
    assert "suggested learning rate" in result.stdout and "ln(10) = 2.303" in result.stdout


def test_a_failing_check_exits_1_and_names_the_problem():
    result = invoke(*QUICK, "--lr", "1e-7", "--json")
    assert result.exit_code == 1
    report = last_json(result)
    assert report["status"] == "fail" and report["findings"][0]["rule"] == "lr_too_low"


def test_out_writes_the_json_and_the_range_test_plot(tmp_path):
    result = invoke(*QUICK, "--out", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "check.json").read_text())
    assert saved["checks"][0]["name"] == PIPELINE[0] and saved["status"] == last_json(result)["status"]
    assert (tmp_path / "lr_range.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradcheck_flag_runs_the_opt_in_check():
    report = last_json(invoke(*QUICK, "--gradcheck", "--json"))
    # The built-in models are plain torch layers: nothing user-defined to check.
    assert next(c for c in report["checks"] if c["name"] == "gradcheck")["status"] == "skip"


@pytest.mark.parametrize(
    "args, message",
    [
        (("--model.init=hee",), "unknown init 'hee'"),
        (("--train.learning_rate=0.1",), "did you mean 'train.lr'"),
        (("--config", "missing.toml"), "does not exist"),
        (("--data", "digitz"), "did you mean 'digits'"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    result = invoke("--model", "mlp", *args)
    assert result.exit_code == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_mnist1d_convnet_config_passes_every_check():
    # The acceptance set-up: the demo convnet on MNIST-1D (timed by bench/bench_check.py).
    result = invoke("--config", str(EXAMPLES / "mnist1d_convnet.toml"), "--json")
    assert result.exit_code == 0, result.output
    report = last_json(result)
    assert report["status"] == "pass"
    baseline = next(c for c in report["checks"] if c["name"] == "input_baseline")["evidence"]
    assert baseline["val_accuracy_real"] > 0.5 > baseline["val_accuracy_zeroed"]
