"""`babysit auto` end to end on digits with a tiny budget: stages, budget, files, one JSON line."""

import json
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

import babysit as bs
from babysit.cli import app
from babysit.config import load_toml
from babysit.errors import ConfigError
from babysit.workflows.auto import parse_budget


def _run_auto(out: Path, *args: str) -> dict:
    """`babysit auto ARGS --out OUT --json`, which must succeed; its JSON line."""
    result = CliRunner().invoke(app, ["auto", *args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])  # strict JSON: no NaN, one line


def _auto_json(tmp_path: Path, *args: str) -> dict:
    return _run_auto(tmp_path, "--data", "digits", "--model", "mlp", "--model.hidden=[32]", *args)


def test_auto_runs_every_stage_within_the_budget_and_writes_a_runnable_config(tmp_path):
    out = tmp_path / "auto"
    summary = _auto_json(out, "--budget", "30s")
    assert summary["status"] == "completed" and summary["test_accuracy"] > 0.9
    assert 0 < summary["cpu_minutes"] and Path(summary["report"]).is_file()
    # `config` is the exported TOML itself (best.toml's text), so a script needs no second file.
    assert tomllib.loads(summary["config"]) == load_toml(out / "best.toml") and summary["config_path"] == str(out / "best.toml")
    # The budget sets each run's length, so a base without a schedule gets one cosine decay per run.
    assert tomllib.loads(summary["config"])["train"]["schedule"] == "cosine" and any("no schedule" in w for w in summary["warnings"])
    assert list(summary["stage_cpu_minutes"]) == ["lr_range", "preflight", "calibrate", "search", "reevaluate", "final", "report"]
    # The search starts from the config's own values (Adam's default rate; no weight decay, the log range's low end).
    start = summary["plan"].get("incumbent")
    if start is None:  # under a heavy load the budget's share can buy no search: the base config trains with all of it
        assert not summary["plan"]["trials"] and any("bought no complete search trial" in w for w in summary["warnings"])
    elif start["holds"]:  # no first-stage trial beat it beyond chance: no second stage, no re-evaluation
        assert not summary["reevaluated"] and "ranking" not in summary["plan"] and any("the search stops" in w for w in summary["warnings"])
        assert tomllib.loads(summary["config"])["train"]["lr"] == 1e-3
    if start is not None:
        # Scored on the 143 validation samples, or re-scored on 5 folds of the 1,438 of train+val when the split could not tell.
        assert start["values"] == {"train.lr": 1e-3, "train.weight_decay": 1e-6} and (start["n"], start["folds"]) in ((143, 0), (1438, 5))
    if start is not None and not start["holds"]:
        # Ranked on 5 folds when the validation split is too small to resolve a point (digits: 143 samples), else on
        # 2 seeds each, or not re-evaluated when the top configurations are within the split's noise of each other.
        method = summary["plan"]["ranking"]["method"]
        runs = {"kfold": 5, "split": 2, "none": 0}[method]
        # The top 2; not the starting configuration beside them: the first stage judged it, its own late gain allowed for.
        expected = 0 if method == "none" else 2
        assert len(summary["reevaluated"]) == expected and all(len(r["val_accuracy"]) == runs for r in summary["reevaluated"]) or any(
            "re-evaluation's share" in w and "ended it early" in w for w in summary["warnings"])  # the machine's load can slow a run past its share
        assert summary["plan"]["ranking"]["n"] == 143 and any("standard error" in w for w in summary["warnings"])
    assert json.loads((out / "auto.json").read_text())["test_accuracy"] == summary["test_accuracy"]
    assert "babysit auto: budget and search" in (out / "report.html").read_text()
    plan = summary["plan"]
    # The final run completes its schedule (its cosine decays to its end), as long as it re-planned itself from the cost of its
    # own epochs; it is the longest run unless that cost (the machine's load moves it) made it re-plan much shorter, which it says.
    final = plan["final_epochs_replanned"]
    assert load_toml(out / "best.toml")["train"]["epochs"] == final == plan["final_epochs_trained"]
    assert final >= 2 * plan["horizon_epochs"] or any("re-planned itself" in d for d in summary["deviations"])
    assert (plan["horizon_epochs"] > 0) == (start is not None and not start["holds"] and summary["plan"]["ranking"]["method"] != "none")
    assert not any("cut at epoch" in d for d in summary["deviations"])
    # The runs end where the plan leaves the report its share, or the final run says it overran (an epoch's CPU time drifts with the machine's load), and the last-resort guard bounds that;
    # the report, written last, may pass the budget by its own cost, and then says so.
    from babysit.workflows.auto import FINAL_OVERRUN_LIMIT

    runs_spent = summary["budget_spent"] - summary["stage_cpu_minutes"]["report"] * 60 / plan["budget_s"]
    # The runs spend what the report's reserve leaves them (on a 30 s budget the 5 s reserve is a sixth of it, and the
    # report may take less; from a minute up the whole budget is at least 95% spent: bench/bench_auto.py).
    assert runs_spent >= 0.95 * (1 - plan["report_s"] / plan["budget_s"])
    assert runs_spent <= 1 - plan["report_s"] / plan["budget_s"] + FINAL_OVERRUN_LIMIT + 0.01
    assert runs_spent <= 1 - plan["report_s"] / plan["budget_s"] + 0.01 or any(d.startswith("the final stage spent") for d in summary["deviations"])
    assert summary["budget_spent"] <= 1.0 or summary["deviations"][-1].startswith("auto spent")


