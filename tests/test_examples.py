"""Every documented example runs."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("toml", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_train(toml):
    out = subprocess.run(
        [sys.executable, "-m", "babysit", "train", "--config", str(toml), "--train.epochs=1", "--json"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # one thread per xdist worker on the 2-core CI machine
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["status"] == "completed"


def test_quickstart_runs(capsys):
    runpy.run_path(str(EXAMPLES / "quickstart.py"))
    assert "test accuracy" in capsys.readouterr().out


def test_demo_config_matches_its_example_file():
    from babysit.cli.demo import DEMO_CONFIG
    from babysit.config import build_config, load_toml

    assert build_config(load_toml(EXAMPLES / "mnist1d_convnet.toml")) == build_config(DEMO_CONFIG)


def test_demo_recipe_beats_90_percent_on_mnist1d(mnist1d):
    from babysit.cli.demo import DEMO_CONFIG
    from babysit.config import build_config
    from babysit.build import run

    cfg = build_config(DEMO_CONFIG)
    assert run(cfg, progress=False, data=mnist1d).result.test_accuracy >= 0.90


def test_own_loop_example_records_and_diagnoses_a_broken_lr(tmp_path, capsys):
    import babysit as bs
    from typer.testing import CliRunner

    from babysit.cli import app

    main = runpy.run_path(str(EXAMPLES / "own_loop.py"))["main"]
    good = main(["--epochs", "3", "--name", "good", "--runs-dir", str(tmp_path)])
    record = bs.load_run(good)
    assert record.status == "completed" and len(record.metrics) == 3 and len(record.probes) >= 5
    assert record.best()["val_accuracy"] > 0.85  # the digits reach ~92% in 3 epochs at lr 0.05
    shown = CliRunner().invoke(app, ["report", good])
    assert shown.exit_code == 0, shown.output
    assert (Path(good) / "report.html").is_file()

    broken = bs.load_run(main(["--lr", "10", "--epochs", "3", "--name", "broken", "--runs-dir", str(tmp_path)]))
    assert broken.status == "diverged"
    first = bs.diagnose(broken)[0]
    assert first.rule == "loss_explodes" and "learning rate" in first.fix


@pytest.mark.parametrize("bug, rule", [("no-zero-grad", "grad_not_reset"), ("eval-mode", "eval_mode_in_training"),
                                       ("schedule-every-batch", "lr_collapsed"), ("softmax-before-loss", "activation_on_scores")])  # fmt: skip
def test_own_loop_example_names_each_planted_bug_first(tmp_path, bug, rule):
    import babysit as bs
    from babysit.diagnose.findings import root_causes

    main = runpy.run_path(str(EXAMPLES / "own_loop.py"))["main"]
    path = main(["--bug", bug, "--epochs", "4", "--name", bug, "--runs-dir", str(tmp_path)])
    findings = bs.run_report(path, per_class=False).findings
    roots = root_causes(findings) or root_causes(findings, "warning")
    assert roots[0].rule == rule, [f.rule for f in findings]
    assert all("learning rate" not in f.fix for f in findings if f.explained_by == rule)
