"""The live view: running trials' progress from their reported epochs, the best in the title, panda's probes."""

import io

from rich.console import Console

import babysit as bs
from babysit.tune.live import LiveView, probe_table, trial_table
from babysit.tune.results import TrialRecord
from babysit.tune.runner import Search, work
from babysit.tune.space import parse_space


def render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_table_shows_running_progress_and_the_best(tmp_path):
    search = Search(bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp"}}), parse_space({"train.lr": "log_uniform(1e-3, 1)"}), bs.tune.TuneSettings(trials=3, epochs=8), root=tmp_path)
    records = [
        TrialRecord(0, 1, 0, "completed", {"train.lr": 0.0123}, 0.91, 8, reported={e: 0.5 + e / 20 for e in range(1, 9)}),
        TrialRecord(1, 1, 1, "diverged", {"train.lr": 0.9}, None, 8, reason="loss 40 at step 3 exceeds 3x", reported={1: 0.12}),
        TrialRecord(2, 1, 2, "running", {"train.lr": 0.05}, None, 8, reported={1: 0.6, 2: 0.7, 3: 0.75}),
    ]
    text = render(trial_table(search, records))
    assert "2/3 trials done, best val acc 0.910 (#0)" in " ".join(text.split())  # the title wraps at the table's width
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│")}
    assert "3/8" in rows["2"] and "0.750" in rows["2"] and "running" in rows["2"]
    assert "diverged" in rows["1"] and "0.0123" in rows["0"]


def test_panda_view_watches_the_trial_being_trained(tmp_path, digits):
    search = Search(bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [16]}, "train": {"optimizer": "momentum"}}),
                    parse_space({"train.lr": "log_uniform(1e-2, 0.1)"}), bs.tune.TuneSettings(trials=1, epochs=1), root=tmp_path)  # fmt: skip
    view = LiveView(search.open(), search, console=Console(file=io.StringIO()), probes=True)
    assert work(search, digits, callbacks=view.callbacks()) == 1
    record = view.probe
    assert record is not None and set(record["layers"]) == {"1", "2", "3"}  # linear, relu, linear head
    text = render(probe_table(0, record))
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│")}
    ratio = record["params"]["1.weight"]["update_ratio"]
    assert f"{ratio:.1e}" in rows["1"] and "%" in rows["2"]  # the ReLU's dead share
    assert 1e-5 < ratio < 1  # a sane SGD step relative to the weights
