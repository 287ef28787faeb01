"""Damaged run folders are read around: `babysit runs` lists the others, `babysit report` renders what it can."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from babysit.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """One real, completed run (light probes), copied into each test's folder."""
    root = tmp_path_factory.mktemp("damaged")
    result = runner.invoke(app, ["train", "--data", "digits", "--model", "mlp", "--model.hidden=[16]", "--epochs", "3",
                                 "--train.device=cpu", "--name", "good", "--runs-dir", str(root), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "good"


def copy(good, root, name):
    shutil.copytree(good, root / name)
    return root / name


def cut(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# Each way a folder can be damaged, and the words `babysit runs` must use for it.
DAMAGE = {
    "truncated-config": (lambda d: cut(d / "config.json"), "config.json is truncated"),
    "no-config": (lambda d: (d / "config.json").unlink(), "config.json is missing"),
    "bad-metrics-line": (lambda d: (d / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, "tr\n{"epoch": 3}\n'), "metrics.jsonl line 2 is not a JSON object"),
    "summary-not-object": (lambda d: (d / "summary.json").write_text("[1, 2]\n"), "summary.json holds list, not a JSON object"),
    "env-not-utf8": (lambda d: (d / "env.json").write_bytes(b"\xff\xfe\x00garbage"), "env.json cannot be read (UnicodeDecodeError)"),
    "summary-wrong-shape": (lambda d: (d / "summary.json").write_text('{"steps": 3}\n'), "unexpected contents (KeyError"),
}


def test_runs_lists_every_readable_run_and_marks_each_damaged_folder(good, tmp_path):
    copy(good, tmp_path, "also-good")
    (tmp_path / "tune" / "study").mkdir(parents=True)  # a tune study's folder is not a run
    (tmp_path / "tune" / "study" / "journal.log").write_text("{}\n")
    for name, (damage, _) in DAMAGE.items():
        damage(copy(good, tmp_path, name))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    listed = runner.invoke(app, ["runs", "--runs-dir", str(tmp_path), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in map(json.loads, listed.stdout.strip().splitlines())}
    assert set(rows) == {"also-good", *DAMAGE}
    assert rows["also-good"]["status"] == "completed" and rows["also-good"]["epochs"] == 3
    for name, (_, problem) in DAMAGE.items():
        assert rows[name]["status"] == "damaged" and problem in rows[name]["problem"], (name, rows[name])

    table = runner.invoke(app, ["runs", "--runs-dir", str(tmp_path)])
    assert table.exit_code == 0 and "completed" in table.stdout
    notes = [line for line in table.stdout.splitlines() if line.startswith("damaged:")]
    assert len(notes) == len(DAMAGE)
    assert all(any(problem in line for line in notes) for _, problem in DAMAGE.values())
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # listing changes nothing


def test_runs_dir_that_is_a_file_is_one_line_error(tmp_path):
    (tmp_path / "f").write_text("x")
    result = runner.invoke(app, ["runs", "--runs-dir", str(tmp_path / "f")])
    assert result.exit_code == 2 and "is a file, not a folder" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_report_renders_a_damaged_run_and_says_what_it_skipped(good, tmp_path):
    run = copy(good, tmp_path, "hurt")
    (run / "probes.jsonl").unlink()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]  # epoch 2 cut in the middle of the file
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run / "check.json").write_text("{not json")

    result = runner.invoke(app, ["report", str(run), "--no-per-class"])
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.stdout.splitlines() if line.startswith("skipped:")]
    assert any("metrics.jsonl: line 2 not valid JSON" in line for line in skipped), result.stdout
    assert any("probes.jsonl: missing" in line for line in skipped)
    assert any("check.json" in line for line in skipped)
    assert "epochs" in result.stdout and "2" in result.stdout  # epochs 1 and 3 are still reported
    page = (run / "report.html").read_text()
    assert "Skipped (damaged or missing, so not shown)" in page and "metrics.jsonl: line 2 not valid JSON" in page


def test_report_of_an_intact_run_skips_nothing(good, tmp_path):
    run = copy(good, tmp_path, "whole")
    result = runner.invoke(app, ["report", str(run), "--no-per-class"])
    assert result.exit_code == 0, result.output
    assert "skipped:" not in result.stdout and "Skipped (" not in (run / "report.html").read_text()


def test_report_without_a_readable_config_is_one_line_error(good, tmp_path):
    run = copy(good, tmp_path, "headless")
    cut(run / "config.json")
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 2 and "config.json' cannot be read" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
