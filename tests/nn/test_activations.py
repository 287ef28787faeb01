"""Every activation against its formula in docs/lectures.md §1, values and gradients."""

import pytest
import torch
from torch import nn

import babysit as bs
from babysit.errors import ConfigError
from babysit.nn.activations import ACTIVATIONS, Maxout, make_activation

# The lecture's formulas, written out independently of torch's modules.
FORMULAS = {
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "tanh": lambda x: 2 / (1 + torch.exp(-2 * x)) - 1,  # tanh(x) = 2 sigmoid(2x) - 1
    "relu": lambda x: torch.maximum(torch.zeros_like(x), x),
    "leaky_relu": lambda x: torch.maximum(0.01 * x, x),
    "prelu": lambda x: torch.maximum(0.25 * x, x),  # alpha starts at 0.25 (He 2015)
    "elu": lambda x: torch.where(x > 0, x, 1.0 * (torch.exp(x) - 1)),
    # maxout over pairs of consecutive features: max(w1.x + b1, w2.x + b2) when x holds both affine outputs
    "maxout": lambda x: torch.maximum(x[:, 0::2], x[:, 1::2]),
}


def test_every_registered_activation_has_a_formula_here():
    assert set(FORMULAS) == set(ACTIVATIONS.names())


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_activation_matches_the_lecture_formula_and_its_gradient(name):
    torch.manual_seed(0)
    x = (torch.randn(64, 10, dtype=torch.float64) * 3).requires_grad_()
    act = make_activation(name).double()
    y = act(x)
    expected = FORMULAS[name](x)
    assert torch.allclose(y, expected, atol=1e-12)
    # Gradients through the module equal autograd through the formula.
    (g_module,) = torch.autograd.grad(y.sum(), x)
    (g_formula,) = torch.autograd.grad(FORMULAS[name](x).sum(), x)
    assert torch.allclose(g_module, g_formula, atol=1e-12)


def test_options_reach_their_activation():
    x = torch.linspace(-3, 3, 13)
    assert torch.allclose(make_activation("leaky_relu", slope=0.2)(x), torch.maximum(0.2 * x, x))
    assert torch.allclose(make_activation("elu", alpha=0.5)(x), torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1)))
    three = make_activation("maxout", pieces=3)
    z = torch.randn(4, 6)
    assert torch.equal(three(z), z.reshape(4, 2, 3).amax(2))


def test_sigmoid_saturates_and_kills_gradients_while_relu_does_not():
    x = torch.tensor([-10.0, 10.0], requires_grad=True)
    (g,) = torch.autograd.grad(make_activation("sigmoid")(x).sum(), x)
    assert g.abs().max() < 1e-4  # |x| large: d sigma/dx ~ 0
    (g,) = torch.autograd.grad(make_activation("relu")(x).sum(), x)
    assert g.tolist() == [0.0, 1.0]


def test_prelu_learns_its_slope_by_backprop():
    act = make_activation("prelu")
    x = torch.tensor([-2.0, -1.0, 3.0])
    act(x).sum().backward()
    # d/d alpha of sum(max(alpha x, x)) = sum of the negative inputs
    assert act.weight.grad.item() == pytest.approx(-3.0)


def test_maxout_generalises_relu_and_leaky_relu():
    torch.manual_seed(0)
    x = torch.randn(32, 5)
    w1, b1 = torch.randn(4, 5), torch.randn(4)
    affine = nn.Linear(5, 8)
    with torch.no_grad():
        # Unit j uses outputs 2j and 2j+1: (w1.x + b1, w2.x + b2).
        for w2, b2, reference in ((torch.zeros(4, 5), torch.zeros(4), nn.ReLU()), (0.01 * w1, 0.01 * b1, nn.LeakyReLU(0.01))):
            affine.weight[0::2], affine.bias[0::2] = w1, b1
            affine.weight[1::2], affine.bias[1::2] = w2, b2
            assert torch.allclose(Maxout(2)(affine(x)), reference(x @ w1.T + b1), atol=1e-6)


def test_maxout_on_conv_feature_maps_and_bad_sizes():
    z = torch.randn(2, 6, 5, 5)
    assert torch.equal(Maxout(2)(z), torch.maximum(z[:, 0::2], z[:, 1::2]))
    with pytest.raises(ValueError, match="multiple of 2"):
        Maxout(2)(torch.randn(2, 5))
    with pytest.raises(ConfigError, match="pieces >= 2"):
        make_activation("maxout", pieces=1)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_trains_a_small_net(name, digits):
    # Not just "it runs": each activation reaches well above chance (10%) on digits in 3 epochs.
    bs.train.seed_everything(0)
    net = bs.blocks.mlp(digits.input_shape, 10, hidden=(32,), activation=name, init="xavier" if name in ("tanh", "sigmoid") else "he")
    result = bs.fit(net, digits, bs.Recipe(lr=1e-2, epochs=3, device="cpu"), progress=False)
    assert result.test_accuracy > 0.8
