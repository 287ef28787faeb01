"""Dropout (both forms), L1 and max-norm against docs/lectures.md §9."""

import pytest
import torch
from torch import nn

import babysit as bs
from babysit.errors import ConfigError
from babysit.nn.regularize import DROPOUTS, l1_penalty, max_norm_, with_l1

SHAPES = {0: (4000, 6), 1: (4000, 3, 5), 2: (4000, 3, 2, 2)}


@pytest.mark.parametrize("kind", DROPOUTS.names())
@pytest.mark.parametrize("spatial", [0, 1, 2])
@pytest.mark.parametrize("keep", [0.5, 0.8])
def test_expected_training_activation_equals_the_test_time_activation(kind, spatial, keep):
    torch.manual_seed(0)
    layer = DROPOUTS.get(kind)(keep, spatial=spatial)
    h = torch.rand(SHAPES[spatial][1:]) + 0.5  # one sample's activations, repeated over 4000 masks
    x = h.expand(SHAPES[spatial]).contiguous()
    layer.train()
    out = layer(x)
    kept = out != 0
    assert kept.float().mean().item() == pytest.approx(keep, abs=0.02)  # keep probability p, not drop
    if spatial:  # whole channels are kept or dropped together
        per_channel = kept.flatten(2)
        assert torch.equal(per_channel.all(2), per_channel.any(2))
    # E[train output] over masks ~ the deterministic test-time output (4000 masks: a few % band).
    layer.eval()
    test = layer(h.unsqueeze(0))[0]
    assert torch.allclose(out.mean(0), test, rtol=0.06)
    scale = 1 / keep if kind == "inverted" else 1.0
    assert torch.allclose(out[kept], (x * scale)[kept])  # kept units: inverted divides by p in training
    assert torch.allclose(test, h * (1.0 if kind == "inverted" else keep))  # vanilla scales by p at test


def test_both_dropout_forms_give_the_same_expected_activation_at_test_time():
    # Train-time means agree with their own test outputs (above); and the two
    # forms differ only by the constant p, which the next layer's weights absorb.
    torch.manual_seed(0)
    h = torch.rand(1, 8)
    inverted, vanilla = DROPOUTS.get("inverted")(0.5).eval(), DROPOUTS.get("vanilla")(0.5).eval()
    assert torch.allclose(vanilla(h), 0.5 * inverted(h))


def test_dropout_keep_probability_is_checked():
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="keep probability"):
            DROPOUTS.get("vanilla")(bad)
    with pytest.raises(ConfigError, match="spatial"):
        DROPOUTS.get("inverted")(0.5, spatial=3)


def test_l1_penalty_is_lambda_times_the_sum_of_absolute_weights_and_its_gradient_is_sign():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    expected = 0.1 * (net[0].weight.abs().sum() + net[2].weight.abs().sum())  # biases are not regularized
    penalty = l1_penalty(net, 0.1)
    assert torch.allclose(penalty, expected)
    penalty.backward()
    assert torch.allclose(net[0].weight.grad, 0.1 * net[0].weight.sign())
    assert net[0].bias.grad is None
    assert l1_penalty(net, 0.0) == 0.0


def test_l1_in_training_drives_weights_to_zero(digits):
    small, mean_abs = {}, {}
    for l1 in (0.0, 1e-2):
        bs.train.seed_everything(0)
        net = bs.blocks.mlp(digits.input_shape, 10, hidden=(32,))
        bs.fit(net, digits, bs.Recipe(optimizer="sgd", lr=0.1, epochs=3, l1=l1, device="cpu"), progress=False)
        w = net[1].weight
        small[l1], mean_abs[l1] = (w.abs() < 1e-2).float().mean().item(), w.abs().mean().item()
    # Sparse weights, L1's signature: measured 19% near zero against 5% without (SGD, 39 steps).
    assert small[1e-2] > 2 * small[0.0] + 0.05
    assert mean_abs[1e-2] < 0.85 * mean_abs[0.0]


def test_max_norm_clips_each_units_incoming_vector_and_leaves_short_ones_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Conv1d(3, 4, 3))
    with torch.no_grad():
        net[0].weight.mul_(10)
        net[0].weight[0] = 0.01  # one short row
    before = net[0].weight.clone()
    max_norm_(net, 2.0)
    norms = net[0].weight.norm(dim=1)
    assert torch.all(norms <= 2.0 + 1e-5)
    assert torch.allclose(norms[1:], torch.full((5,), 2.0), atol=1e-4)  # long rows land on the sphere
    assert torch.equal(net[0].weight[0], before[0])
    # Directions are kept: each row is a positive multiple of the old one.
    cos = nn.functional.cosine_similarity(net[0].weight, before, dim=1)
    assert torch.allclose(cos, torch.ones(6))
    assert torch.all(net[2].weight.flatten(1).norm(dim=1) <= 2.0 + 1e-5)  # conv: per output channel


