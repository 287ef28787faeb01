"""`babysit auto` end to end on digits with a tiny budget: stages, budget, files, one JSON line."""

import json
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babysit.cli import app
from babysit.config import load_toml
from babysit.errors import ConfigError
from babysit.workflows.auto import parse_budget


def test_auto_runs_every_stage_within_the_budget_and_writes_a_runnable_config(tmp_path):
    out = tmp_path / "auto"
    result = CliRunner().invoke(app, ["auto", "--data", "digits", "--model", "mlp", "--model.hidden=[32]", "--budget", "15s", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])  # strict JSON: no NaN, one line
    assert summary["status"] in ("completed", "stopped") and summary["test_accuracy"] > 0.9
    assert 0 < summary["cpu_minutes"] and Path(summary["report"]).is_file()
    # `config` is the exported TOML itself (best.toml's text), so a script needs no second file.
    assert tomllib.loads(summary["config"]) == load_toml(out / "best.toml") and summary["config_path"] == str(out / "best.toml")
    # The budget sets each run's length, so a base without a schedule gets one cosine decay per run.
    assert tomllib.loads(summary["config"])["train"]["schedule"] == "cosine" and any("no schedule" in w for w in summary["warnings"])
    assert list(summary["stage_cpu_minutes"]) == ["preflight", "lr_range", "calibrate", "search", "reevaluate", "final", "report"]
    # The guard stops a stage at its share; the reports' own cost is the slack.
    assert summary["cpu_minutes"] * 60 <= 15 * 1.5
    assert summary["reevaluated"] and all(len(r["val_accuracy"]) == 2 for r in summary["reevaluated"])
    assert json.loads((out / "auto.json").read_text())["test_accuracy"] == summary["test_accuracy"]
    assert "babysit auto: budget and search" in (out / "report.html").read_text()
    cfg = load_toml(out / "best.toml")
    # The final run is the longest: twice the horizon the re-evaluation ranked at.
    assert cfg["train"]["epochs"] == summary["plan"]["final_epochs"] >= 2 * summary["plan"]["horizon_epochs"] and cfg["train"]["lr"] > 0


