"""Batch norm against docs/lectures.md §4: the training formula, and the running averages used at test time."""

import pytest
import torch
from torch import nn

import babysit as bs


def _batch_stats(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, biased variance (used to normalise) and unbiased variance (what torch's running average stores)."""
    n = x.numel() // x.shape[1]
    mean = x.mean(dims)
    var = x.var(dims, unbiased=False)
    return mean, var, var * n / (n - 1)


@pytest.mark.parametrize(
    "layer, shape, dims",
    [
        (nn.BatchNorm1d(5), (32, 5), (0,)),  # FC: per feature
        (nn.BatchNorm1d(4), (16, 4, 9), (0, 2)),  # conv1d: per channel over N, L
        (nn.BatchNorm2d(3), (8, 3, 6, 6), (0, 2, 3)),  # conv2d: per channel over N, H, W
    ],
    ids=["1d-features", "1d-channels", "2d-channels"],
)
def test_running_averages_are_exponentially_weighted_batch_statistics(layer, shape, dims):
    torch.manual_seed(0)
    layer = layer.double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 2.0)
        layer.bias.uniform_(-1.0, 1.0)
    # torch's `momentum` m is 1 - beta of the lectures' exponentially weighted average.
    beta = 1.0 - layer.momentum
    run_mean = torch.zeros(shape[1], dtype=torch.float64)
    run_var = torch.ones(shape[1], dtype=torch.float64)
    layer.train()
    for step in range(6):
        x = torch.randn(shape, dtype=torch.float64) * (1 + step) + 3 * step
        y = layer(x)
        mean, var, unbiased = _batch_stats(x, dims)
        # Training: x_hat = (x - mu_B) / sqrt(var_B + eps); y = gamma x_hat + beta, with the batch's statistics.
        view = [1, -1] + [1] * (x.ndim - 2)
        x_hat = (x - mean.view(view)) / torch.sqrt(var.view(view) + layer.eps)
        assert torch.allclose(y, layer.weight.view(view) * x_hat + layer.bias.view(view), atol=1e-10)
        run_mean = beta * run_mean + (1 - beta) * mean
        run_var = beta * run_var + (1 - beta) * unbiased
    assert torch.allclose(layer.running_mean, run_mean, atol=1e-12)
    assert torch.allclose(layer.running_var, run_var, atol=1e-12)
    # Test time: no batch statistics, the running averages instead.
    layer.eval()
    x = torch.randn(shape, dtype=torch.float64)
    view = [1, -1] + [1] * (x.ndim - 2)
    expected = layer.weight.view(view) * (x - run_mean.view(view)) / torch.sqrt(run_var.view(view) + layer.eps) + layer.bias.view(view)
    assert torch.allclose(layer(x), expected, atol=1e-10)
    assert torch.allclose(layer(x[:1]), expected[:1], atol=1e-10)  # one sample at a time gives the same answer


def test_gamma_sqrt_var_and_beta_mean_recover_the_identity():
    torch.manual_seed(0)
    x = torch.randn(64, 4, dtype=torch.float64) * 3 + 1
    layer = nn.BatchNorm1d(4).double()
    mean, var, _ = _batch_stats(x, (0,))
    with torch.no_grad():
        layer.weight.copy_((var + layer.eps).sqrt())
        layer.bias.copy_(mean)
    assert torch.allclose(layer(x), x, atol=1e-10)


def test_batchnorm_lets_a_deep_net_with_small_init_train(digits):
    # Batch norm makes training far less sensitive to initialisation (docs/lectures.md §4).
    results = {}
    for bn in (False, True):
        bs.train.seed_everything(0)
        net = bs.blocks.mlp(digits.input_shape, 10, hidden=(64,) * 6, init="small", batchnorm=bn)
        results[bn] = bs.fit(net, digits, bs.Recipe(optimizer="sgd", lr=0.1, epochs=3, device="cpu"), progress=False).test_accuracy
    assert results[False] < 0.3 and results[True] > 0.75
