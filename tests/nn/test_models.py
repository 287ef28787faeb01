import math

import pytest
import torch
from torch import nn

import babysit as bs
from babysit.errors import ConfigError
from babysit.nn.activations import ACTIVATIONS
from babysit.nn.init import INITS, apply_init, fan_in


@pytest.mark.parametrize("shape", [(1, 40), (1, 8, 8), (3, 32, 32)])
def test_convnet_handles_1d_and_2d_inputs(shape):
    net = bs.convnet(shape, 10)
    assert net(torch.randn(4, *shape)).shape == (4, 10)


def test_mlp_flattens_any_input():
    assert bs.mlp((1, 8, 8), 10, hidden=(32,))(torch.randn(5, 1, 8, 8)).shape == (5, 10)


def test_batchnorm_sits_after_the_affine_layer_before_the_activation_and_drops_its_bias():
    net = bs.mlp((20,), 3, hidden=(16,), batchnorm=True, dropout=0.5)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear]
    assert net[1].bias is None  # BN's beta makes the preceding bias redundant


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_builds_into_a_model(name):
    net = bs.mlp((10,), 2, hidden=(8,), activation=name)
    assert isinstance(net[2], type(ACTIVATIONS.get(name)()))


# The lectures' formulas: xavier std = 1/sqrt(fan_in), he std = 1/sqrt(fan_in/2).
EXPECTED_STD = {"xavier": lambda n: 1 / math.sqrt(n), "he": lambda n: 1 / math.sqrt(n / 2)}


@pytest.mark.parametrize("name", INITS.names())
@pytest.mark.parametrize("layer", [nn.Linear(400, 300), nn.Conv2d(16, 64, 5)])
def test_every_init_matches_its_formula(name, layer):
    torch.manual_seed(0)
    apply_init(layer, name, bias=0.01)
    expected = EXPECTED_STD[name](fan_in(layer.weight))
    assert abs(layer.weight.std().item() - expected) < 0.05 * expected
    assert abs(layer.weight.mean().item()) < 0.05 * expected
    assert torch.all(layer.bias == 0.01)


def test_unknown_names_are_config_errors_with_suggestions():
    with pytest.raises(ConfigError, match="did you mean 'relu'"):
        bs.mlp((4,), 2, activation="rellu")
    with pytest.raises(ConfigError, match="did you mean 'xavier'"):
        bs.mlp((4,), 2, init="xavir")
    with pytest.raises(ConfigError, match="no option"):
        bs.build_model("mlp", (4,), 2, channels=(3,))
    with pytest.raises(ConfigError, match="flat features"):
        bs.convnet((10,), 2)
