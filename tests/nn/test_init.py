"""Initialisation schemes against docs/lectures.md §3: formulas, and the deep-net activation statistics."""

import math

import pytest
import torch
from torch import nn

import babysit as bs
from babysit.errors import ConfigError
from babysit.nn.init import INITS, apply_init, fan_in

# The std each scheme must give a layer with `n` inputs per unit.
EXPECTED_STD = {
    "zeros": lambda n: 0.0,
    "small": lambda n: 0.01,
    "normal": lambda n: 1.0,
    "xavier": lambda n: 1 / math.sqrt(n),
    "he": lambda n: 1 / math.sqrt(n / 2),
}


def test_every_registered_init_has_an_expected_std():
    assert set(EXPECTED_STD) == set(INITS.names())


@pytest.mark.parametrize("name", INITS.names())
@pytest.mark.parametrize("layer", [nn.Linear(400, 300), nn.Conv2d(16, 64, 5)], ids=["linear", "conv"])
def test_every_init_matches_its_formula(name, layer):
    torch.manual_seed(0)
    apply_init(layer, name, bias=0.01)
    expected = EXPECTED_STD[name](fan_in(layer.weight))
    band = 0.05 * expected
    assert abs(layer.weight.std().item() - expected) <= band
    assert abs(layer.weight.mean().item()) <= band
    assert torch.all(layer.bias == 0.01)


def test_explicit_std_for_small_and_normal_and_refused_elsewhere():
    torch.manual_seed(0)
    layer = apply_init(nn.Linear(500, 400), "normal", std=0.5)
    assert layer.weight.std().item() == pytest.approx(0.5, rel=0.02)
    assert apply_init(nn.Linear(500, 400), "small", std=0.03).weight.std().item() == pytest.approx(0.03, rel=0.02)
    with pytest.raises(ConfigError, match="only 'small' and 'normal'"):
        apply_init(nn.Linear(3, 3), "he", std=0.1)
    with pytest.raises(ConfigError, match="positive"):
        apply_init(nn.Linear(3, 3), "normal", std=0.0)


def test_zero_init_never_breaks_symmetry(digits):
    # Every hidden unit computes the same output and gets the same gradient, so
    # after training all rows of each hidden weight matrix are still identical.
    net = bs.blocks.mlp(digits.input_shape, 10, hidden=(16, 16), activation="tanh", init="zeros", bias=0.1)
    bs.fit(net, digits, bs.Recipe(optimizer="sgd", lr=0.1, epochs=2, device="cpu"), progress=False)
    for layer in [m for m in net if isinstance(m, nn.Linear)][:-1]:
        assert torch.allclose(layer.weight, layer.weight[0:1].expand_as(layer.weight))
    head = [m for m in net if isinstance(m, nn.Linear)][-1]
    assert torch.allclose(head.weight, head.weight[:, 0:1].expand_as(head.weight))  # all hidden units alike


def _layer_stds(init: str, activation: str, std: float | None = None) -> list[float]:
    """The lecture's demo, scaled down: 10 layers x 256 units, unit-gaussian input; activation std per layer."""
    torch.manual_seed(0)
    layers = []
    for _ in range(10):
        layers += [nn.Linear(256, 256), bs.blocks.make_activation(activation)]
    net = apply_init(nn.Sequential(*layers), init, bias=0.0, std=std)
    h, stds = torch.randn(1000, 256), []
    with torch.no_grad():
        for i in range(0, len(net), 2):
            h = net[i + 1](net[i](h))
            stds.append(h.std().item())
    return stds


def test_small_init_makes_deep_tanh_activations_vanish():
    stds = _layer_stds("small", "tanh")
    assert stds[0] < 0.2 and stds[-1] < 1e-6  # each layer multiplies the std by ~0.01*sqrt(256) = 0.16
    assert all(b < a for a, b in zip(stds, stds[1:]))


def test_unit_std_init_saturates_tanh():
    torch.manual_seed(0)
    net = apply_init(nn.Sequential(nn.Linear(256, 256), nn.Tanh()), "normal", std=1.0)
    h = net(torch.randn(1000, 256))
    assert (h.abs() > 0.99).float().mean() > 0.8  # activations pile up at +-1, gradients ~0


def test_xavier_keeps_tanh_activations_alive_but_collapses_with_relu_where_he_does_not():
    tanh = _layer_stds("xavier", "tanh")
    assert 0.2 < tanh[-1] < 0.8
    relu_xavier, relu_he = _layer_stds("xavier", "relu"), _layer_stds("he", "relu")
    # Each ReLU layer halves the variance under xavier: std ~ (1/sqrt 2)^10 ~ 0.03 after ten layers...
    assert relu_xavier[-1] < 0.1 * relu_xavier[0]
    # ... while he's factor 2 compensates: the std stays within a factor 2 of the first layer's.
    assert 0.5 < relu_he[-1] / relu_he[0] < 2.0
