"""`babysit report RUN_DIR` driven as a user would: the HTML file, the summary, one-line errors."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from babysit.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-report")
    result = runner.invoke(app, ["train", "--data", "digits", "--model", "mlp", "--model.hidden=[16]", "--epochs", "2",
                                 "--train.device=cpu", "--name", "r", "--runs-dir", str(root), "--json"])
    assert result.exit_code == 0, result.output
    return root / "r"


def test_report_writes_the_html_and_prints_its_path_last(run_dir):
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path == run_dir / "report.html" and path.read_text().startswith("<!doctype html>")
    assert "run r" in result.stdout and "best val accuracy" in result.stdout


def test_out_and_no_per_class(run_dir, tmp_path):
    result = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "x.html"), "--no-per-class"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "x.html").read_text()
    assert "Not available: turned off" in page and result.stdout.strip().splitlines()[-1] == str(tmp_path / "x.html")


@pytest.mark.parametrize("args, message", [(["nowhere"], "is not a run record"), ([], "Missing argument")])
def test_bad_input_exits_2(args, message):
    result = runner.invoke(app, ["report", *args])
    assert result.exit_code == 2 and message in result.output
    if args:
        assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
