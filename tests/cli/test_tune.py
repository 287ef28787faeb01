"""`babysit tune` as a user drives it: export, report, search files, and one-line errors."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babysit.cli import app

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DIGITS = ("--data", "digits", "--model", "mlp", "--optimizer", "momentum", "--model.hidden=[16]")


def tune(tmp_path, *args):
    where = ("--storage", str(tmp_path / "journal.log"), "--report", str(tmp_path / "report.html"))
    return runner.invoke(app, ["tune", *DIGITS, *where, *args])


def last_json(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_exported_best_config_trains_to_the_same_validation_accuracy(tmp_path):
    best = tmp_path / "best.toml"
    result = tune(tmp_path, "-p", "train.lr=log_uniform(1e-2, 0.3)", "-p", "model.hidden=int_uniform(8, 32, log=true)",
                  "--trials", "4", "--epochs", "1", "--export", str(best), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["trials"] == {"completed": 4} and summary["export"] == str(best)
    trained = runner.invoke(app, ["train", "--config", str(best), "--json"])
    assert trained.exit_code == 0, trained.output
    # Same config, same seed, same CPU: the run reproduces the trial's validation accuracy.
    assert last_json(trained)["best_val_accuracy"] == summary["best_val_accuracy"]
    assert f"hidden = [\n    {summary['best_values']['model.hidden']}," in best.read_text()


def test_report_embeds_the_lectures_plots_and_needs_no_network(tmp_path):
    result = tune(tmp_path, "-p", "train.lr=log_uniform(1e-2, 0.3)", "-p", "train.momentum=one_minus_log(0.5, 0.99)",
                  "--strategy", "coarse_to_fine", "--trials", "6", "--epochs", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"best: trial #\d+, stage 2", result.stdout) and "importance" in result.stdout
    page = (tmp_path / "report.html").read_text()
    assert page.count("<img") == 4  # accuracy vs parameters, ranges by stage, best curves, importance
    assert "http://" not in page and "https://" not in page
    for title in ("Validation accuracy against each hyperparameter", "Ranges, stage by stage", "Curves of the best trials", "Importance"):
        assert title in page


def test_a_search_file_and_flags_compose(tmp_path):
    search = tmp_path / "search.toml"
    search.write_text('strategy = "grid"\ntrials = 9\nepochs = 1\n[space]\n"train.lr" = "log_uniform(1e-3, 1)"\n"model.hidden" = "int_uniform(4, 32, log=true)"\n')
    result = tune(tmp_path, "--search", str(search), "--trials", "4", "-p", "train.lr=log_uniform(1e-2, 0.1)", "--json")
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["strategy"] == "grid" and summary["trials"] == {"completed": 4}  # a 2 x 2 grid
    assert 1e-2 <= summary["best_values"]["train.lr"] <= 0.1


def test_the_readme_example_runs_with_a_small_budget(tmp_path):
    result = runner.invoke(app, [
        "tune", "--config", str(EXAMPLES / "mnist1d_mlp.toml"), "--search", str(EXAMPLES / "tune" / "coarse_to_fine.toml"),
        "--trials", "4", "--epochs", "1", "--storage", str(tmp_path / "j.log"), "--report", str(tmp_path / "r.html"), "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert last_json(result)["strategy"] == "coarse_to_fine"


@pytest.mark.parametrize(
    "args, message",
    [
        (("-p", "train.lr=log_uniform(0, 1)"), "train.lr: log_uniform(0, 1) needs low > 0"),
        (("-p", "train.learning_rate=log_uniform(1e-3, 1)"), "did you mean 'train.lr'"),
        (("-p", "data.val_fraction=uniform(0.1, 0.2)"), "every trial must see the same data"),
        (("-p", "train.epochs=int_uniform(1, 5)"), "'train.epochs' is set by the search"),
        (("-p", "train.momentum=uniform(0.5, 1.0)"), "train.momentum must be in [0, 1), got 1.0"),
        (("-p", "train.lr"), "must look like KEY=SPEC"),
        (("-p", "train.lr=log_uniform(1e-3, 1)", "--strategy", "bayes"), "unknown search strategy 'bayes'"),
        (("-p", "train.lr=log_uniform(1e-3, 1)", "--mode", "caviarr"), "unknown execution mode 'caviarr'"),
        (("-p", "train.lr=log_uniform(1e-3, 1)", "--study", "../x"), "study name '../x' must be letters"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(tmp_path, args, message):
    result = tune(tmp_path, *args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_unknown_setting_in_a_search_file_gets_a_suggestion(tmp_path):
    search = tmp_path / "search.toml"
    search.write_text('stratgy = "grid"\n[space]\n"train.lr" = "log_uniform(1e-3, 1)"\n')
    result = tune(tmp_path, "--search", str(search))
    assert result.exit_code == 2 and "unknown config key 'tune.stratgy' (did you mean 'tune.strategy'?)" in result.stderr


def test_without_param_it_searches_the_default_space_and_exports_a_runnable_config(tmp_path):
    best = tmp_path / "best.toml"
    where = ("--storage", str(tmp_path / "journal.log"), "--report", str(tmp_path / "report.html"))
    result = runner.invoke(app, ["tune", "--data", "mnist1d", "--model", "mlp", "--trials", "8", "--epochs", "1", *where, "--export", str(best), "--json"])
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert sum(summary["trials"].values()) == 8 and summary["trials"]["completed"] >= 6
    assert set(summary["best_values"]) == {"train.lr", "train.weight_decay"}
    # lr 30x below to 3x above the range test's proposal; weight decay in 1e-6..1e-2.
    centre = float(re.search(r"range test lr ([0-9.e-]+)", result.stderr).group(1))
    assert centre / 32 <= summary["best_values"]["train.lr"] <= centre * 3.2
    assert 1e-6 <= summary["best_values"]["train.weight_decay"] <= 1e-2
    trained = runner.invoke(app, ["train", "--config", str(best), "--train.epochs=1", "--json"])
    assert trained.exit_code == 0, trained.output
    assert last_json(trained)["test_accuracy"] > 0.15  # ten classes: above chance after one epoch