def test_a_stage_that_overruns_its_share_is_a_deviation_and_the_final_run_is_replanned_not_cut(tmp_path, monkeypatch):
    from babysit.workflows import auto as auto_module

    real_plan, real_collect, planned = auto_module.plan_budget, auto_module.collect, {}

    def plan_budget(*args, **kwargs):
        planned["plan"], planned["at"] = real_plan(*args, **kwargs), time.process_time()
        return planned["plan"]

    def slow_collect(*args, **kwargs):
        # The search's bookkeeping burns CPU until its share is spent and a third of the budget more.
        while time.process_time() < planned["at"] + planned["plan"].search_s + 0.35 * 30:
            pass
        return real_collect(*args, **kwargs)

    monkeypatch.setattr(auto_module, "plan_budget", plan_budget)
    monkeypatch.setattr(auto_module, "collect", slow_collect)
    summary = _auto_json(tmp_path, "--budget", "30s")
    plan, deviations = summary["plan"], summary["deviations"]
    assert any(d.startswith("the search stage spent") for d in deviations), deviations
    # The final run is shortened to what is left, and says so, unless the re-evaluation's share that a skipped
    # re-evaluation gives back (or epochs that came cheaper than calibration's under a changing load) covered it.
    replanned = any(d.startswith(f"the final run was re-planned from {plan['planned']['final_epochs']} to {plan['final_epochs']} epochs") for d in deviations)
    assert replanned == (plan["final_epochs"] < plan["planned"]["final_epochs"]), (plan, deviations)
    # Re-planned before it started (and by its own epochs' cost while it ran), so the shorter run still finishes its schedule.
    assert plan["final_epochs_trained"] == plan["final_epochs_replanned"] and not any("cut at epoch" in d for d in deviations)
    assert summary["status"] == "completed" and summary["test_accuracy"] > 0.9
    # The deviations come first: in the JSON line, in report.html's auto section, and in the printed summary.
    assert list(summary)[0] == "deviations"
    page = (tmp_path / "report.html").read_text()
    assert page.index("deviation from the plan: the search stage spent") < page.index("budget 30 CPU-seconds")


