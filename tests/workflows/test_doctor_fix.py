"""`doctor --fix` / `bs.doctor(..., fix=True)`: the top root cause repaired, the look repeated, before/after compared."""

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import babysit as bs
from babysit.cli import app
from babysit.workflows.repair import reinitialise

runner = CliRunner()


def test_cli_fix_of_lr_10_lowers_the_lr_and_the_rerun_trains(tmp_path):
    result = runner.invoke(app, ["doctor", "--fix", "--data", "digits", "--model", "mlp", "--lr", "10", "--epochs", "3",
                                 "--train.device=cpu", "--runs-dir", str(tmp_path), "--name", "hot"])  # fmt: skip
    assert result.exit_code == 0, result.output  # nothing error-level remains after the repair
    out = result.stdout
    assert "repair (before -> after)" in out and "lr_too_high" in out and "nothing error-level remains" in out
    saved = json.loads((tmp_path / "hot-fix1" / "repair.json").read_text())
    first = saved["rounds"][0]
    new_lr = json.loads((tmp_path / "hot-fix1" / "config.json").read_text())["train"]["lr"]
    assert first["cause"] == "lr_too_high" and first["change"].startswith("train.lr: 10 ->") and new_lr < 1.0 and first["helped"]
    # The rerun trains: its loss falls to well below chance (ln 10 = 2.3) and accuracy is far above 10%.
    assert first["after"]["train_loss"] < 1.0 and first["after"]["val_accuracy"] > 0.7
    assert first["before"]["val_accuracy"] < 0.3 and "lr_too_high" in first["before"]["errors"] and first["after"]["errors"] == []
    assert saved["stopped"] == "nothing error-level remains"


def test_library_fix_reinitialises_a_zero_initialised_module_without_touching_it(tmp_path):
    data = bs.prepare(bs.load_dataset("spiral"))
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
    cfg = bs.build_config({"data": {"name": "spiral"}, "train": {"optimizer": "adam", "lr": 3e-3, "epochs": 3, "device": "cpu"}})
    done = bs.doctor(cfg, model=net, data=data, runs_dir=tmp_path, progress=False, fix=True, write_report=False)
    assert done.repairs and done.repairs[0].cause == "init_symmetry" and "re-initialised" in done.repairs[0].change
    assert done.repairs[0].after["val_accuracy"] > done.repairs[0].before["val_accuracy"] + 0.1
    assert all(float(m.weight.detach().abs().sum()) == 0 for m in net if isinstance(m, nn.Linear))  # the user's module is untouched


def test_a_fault_without_an_automatic_fix_stops_and_says_what_to_change(tmp_path):
    data = bs.prepare(bs.load_dataset("spiral"))
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3), nn.Softmax(dim=1))
    cfg = bs.build_config({"data": {"name": "spiral"}, "train": {"optimizer": "adam", "lr": 3e-3, "epochs": 2, "device": "cpu"}})
    done = bs.doctor(cfg, model=net, data=data, runs_dir=tmp_path, progress=False, fix=True, write_report=False)
    assert done.repairs == [] and done.stopped.startswith("no automatic fix for activation_on_scores")
    assert "remove the final softmax" in done.stopped


def test_reinitialise_gives_he_scale_and_zero_biases():
    torch.manual_seed(0)
    net = reinitialise(nn.Sequential(nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 10)))
    std = float(net[0].weight.detach().std())
    assert abs(std - (2 / 400) ** 0.5) < 0.05 * (2 / 400) ** 0.5 and float(net[0].bias.abs().max()) == 0


def test_reinitialise_gives_a_saturated_lstm_torch_s_own_scale_back():
    torch.manual_seed(0)
    lstm = nn.LSTM(8, 32, batch_first=True)
    with torch.no_grad():
        lstm.weight_hh_l0.mul_(50)  # saturates its gates
    fresh = reinitialise(nn.Sequential(lstm)).get_submodule("0")
    assert float(fresh.weight_hh_l0.abs().max()) <= 1 / 32**0.5 and float(lstm.weight_hh_l0.abs().max()) > 1  # a copy: the original is untouched


@pytest.mark.parametrize("model,changed", [("mlp", "hidden"), ("convnet", "channels")])
def test_more_capacity_widens_only_what_the_built_in_model_reads(model, changed, recwarn):
    from babysit.build import model_from_config
    from babysit.checks.preflight import CheckReport
    from babysit.diagnose.findings import Finding
    from babysit.workflows.repair import plan_repair

    cfg = bs.build_config({"data": {"name": "digits"}, "model": {"name": model}})
    data = bs.load_dataset("digits")
    plan = plan_repair(Finding("capacity_too_small", "error", "too narrow"), cfg, None, data, CheckReport([]))
    assert plan.change.startswith(f"model: {changed} ") and ("hidden" in plan.change) == (changed == "hidden")
    assert getattr(plan.cfg.model, changed) != getattr(cfg.model, changed)
    model_from_config(plan.cfg.model, data, seed=0)
    assert not [w for w in recwarn if "does not use" in str(w.message)]
