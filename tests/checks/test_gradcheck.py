"""The numerical gradient check, against the CS231n relative-error bands and torch.autograd.gradcheck."""

import pytest
import torch
from torch import nn

import babysit as bs
from babysit.checks.base import CheckSettings
from babysit.checks.gradcheck import gradcheck, gradcheck_module, relative_error, user_modules

from .conftest import make_ctx


class Cube(torch.autograd.Function):
    """x**3 with a hand-written backward; `factor` 3 is right, anything else is a bug."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.save_for_backward(x)
        ctx.factor = factor
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.factor * x ** 2, None


class CubeLayer(nn.Module):
    def __init__(self, width, factor=3.0):
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, width))
        self.factor = factor

    def forward(self, x):
        return Cube.apply(x * self.scale, self.factor)


def test_relative_error_is_the_cs231n_formula():
    a, n = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([1.1, 0.0, -2.0])
    assert torch.allclose(relative_error(a, n), torch.tensor([0.1 / 1.1, 0.0, 2.0]))


def test_a_correct_backward_has_tiny_relative_error_and_agrees_with_torch():
    layer = CubeLayer(5)
    x = torch.randn(4, 5, dtype=torch.float64)
    result = gradcheck_module(layer, (x,))
    assert result["max_error"] < 1e-7 and set(result["errors"]) == {"input0", "scale"}
    assert torch.autograd.gradcheck(lambda t: layer.double()(t), (x.clone().requires_grad_(),))


def test_a_wrong_backward_is_caught_and_torch_agrees():
    layer = CubeLayer(5, factor=2.0)
    x = torch.randn(4, 5, dtype=torch.float64)
    result = gradcheck_module(layer, (x,))
    assert result["max_error"] > 1e-2  # 2x^2 vs 3x^2: relative error 1/3
    assert result["max_error"] == pytest.approx(1 / 3, rel=1e-4)
    with pytest.raises(RuntimeError):
        torch.autograd.gradcheck(lambda t: layer.double()(t), (x.clone().requires_grad_(),))


def net_with(layer):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), layer, nn.Linear(8, 10))


def test_the_check_finds_user_modules_and_flags_the_broken_one(digits):
    assert list(user_modules(net_with(CubeLayer(8)))) == ["2"]
    settings = CheckSettings(gradcheck=True)
    good = gradcheck(make_ctx(net_with(CubeLayer(8)), digits, settings=settings))
    assert good.status == "pass" and good.evidence["modules"]["2"]["max_error"] < 1e-7
    bad = gradcheck(make_ctx(net_with(CubeLayer(8, factor=2.0)), digits, settings=settings))
    assert bad.status == "fail" and bad.findings[0].rule == "gradcheck_failed" and "CubeLayer" in bad.findings[0].fix


def test_the_check_is_opt_in_and_skips_torch_only_models(digits):
    assert gradcheck(make_ctx(net_with(CubeLayer(8)), digits)).status == "skip"
    bs.train.seed_everything(0)
    plain = bs.blocks.mlp(digits.input_shape, 10, hidden=(8,))
    assert gradcheck(make_ctx(plain, digits, settings=CheckSettings(gradcheck=True))).status == "skip"
