"""The curve rules on real (short, small) runs that exhibit each fault."""

from dataclasses import replace

import pytest
from torch import nn

import babysit as bs
from babysit.data.datasets import Split


def mlp(data, **kw):
    bs.train.seed_everything(0)
    return bs.blocks.mlp(data.input_shape, data.num_classes, **kw)


def run(model, data, **recipe):
    return bs.fit(model, data, bs.Recipe(device="cpu", **recipe), callbacks=[bs.train.DivergenceGuard()], progress=False)


def test_lr_1e_7_gives_a_flat_loss(digits):
    f = bs.diagnose(run(mlp(digits, hidden=(32,)), digits, lr=1e-7, epochs=4))
    assert f[0].rule == "loss_flat" and f[0].evidence["lr"] == pytest.approx(1e-7)


def test_lr_10_explodes(digits):
    f = bs.diagnose(run(mlp(digits, hidden=(32,)), digits, lr=10.0, epochs=3))
    assert f[0].rule == "loss_explodes" and "exceeds 3x the initial loss" in f[0].title


def test_a_big_net_on_60_samples_overfits(digits):
    tiny = replace(digits, train=Split(digits.train.x[:60], digits.train.y[:60]))
    f = bs.diagnose(run(mlp(tiny, hidden=(256, 256)), tiny, lr=1e-3, epochs=15, batch_size=20))
    assert [x.rule for x in f] == ["overfitting"] and f[0].severity == "warning" and f[0].evidence["gap"] > 0.15


def test_a_linear_model_on_mnist1d_underfits(mnist1d):
    # The MNIST-1D paper's logistic regression reaches 32%: no gap, low accuracy.
    bs.train.seed_everything(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(40, 10))
    f = bs.diagnose(run(linear, mnist1d, lr=1e-2, epochs=8))
    assert [x.rule for x in f] == ["underfitting"] and "capacity" in f[0].fix


def test_a_healthy_run_raises_nothing(digits):
    assert bs.diagnose(run(mlp(digits), digits, lr=1e-3, epochs=5)) == []
