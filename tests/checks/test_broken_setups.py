"""Acceptance: deliberately broken set-ups are named correctly FIRST; healthy controls raise no error.

Each set-up runs what `babysit doctor` does: the preflight checks (`bs.check`)
and a short training run with probes, whose curves and per-layer statistics the
diagnosis rules read (`bs.diagnose`). The first finding of the merged, ranked
list must name the problem that was put there. Everything runs on digits (or
MNIST-1D for one control) in about a second per set-up.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

import babysit as bs
from babysit.checks.base import CheckSettings
from babysit.data.datasets import Split
from babysit.diagnose.merge import merge_findings

from .conftest import FAST
from .test_gradcheck import CubeLayer


def mlp(data, **kw):
    bs.train.seed_everything(0)
    return bs.blocks.mlp(data.input_shape, data.num_classes, **kw)


def badly_scaled():
    """Digits as 64 raw features, each multiplied by 10^U(-2, 3) and shifted: no preprocessing."""
    raw = bs.load_dataset("digits")
    g = torch.Generator().manual_seed(0)
    scale = 10 ** (torch.rand(64, generator=g) * 5 - 2)
    shift = torch.randn(64, generator=g) * 10 * scale
    return replace(raw.map(lambda x: x.reshape(len(x), -1) * scale + shift), input_shape=(64,))


def shuffled_labels(data):
    y = data.train.y[torch.randperm(len(data.train.y), generator=torch.Generator().manual_seed(1))]
    return replace(data, train=Split(data.train.x, y))


def leaky_preprocessing():
    """Standardised with statistics of train + val + test together (the leak the lectures warn about)."""
    raw = bs.load_dataset("digits")
    everything = torch.cat([raw.train.x, raw.val.x, raw.test.x])
    mean, std = everything.mean(0), everything.std(0).clamp_min(1e-8)
    return raw.map(lambda x: (x - mean) / std)


def forgetful_eval(model, x):
    return model(x)  # the bug: evaluates without model.eval()


def with_cube(data, factor):
    bs.train.seed_everything(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), CubeLayer(32, factor), nn.Linear(32, 10))


# name -> (model factory, data, recipe, eval_fn, settings, the rules that name the problem)
BROKEN = {
    "lr=1e-7": (lambda d: mlp(d), None, bs.Recipe(lr=1e-7), None, FAST, {"lr_too_low"}),
    "lr=10": (lambda d: mlp(d), None, bs.Recipe(lr=10.0), None, FAST, {"lr_too_high"}),
    "zero init": (lambda d: mlp(d, init="zeros"), None, bs.Recipe(), None, FAST, {"init_symmetry"}),
    "0.01 init, 10-layer tanh": (lambda d: mlp(d, hidden=(100,) * 10, activation="tanh", init="small"), None, bs.Recipe(), None, FAST, {"activations_vanish"}),
    "std 1.0 init, tanh": (lambda d: mlp(d, activation="tanh", init="normal", init_std=1.0), None, bs.Recipe(), None, FAST, {"saturation_at_init"}),
    "std 1.0 init, 5-layer ReLU": (lambda d: mlp(d, hidden=(100,) * 5, init="normal", init_std=1.0), None, bs.Recipe(), None, FAST, {"activations_explode"}),
    "ReLU bias -5": (lambda d: mlp(d, bias=-5.0), None, bs.Recipe(), None, FAST, {"dead_relu_at_init"}),
    "unscaled features": (lambda d: mlp(d), badly_scaled, bs.Recipe(), None, FAST, {"data_scales", "data_not_centred"}),
    "shuffled labels": (lambda d: mlp(d), lambda: shuffled_labels(bs.prepare(bs.load_dataset("digits"))), bs.Recipe(), None, FAST, {"input_independent"}),
    "dropout 0.9, tiny net": (lambda d: mlp(d, hidden=(16,), dropout=0.9), None, bs.Recipe(), None, FAST, {"regularization_too_strong"}),
    "BN eval without model.eval()": (lambda d: mlp(d, batchnorm=True), None, bs.Recipe(), forgetful_eval, FAST, {"eval_mode"}),
    "preprocessing fitted on all data": (lambda d: mlp(d), leaky_preprocessing, bs.Recipe(), None, FAST, {"data_leak"}),
    "wrong custom backward": (lambda d: with_cube(d, factor=2.0), None, bs.Recipe(), None, replace(FAST, gradcheck=True), {"gradcheck_failed"}),
}

HEALTHY = {
    "MLP ReLU He, Adam": (lambda d: mlp(d), None, bs.Recipe(lr=1e-3)),
    "MLP tanh Xavier, momentum": (lambda d: mlp(d, activation="tanh", init="xavier"), None, bs.Recipe(optimizer="momentum")),
    "MLP batch norm + dropout 0.2, Adam": (lambda d: mlp(d, batchnorm=True, dropout=0.2), None, bs.Recipe(lr=1e-3)),
    "convnet He, SGD": (lambda d: (bs.train.seed_everything(0), bs.blocks.convnet(d.input_shape, d.num_classes))[1], None, bs.Recipe(optimizer="sgd", lr=0.1)),
    "MLP leaky ReLU, SGD": (lambda d: mlp(d, activation="leaky_relu"), None, bs.Recipe(optimizer="sgd")),
    "MLP 3 layers, weight decay": (lambda d: mlp(d, hidden=(128, 64, 32)), None, bs.Recipe(lr=1e-3, weight_decay=1e-4)),
    "MLP maxout, vanilla dropout, nesterov + step decay": (
        lambda d: mlp(d, activation="maxout", dropout=0.2, dropout_kind="vanilla"), None,
        bs.Recipe(optimizer="nesterov", lr=0.01, schedule="step", period=2),
    ),
    "MNIST-1D convnet with batch norm (demo recipe)": (
        lambda d: (bs.train.seed_everything(0), bs.blocks.convnet(d.input_shape, d.num_classes, kernel_size=5, batchnorm=True))[1],
        "mnist1d", bs.Recipe(lr=1e-2),
    ),
}


def findings_for(make, data, recipe, eval_fn=None, settings: CheckSettings = FAST, epochs=5):
    """Preflight findings, then the findings of a short probed run (curves and per-layer probes), ranked together."""
    recipe = replace(recipe, device="cpu")
    report = bs.check(make(data), data, recipe, eval_fn=eval_fn, settings=settings, progress=False)
    probes = bs.watch(preset="light")
    result = bs.fit(make(data), data, replace(recipe, epochs=epochs), callbacks=[bs.train.DivergenceGuard(), probes], progress=False)
    assert probes.records, "the run must carry probe evidence"
    run = {"metrics": result.history.records, "probes": probes.records, "summary": result.summary()}
    return merge_findings(run, report.to_dict())  # what `babysit doctor` and its report list


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_setup_is_named_first(name, digits):
    make, data, recipe, eval_fn, settings, expected = BROKEN[name]
    data = data() if data else digits
    found = findings_for(make, data, recipe, eval_fn, settings)
    assert found, f"{name}: nothing found"
    assert found[0].rule in expected, f"{name}: first finding {found[0]!r}; all: {[f.rule for f in found]}"
    assert found[0].fix and found[0].lecture_rule and found[0].evidence


@pytest.mark.parametrize("name", list(HEALTHY))
def test_healthy_control_raises_no_error(name, digits, mnist1d):
    make, data, recipe = HEALTHY[name]
    data = mnist1d if data == "mnist1d" else digits
    errors = [f for f in findings_for(make, data, recipe) if f.severity == "error"]
    assert errors == []


def test_the_suite_covers_the_acceptance_counts():
    assert len(BROKEN) >= 10 and len(HEALTHY) >= 5
