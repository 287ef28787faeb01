"""Calibration: the per-layer thresholds stay silent on healthy networks trained for real.

Published tools of this kind flag 36-100% of healthy models, which makes their
warnings noise. Twelve healthy configurations (MLPs and convnets; ReLU, ELU,
tanh, sigmoid; Adam, SGD, momentum, Nesterov, RMSProp, AdaGrad; batch norm,
dropout, weight decay; digits and MNIST-1D), two seeds each, 15 epochs with
the default probes: no probe rule may fire at all, and no rule may raise an
error. The measured extremes are noted beside the thresholds in
`babysit.diagnose.layer_rules`.
"""

from __future__ import annotations

import pytest

import babysit as bs

PROBE_RULES = ["symmetry", "dead_relu", "saturation", "activations", "gradient_flow", "update_ratio"]

# name -> (data, model, train)
CONFIGS = {
    "demo convnet, batch norm, Adam 1e-2": ("mnist1d", {"name": "convnet", "kernel_size": 5, "batchnorm": True}, {"lr": 1e-2}),
    "MNIST-1D convnet, Adam 1e-3": ("mnist1d", {"name": "convnet"}, {"lr": 1e-3}),
    "MNIST-1D convnet, SGD 0.1": ("mnist1d", {"name": "convnet"}, {"optimizer": "sgd", "lr": 0.1}),
    "MNIST-1D MLP, Adam": ("mnist1d", {"name": "mlp"}, {"lr": 1e-3}),
    "digits MLP ReLU, Adam": ("digits", {"name": "mlp"}, {"lr": 1e-3}),
    "digits MLP tanh Xavier, momentum": ("digits", {"name": "mlp", "activation": "tanh", "init": "xavier"}, {"optimizer": "momentum"}),
    "digits MLP sigmoid Xavier, Adam": ("digits", {"name": "mlp", "activation": "sigmoid", "init": "xavier"}, {"lr": 1e-3}),
    "digits MLP ELU, RMSProp": ("digits", {"name": "mlp", "activation": "elu"}, {"optimizer": "rmsprop", "lr": 1e-3}),
    "digits 5-layer MLP, batch norm, SGD": ("digits", {"name": "mlp", "hidden": [64] * 5, "batchnorm": True}, {"optimizer": "sgd", "lr": 0.1}),
    "digits convnet, dropout, Adam 3e-3": ("digits", {"name": "convnet", "dropout": 0.2}, {"lr": 3e-3}),
    "digits MLP, AdaGrad": ("digits", {"name": "mlp"}, {"optimizer": "adagrad", "lr": 1e-2}),
    "digits wide MLP, Nesterov, weight decay": ("digits", {"name": "mlp", "hidden": [256, 256]}, {"optimizer": "nesterov", "lr": 0.01, "weight_decay": 5e-4}),
}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_healthy_runs_trigger_no_probe_rule(name, seed, tmp_path, digits, mnist1d):
    data, model, train = CONFIGS[name]
    cfg = bs.build_config({"data": {"name": data}, "model": model, "train": {"device": "cpu", "epochs": 15, "seed": seed, **train}})
    bs.workflows.start_run(cfg, runs_dir=tmp_path, name="run", progress=False, data=digits if data == "digits" else mnist1d)
    run = bs.load_run(tmp_path / "run")
    assert len(run.probes) >= 8
    assert bs.diagnose(run, rules=PROBE_RULES) == []
    assert [f for f in bs.diagnose(run) if f.severity == "error"] == []