def test_the_printed_summary_starts_with_the_deviations(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from babysit.cli import auto as cli_auto
    from babysit.workflows.auto import AutoResult

    printed = io.StringIO()
    monkeypatch.setattr(cli_auto, "out", Console(file=printed, width=200))
    plan = {"budget_s": 10.0, "trials": 0, "planned": {"final_epochs": 3}, "final_epochs": 2, "final_epochs_trained": 2}
    done = AutoResult("completed", 0.9, None, tmp_path / "best.toml", "", tmp_path / "report.html", tmp_path, {"final": 9.0}, plan,
                      deviations=["the final run was re-planned from 3 to 2 epochs"], spent_s=9.5)  # fmt: skip
    cli_auto.print_auto(done)
    lines = printed.getvalue().splitlines()
    assert lines[0] == "deviation from the plan: the final run was re-planned from 3 to 2 epochs"
    assert "95% of the budget" in printed.getvalue() and "no search" in printed.getvalue()


def test_a_final_run_that_diverges_is_retrained_at_a_lower_rate(tmp_path, monkeypatch):
    from babysit.workflows import auto as auto_module

    real, rates = auto_module.start_run, []

    def first_one_blows_up(cfg, **kwargs):
        if kwargs["name"].startswith("final"):  # not the calibration's recorded run
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


def test_a_final_run_that_diverges_past_retraining_is_a_deviation(tmp_path, monkeypatch):
    from babysit.workflows import auto as auto_module

    real = auto_module.start_run

    def every_final_blows_up(cfg, **kwargs):
        if kwargs["name"].startswith("final"):
            cfg = replace(cfg, train=replace(cfg.train, lr=1e4))
        return real(cfg, **kwargs)

    monkeypatch.setattr(auto_module, "start_run", every_final_blows_up)
    summary = _auto_json(tmp_path, "--model.hidden=[16]", "--budget", "10s")
    assert summary["status"] == "diverged"
    assert any("final run diverged" in d and "its schedule did not finish" in d for d in summary["deviations"]), summary["deviations"]


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
    # The input-baseline check's two trainings do not fit 5% of such a budget: left out, and said.
    said = next(w for w in done["a"].warnings if "input-baseline check was left out" in w)
    checks = json.loads((tmp_path / "a" / "final" / "check.json").read_text())["checks"]
    assert "5% of the budget" in said and "input_baseline" not in [c["name"] for c in checks] and "lr_range" in [c["name"] for c in checks]


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
    summary = _run_auto(out, "--data", str(file), "--budget", "5s")
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


def test_a_small_table_is_ranked_by_kfold_cross_validation_and_auto_says_so(tmp_path):
    from sklearn.datasets import load_breast_cancer

    file = _save_table(tmp_path / "cancer.npz", load_breast_cancer)
    out = tmp_path / "auto"
    # A starting rate 100x too low: the first stage beats it beyond chance even on 45 rows, so the search goes on.
    summary = _run_auto(out, "--data", str(file), "--budget", "20s", "--train.lr=3e-5")
    start = summary["plan"]["incumbent"]
    assert not start["holds"] and start["best"] - start["score"] > start["margin"] and any("the search goes on" in w for w in summary["warnings"])
    # 45 validation rows: an accuracy's standard error is several points, so one split cannot rank the top configurations.
    ranked = summary["plan"]["ranking"]
    assert (ranked["method"], ranked["n"], ranked["folds"], ranked["pooled"]) == ("kfold", 45, 5, 456) and ranked["se"] > 0.01
    assert summary["reevaluated"] and all(len(r["val_accuracy"]) == 5 for r in summary["reevaluated"]) or any(
        "re-evaluation's share" in w and "ended it early" in w for w in summary["warnings"])  # the machine's load can slow a run past its share
    said = next(w for w in summary["warnings"] if "cross-validation" in w)
    assert "45 samples" in said and "standard error" in said and "5-fold stratified" in said
    assert "5-fold stratified cross-validation over train+val (456 samples)" in (out / "report.html").read_text()
    assert summary["plan"]["final_epochs_trained"] == summary["plan"]["final_epochs_replanned"] or summary["status"] == "diverged"
    if summary["reevaluated"] and summary["status"] == "completed":
        # k-fold's ten runs of h epochs leave the final stage about ten horizons: not one run stretched over all of it (trained far past
        # anything that ranked its configuration) but independent runs of at least FINAL_FACTOR x h, their probabilities averaged.
        from babysit.build import load_data
        from babysit.train.trainer import evaluate
        from babysit.workflows.budget import FINAL_FACTOR
        from babysit.workflows.members import MAX_MEMBERS

        ensemble, h = summary["plan"]["ensemble"], summary["plan"]["horizon_epochs"]
        assert ensemble["planned"] >= 2 and ensemble["horizon_epochs"] == h
        # final_epochs is what the stage bought in all (a re-plan is judged by it), each run's share is ensemble.epochs.
        assert ensemble["planned"] == summary["plan"]["final_epochs"] // (FINAL_FACTOR * h) or ensemble["planned"] == MAX_MEMBERS
        members = ensemble["members"]
        assert len(members) >= 2 or any("delivered alone" in w for w in summary["warnings"])
        assert len({m["seed"] for m in members}) == len(members) and all(m["epochs"] >= h for m in members)
        assert members[0]["epochs"] >= 0.8 * FINAL_FACTOR * h or any("re-planned itself" in d for d in summary["deviations"])
        if len(members) >= 2:
            # What the summary reports is what ensemble.pt holds: the saved members, rebuilt, score it again.
            cfg = load_toml(out / "best.toml")
            test = load_data(bs.build_config(cfg).data).test
            assert evaluate(bs.load_ensemble(out / "ensemble.pt"), test.x, test.y)[1] == summary["test_accuracy"] == ensemble["test_accuracy"]
            assert f"delivered as an ensemble of {len(members)} runs" in summary["config"].splitlines()[1]
            assert "independent runs of the chosen configuration" in (out / "report.html").read_text()


def test_the_split_says_on_which_samples_the_start_held():
    from babysit.workflows.auto import split_text

    plan = {"planned": {"final_epochs": 10}, "coarse_epochs": 2, "final_epochs_trained": 30, "report_s": 5.0,
            "incumbent": {"holds": True, "trials": 7, "margin": 0.02, "n": 143, "folds": 0}}  # fmt: skip
    assert "chance explains on 143 validation samples" in split_text(plan) and "8 trials of 2 epochs" in split_text(plan)
    plan["incumbent"].update(n=1438, folds=5)
    assert "chance explains on 1438 samples of train+val over 5 folds" in split_text(plan)
    # Kept because the trials were too short to judge: the split names the start's own late gain, not chance.
    plan["incumbent"].update(n=400, folds=0, rising=0.1975, too_short=True)
    said = split_text(plan)
    assert "19.8% it gained itself over its trial's second half" in said and "chance" not in said


def test_a_stage_past_its_share_is_a_deviation_only_when_it_cost_the_final_run_an_epoch_and_a_percent():
    from babysit.workflows.auto import _overran

    deviations: list[str] = []
    _overran("search", 18.7, 18.6, 0.035, 60.0, deviations)  # a table's epoch: 0.1 s past an 18.6 s share is noise
    _overran("search", 30.0, 29.5, 0.9, 60.0, deviations)  # under one 0.9 s epoch of the final run
    assert deviations == []
    _overran("re-evaluation", 20.25, 18.75, 0.25, 60.0, deviations)
    assert deviations == ["the re-evaluation stage spent 20.2 CPU-s of its 18.8 s share; the final run lost about 6 epochs to it"]


def test_the_runners_up_are_ranked_at_the_rung_they_reached_and_the_beaten_start_is_not_one():
    from babysit.tune.results import TrialRecord, TuneResult
    from babysit.workflows.auto import _top_configs

    def trial(number, stage, values, status, reached, score):
        curve = {e: score - 0.1 * (reached - e) / reached for e in range(1, reached + 1)}  # rising to `score` at the last epoch it trained
        return TrialRecord(number, stage, number, status, values, score if status == "completed" else None, reached, reported=curve)

    start, best, wide, narrow, slow = ({"train.lr": lr, "train.weight_decay": wd} for lr, wd in
                                       ((1e-3, 1e-6), (0.027, 1e-5), (0.033, 4.6e-4), (0.017, 1e-5), (0.0015, 1e-5)))  # fmt: skip
    # Seed 0 of MNIST-1D-small at 10 CPU-minutes: the pruner let only the start and the winner finish the first stage (298 epochs)
    # and stopped every second-stage trial, the winner's copy at 297 of its 596 epochs, the rest at the first rung (99).
    trials = [trial(0, 1, start, "completed", 298, 0.6625), trial(1, 1, best, "completed", 298, 0.85), trial(2, 1, wide, "pruned", 99, 0.8375),
              trial(3, 1, slow, "pruned", 99, 0.69), trial(8, 2, best, "pruned", 297, 0.84375), trial(9, 2, narrow, "pruned", 99, 0.80625),
              trial(10, 2, slow, "diverged", 50, 0.1)]  # fmt: skip
    result = TuneResult(None, "", trials, [], {}, [], True)
    # The winner first (its copy got furthest in the longer stage), then the best of the rest at the rung they reached: never the start.
    assert _top_configs(result, 2, start) == [(best, 0.84375), (narrow, 0.80625)]
    assert _top_configs(result, 3, start)[2] == (wide, 0.8375)  # the longer stage first, then the shorter one's, by the rung reached
    # Before this ranking the two were the stage's complete trials: the winner and the start, already beaten by 19 points.
    assert start in [values for values, _ in _top_configs(result, 5)] and start not in [values for values, _ in _top_configs(result, 5, start)]
