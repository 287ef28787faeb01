"""The probe-based rules on real run records: `babysit train`'s recorder and probes, read back from disk.

Each broken set-up is a config, trained briefly on digits by `bs.workflows.start_run` (the
same path as `babysit train`, with the default 'light' probes), loaded with
`bs.load_run` and diagnosed without any preflight check: the per-layer
evidence in probes.jsonl alone must name the fault first. The healthy controls
(the configurations of tests/checks/test_broken_setups.py) must raise no error.
"""

from __future__ import annotations

import statistics

import pytest

import babysit as bs


def record(tmp_path, digits, mnist1d, model, train, data="digits", epochs=4):
    """Train the config briefly with probes, then read its run record back from disk."""
    cfg = bs.build_config({"data": {"name": data}, "model": {"name": "mlp", **model}, "train": {"device": "cpu", "epochs": epochs, **train}})
    bs.workflows.start_run(cfg, runs_dir=tmp_path, name="run", progress=False, data=digits if data == "digits" else mnist1d)
    run = bs.load_run(tmp_path / "run")
    assert run.probes, "the record must hold probes"
    return run


# name -> (model options, train options, the rule named first, other rules the probes must show)
BROKEN = {
    # The update ratio is the direct evidence of the rate; the flat loss is its symptom (diagnose.causes).
    "lr=1e-7": ({}, {"lr": 1e-7}, "update_ratio_low", {"loss_flat"}),
    "SGD lr=3": ({}, {"optimizer": "sgd", "lr": 3.0}, "loss_explodes", {"update_ratio_high"}),
    "zero init": ({"init": "zeros"}, {}, "init_symmetry", {"dead_relu_at_init"}),
    "0.01 init, 10-layer tanh": ({"hidden": [100] * 10, "activation": "tanh", "init": "small"}, {}, "activations_vanish", {"gradients_vanished_in_training"}),
    "std 1.0 init, tanh": ({"activation": "tanh", "init": "normal", "init_std": 1.0}, {}, "saturation_at_init", set()),
    "std 1.0 init, 5-layer ReLU": ({"hidden": [100] * 5, "init": "normal", "init_std": 1.0}, {}, "activations_explode", set()),
    "ReLU bias -5": ({"bias": -5.0}, {}, "dead_relu_at_init", set()),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_probes_of_a_real_run_name_the_fault_first(name, tmp_path, digits, mnist1d):
    model, train, first, also = BROKEN[name]
    found = bs.diagnose(record(tmp_path, digits, mnist1d, model, train))
    rules = [f.rule for f in found]
    assert rules and rules[0] == first, f"{name}: {found}"
    assert found[0].severity == "error" and also <= set(rules), rules


def test_vanishing_activations_are_read_at_initialisation(tmp_path, digits, mnist1d):
    # The lectures' demo: at the first step the std falls ~10x per layer of the 0.01-init tanh net.
    run = record(tmp_path, digits, mnist1d, {"hidden": [100] * 10, "activation": "tanh", "init": "small"}, {})
    vanish = bs.diagnose(run, rules=["activations"])[0]
    stds = list(vanish.evidence["act_std"].values())
    assert vanish.evidence["step"] == 1 and vanish.title.endswith("at step 1")
    assert stds[0] > 0.05 and stds[-1] < 1e-8 and vanish.evidence["ratio"] < 1e-6
    assert stds == sorted(stds, reverse=True)


def test_dead_relus_are_counted_from_the_recorded_probes(tmp_path, digits, mnist1d):
    run = record(tmp_path, digits, mnist1d, {"bias": -5.0}, {})
    dead = bs.diagnose(run, rules=["dead_relu"])[0]
    latest = run.probes[-1]
    assert dead.evidence["step"] == latest["step"]
    assert dead.evidence["dead_fraction"] == {n: s["dead_fraction"] for n, s in latest["layers"].items() if "dead_fraction" in s}
    assert max(dead.evidence["dead_fraction"].values()) >= 0.8


def test_update_ratio_evidence_is_the_median_of_the_later_recorded_ratios(tmp_path, digits, mnist1d):
    run = record(tmp_path, digits, mnist1d, {}, {"lr": 1e-7})
    low = bs.diagnose(run, rules=["update_ratio"])[0]
    # The later half of the probed steps (at least 3): past Adam's first, lr-sized steps.
    settled = run.probes[min(len(run.probes) // 2, len(run.probes) - 3):]
    assert low.evidence["steps"] == [settled[0]["step"], settled[-1]["step"]] and low.evidence["probes"] == len(settled)
    assert low.evidence["update_ratio"]["1.weight"] == pytest.approx(statistics.median(p["params"]["1.weight"]["update_ratio"] for p in settled))
    # Adam's step is about lr per weight: 1e-7 * sqrt(64 * 100) / ||W|| (He init, ||W|| ~ 14) ~ 6e-7.
    assert 1e-7 < low.evidence["update_ratio"]["1.weight"] < 3e-6


# The healthy controls of tests/checks/test_broken_setups.py, as configs: name -> (data, model, train).
HEALTHY = {
    "MLP ReLU He, Adam": ("digits", {}, {"lr": 1e-3}),
    "MLP tanh Xavier, momentum": ("digits", {"activation": "tanh", "init": "xavier"}, {"optimizer": "momentum"}),
    "MLP batch norm + dropout 0.2, Adam": ("digits", {"batchnorm": True, "dropout": 0.2}, {"lr": 1e-3}),
    "convnet He, SGD": ("digits", {"name": "convnet"}, {"optimizer": "sgd", "lr": 0.1}),
    "MLP leaky ReLU, SGD": ("digits", {"activation": "leaky_relu"}, {"optimizer": "sgd"}),
    "MLP 3 layers, weight decay": ("digits", {"hidden": [128, 64, 32]}, {"lr": 1e-3, "weight_decay": 1e-4}),
    "MLP maxout, vanilla dropout, nesterov + step decay": (
        "digits", {"activation": "maxout", "dropout": 0.2, "dropout_kind": "vanilla"},
        {"optimizer": "nesterov", "lr": 0.01, "schedule": "step", "period": 2},
    ),
    "MNIST-1D convnet with batch norm (demo recipe)": ("mnist1d", {"name": "convnet", "kernel_size": 5, "batchnorm": True}, {"lr": 1e-2}),
}


@pytest.mark.parametrize("name", list(HEALTHY))
def test_healthy_real_runs_raise_no_error(name, tmp_path, digits, mnist1d):
    data, model, train = HEALTHY[name]
    run = record(tmp_path, digits, mnist1d, model, train, data=data, epochs=5)
    errors = [f for f in bs.diagnose(run) if f.severity == "error"]
    assert errors == []