def test_max_norm_holds_after_every_step_of_training(digits):
    class Check:  # user callbacks run after the recipe's, so they see the projected weights
        worst = 0.0

        def on_batch_end(self, state):
            norms = [m.weight.norm(dim=1).max().item() for m in state.model if isinstance(m, nn.Linear)]
            self.worst = max(self.worst, *norms)

    bs.train.seed_everything(0)
    net = bs.blocks.mlp(digits.input_shape, 10, hidden=(32,), init="normal", init_std=1.0)  # rows start with norm ~8
    check = Check()
    bs.fit(net, digits, bs.Recipe(lr=0.05, epochs=1, max_norm=1.5, device="cpu"), callbacks=[check], progress=False)
    assert 1.4 < check.worst <= 1.5 + 1e-5
    with pytest.raises(ConfigError, match="train.max_norm"):
        bs.Recipe(max_norm=-1.0)


def test_dropconnect_masks_weights_in_training_and_uses_the_full_weights_at_test():
    from babysit.nn.regularize import DropConnect

    torch.manual_seed(0)
    layer = torch.nn.Linear(50, 40)
    dc = DropConnect(layer, drop=0.5)
    x = torch.randn(1, 50)
    dc.eval()
    assert torch.equal(dc(x), layer(x))  # eval: the expectation E[W * M / p] = W
    dc.train()
    a, b = dc(x), dc(x)
    assert not torch.allclose(a, b)  # a fresh mask per forward pass
    # Mean over many masks approaches the full-weight output (inverted scaling keeps the expectation).
    mean = torch.stack([dc(x) for _ in range(4000)]).mean(0)
    assert (mean - layer(x)).abs().max() < 0.06
    # A single-weight view: with one input the output is w*m/p + b, m in {0, 1}: either b or b + 2w.
    one = DropConnect(torch.nn.Linear(1, 1), drop=0.5).train()
    w, bias = one.layer.weight.item(), one.layer.bias.item()
    outs = {round(one(torch.ones(1, 1)).item(), 5) for _ in range(50)}
    assert outs == {round(bias, 5), round(bias + 2 * w, 5)}


@pytest.mark.parametrize("shape", [(4, 3, 40), (4, 3, 12, 12)])
def test_fractional_max_pooling_is_random_in_training_and_an_average_at_test(shape):
    from babysit.nn.regularize import FractionalMaxPool

    torch.manual_seed(0)
    pool = FractionalMaxPool(ratio=2**0.5)
    x = torch.randn(*shape)
    pool.train()
    a, b = pool(x), pool(x)
    n = int((shape[-1] - 1) / 2**0.5)
    assert a.shape[-1] == n and not torch.equal(a, b)
    pool.eval()
    e1, e2 = pool(x), pool(x)
    assert torch.equal(e1, e2) and e1.shape == a.shape  # deterministic at test
    if len(shape) == 3:
        # Every training output is the max of a window of 1 or 2 neighbouring inputs.
        windows = torch.maximum(x[..., :-1], x[..., 1:])
        for i in range(n):
            ok = (a[..., i : i + 1] == x).any(-1) | (a[..., i : i + 1] == windows).any(-1)
            assert ok.all()
        assert (a <= x.amax(-1, keepdim=True)).all()


def test_drop_path_drops_whole_samples_in_training_only():
    from babysit.nn.regularize import DropPath

    torch.manual_seed(0)
    dp = DropPath(0.3).train()
    x = torch.ones(10000, 4)
    y = dp(x)
    kept = y[:, 0] > 0
    assert ((y == 0).all(1) | (y == 1 / 0.7).all(1)).all()  # each sample all dropped or all scaled by 1/p
    assert abs(kept.float().mean().item() - 0.7) < 0.02
    assert torch.equal(dp.eval()(x), x)


def test_with_l1_adds_the_penalty_and_leaves_the_loss_alone_without_it():
    net = nn.Linear(3, 2)
    loss = net(torch.ones(4, 3)).pow(2).mean()
    assert with_l1(loss, net, 0.0) is loss  # no extra node in the step's graph
    assert with_l1(loss, net, 0.1).item() == pytest.approx(loss.item() + 0.1 * net.weight.abs().sum().item())
