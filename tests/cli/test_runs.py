"""`babysit train` records runs, `--resume` continues a SIGKILLed one, `babysit runs` lists them."""

import json
import os
import signal
import subprocess
import sys
import time

from typer.testing import CliRunner

import babysit as bs
from babysit.cli import app
from babysit.train.checkpoint import load_checkpoint

runner = CliRunner()

# 130 steps per epoch (digits, batch 10) and a probe line per step: slow enough to kill mid-epoch.
TRAIN = ["--data", "digits", "--model", "mlp", "--epochs", "3", "--train.batch_size=10", "--train.device=cpu", "--watch.probes=full"]


def babysit(*args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "babysit", "train", *args, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_metrics(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BABYSIT_RUNS_DIR": str(tmp_path)}
    victim = babysit(*TRAIN, "--name", "killed", env=env)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 1) and victim.poll() is None:
        assert time.monotonic() < deadline, "the run never finished its first epoch"
        time.sleep(0.005)
    seconds = json.loads(metrics.read_text().splitlines()[0])["seconds"]
    time.sleep(seconds / 2)  # about half-way through epoch 2
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL

    killed = bs.load_run(tmp_path / "killed")
    saved = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert killed.status == "incomplete" and saved["epoch"] < 3
    assert max(p["step"] for p in killed.probes) > saved["step"]  # it died mid-epoch, after the checkpoint

    resumed = babysit("--resume", str(tmp_path / "killed"), env=env)
    reference = babysit(*TRAIN, "--name", "reference", env=env)
    out_resumed, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    out_reference, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err

    a, b = last_json(out_resumed), last_json(out_reference)
    assert a["status"] == b["status"] == "completed"
    assert (a["test_loss"], a["test_accuracy"], a["best_val_accuracy"]) == (b["test_loss"], b["test_accuracy"], b["best_val_accuracy"])
    run_a, run_b = bs.load_run(tmp_path / "killed"), bs.load_run(tmp_path / "reference")
    drop = lambda records: [{k: v for k, v in r.items() if k not in ("seconds",)} for r in records]  # noqa: E731
    assert drop(run_a.metrics) == drop(run_b.metrics)
    assert run_a.probes == run_b.probes  # the probe trace is rewritten exactly, not duplicated
    assert [e["event"] for e in run_a.events] == ["started", "resumed", "completed"]


def invoke(*args):
    return runner.invoke(app, list(args))


def test_runs_lists_status_and_best_metrics(tmp_path):
    ok = invoke("train", "--data", "digits", "--model", "mlp", "--epochs", "2", "--runs-dir", str(tmp_path), "--name", "good", "--json")
    assert ok.exit_code == 0, ok.output
    assert last_json(ok.stdout)["run_dir"] == str(tmp_path / "good")
    boom = invoke("train", "--data", "digits", "--model", "mlp", "--optimizer", "sgd", "--lr", "1e6", "--runs-dir", str(tmp_path), "--name", "boom", "--json")
    assert boom.exit_code == 0 and last_json(boom.stdout)["status"] == "diverged"

    listed = invoke("runs", "--runs-dir", str(tmp_path), "--json")
    rows = {r["name"]: r for r in map(json.loads, listed.stdout.strip().splitlines())}
    assert rows["good"]["status"] == "completed" and rows["good"]["epochs"] == 2
    assert rows["good"]["best_val_accuracy"] == bs.load_run(tmp_path / "good").best()["val_accuracy"] > 0.5
    assert rows["boom"]["status"] == "diverged"
    table = invoke("runs", "--runs-dir", str(tmp_path))
    assert table.exit_code == 0 and "good" in table.stdout and "diverged" in table.stdout
    assert "no runs" in invoke("runs", "--runs-dir", str(tmp_path / "empty")).stdout


def test_resume_and_name_mistakes_are_one_line_errors(tmp_path):
    cases = [
        (("train", "--resume", str(tmp_path / "nope")), "is not a run record"),
        (("train", "--resume", str(tmp_path), "--lr", "3"), "drop --lr"),
        (("train", "--data", "digits", "--name", "a/b", "--runs-dir", str(tmp_path)), "no slashes"),
        (("train", "--data", "digits", "--watch.probes=ful"), "did you mean 'full'"),
    ]
    for args, message in cases:
        result = invoke(*args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (args, result.stderr)


def test_train_joins_the_folder_babysit_check_wrote_and_the_report_shows_both(tmp_path):
    first = tmp_path / "first"
    quick = ["--data", "digits", "--model", "mlp", "--train.device=cpu"]
    checked = runner.invoke(app, ["check", *quick, "--out", str(first)])
    assert checked.exit_code == 0, checked.output
    assert (first / "check.json").is_file()
    trained = runner.invoke(app, ["train", *quick, "--epochs", "1", "--name", "first", "--runs-dir", str(tmp_path), "--json"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.output.strip().splitlines()[-1])["run_dir"] == str(first)
    assert (first / "config.json").is_file() and (first / "check.json").is_file()
    again = runner.invoke(app, ["train", *quick, "--epochs", "1", "--name", "first", "--runs-dir", str(tmp_path)])
    assert again.exit_code == 2 and "already exists (completed)" in again.output