def test_a_budget_too_small_for_any_trial_still_ends_with_a_model_and_says_why(tmp_path):
    result = CliRunner().invoke(app, ["auto", "--data", "digits", "--model", "mlp", "--model.hidden=[16]", "--budget", "0.001s", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["test_accuracy"] is not None and Path(summary["report"]).is_file()
    # The checks alone spend a millisecond on any machine, so no search trial may run (a fast CI runner once
    # completed one within a 1 s budget).
    assert any("spent the budget" in w and "bought no complete trial" in w for w in summary["warnings"])


def test_a_final_run_that_diverges_is_retrained_at_a_lower_rate(tmp_path, monkeypatch):
    from babysit.workflows import auto as auto_module

    real, rates = auto_module.start_run, []

    def first_one_blows_up(cfg, **kwargs):
        rates.append(cfg.train.lr)
        if len(rates) == 1:  # the first final run gets a rate no network survives
            cfg = replace(cfg, train=replace(cfg.train, lr=1e4))
        return real(cfg, **kwargs)

    monkeypatch.setattr(auto_module, "start_run", first_one_blows_up)
    result = CliRunner().invoke(app, ["auto", "--data", "digits", "--model", "mlp", "--model.hidden=[16]", "--budget", "10s", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(rates) == 2 and rates[1] == pytest.approx(rates[0] * 10**-0.5)
    assert summary["status"] != "diverged" and summary["test_accuracy"] > 0.8
    assert any("final run diverged" in w and "retrained at train.lr" in w for w in summary["warnings"])
    # The exported config is the one that trained, not the one that blew up.
    assert load_toml(tmp_path / "best.toml")["train"]["lr"] == pytest.approx(rates[1])
    assert (tmp_path / "final").is_dir() and (tmp_path / "final-2").is_dir()


@pytest.mark.parametrize("text,seconds", [("10m", 600.0), ("90s", 90.0), ("1h", 3600.0), ("45", 45.0)])
def test_budgets_parse_as_durations(text, seconds):
    assert parse_budget(text) == seconds


def test_a_bad_budget_names_the_form():
    with pytest.raises(ConfigError, match="like 10m"):
        parse_budget("ten minutes")


def _first_forward(run_dir: Path) -> list[float]:
    """The final run's first probed forward pass (activation std per layer): set by its init and first batch only."""
    first = json.loads((run_dir / "probes.jsonl").read_text().splitlines()[0])
    return [layer["act_std"] for _, layer in sorted(first["layers"].items())]


def test_one_seed_seeds_the_whole_procedure_the_final_run_included(tmp_path):
    from babysit import auto, build_config

    cfg = build_config({"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [16]}})
    # A budget the checks alone spend: no search, so the final run's config is the base's with the range
    # test's rate, and its randomness (init, shuffling) is all that can differ between seeds.
    done = {name: auto(cfg, budget_s=0.001, out_dir=tmp_path / name, seed=seed, progress=False) for name, seed in (("a", 1), ("b", 1), ("c", 2))}
    assert [done[n].config.train.seed for n in "abc"] == [1, 1, 2]
    assert load_toml(tmp_path / "c" / "best.toml")["train"]["seed"] == 2
    a, b, c = (_first_forward(tmp_path / n / "final") for n in "abc")
    assert a == b  # the same seed reproduces the final run's randomness
    assert all(x != pytest.approx(y, rel=1e-3) for x, y in zip(a, c))  # another seed draws another init and batch


def _save_table(path: Path, loader) -> Path:
    """A scikit-learn bundled table saved as a user would bring it: .npz arrays x, y or a .csv with a label column."""
    import numpy as np

    table = loader()
    if path.suffix == ".npz":
        np.savez(path, x=table.data.astype("float32"), y=table.target)
    else:
        names = [f"f{i}" for i in range(table.data.shape[1])]
        rows = [",".join([*names, "label"])] + [",".join([*(f"{v:.6g}" for v in row), str(t)]) for row, t in zip(table.data, table.target)]
        path.write_text("\n".join(rows) + "\n")
    return path


def test_a_file_after_data_is_read_as_it_is_with_a_logistic_baseline_beside_the_answer(tmp_path):
    from sklearn.datasets import load_breast_cancer

    file = _save_table(tmp_path / "mine.npz", load_breast_cancer)
    out = tmp_path / "auto"
    result = CliRunner().invoke(app, ["auto", "--data", str(file), "--budget", "5s", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert load_toml(out / "best.toml")["data"] == {**load_toml(out / "best.toml")["data"], "name": "arrays", "path": str(file)}
    # The baseline a user would try first, fitted on the same training split: breast cancer is nearly linear.
    (baseline,) = summary["baselines"]
    assert baseline["name"] == "logistic regression (standardised)" and baseline["test_accuracy"] > 0.95 and baseline["cpu_s"] < 5
    assert "logistic regression (standardised)" in (out / "report.html").read_text()
    assert "baselines" in summary["stage_cpu_minutes"]


def test_train_reads_a_csv_given_as_data_and_help_names_the_file_form(tmp_path):
    from sklearn.datasets import load_wine

    file = _save_table(tmp_path / "wine.csv", load_wine)
    result = CliRunner().invoke(app, ["train", "--data", str(file), "--epochs", "2", "--runs-dir", str(tmp_path / "runs"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["test_accuracy"] > 1 / 3  # three classes: above chance after 2 epochs
    assert ".npz" in CliRunner().invoke(app, ["auto", "--help"]).stdout


def test_a_data_name_that_looks_like_another_file_points_to_the_arrays_data_set(tmp_path):
    result = CliRunner().invoke(app, ["auto", "--data", "mine.txt", "--budget", "1s", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--data arrays --data.path=mine.txt" in result.output and "Traceback" not in result.output
