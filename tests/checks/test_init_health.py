"""Initialisation health: the lectures' activation-statistics experiment as a check."""

import pytest
import torch
from torch import nn

import babysit as bs
from babysit.checks.init_health import forward_hooks, init_health, layer_stats

from .conftest import make_ctx


def deep_tanh(init="xavier", depth=10, width=100, **kw):
    bs.train.seed_everything(0)
    return bs.blocks.mlp((64,), 10, hidden=(width,) * depth, activation="tanh", init=init, **kw)


def unit_gaussian_data(n=256, d=64):
    from .conftest import tabular

    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
    return tabular(x, x[:64], x[:64], classes=10)


def test_layer_stats_match_a_direct_computation():
    bs.train.seed_everything(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), nn.Tanh(), nn.Linear(4, 2), nn.Sigmoid())
    x = torch.randn(50, 8)
    stats = layer_stats(net, x)
    h1 = torch.relu(net[0](x))
    h2 = torch.tanh(net[2](h1))
    h3 = torch.sigmoid(net[4](h2))
    assert list(stats) == ["0", "1", "2", "3", "4", "5"]
    assert stats["1"]["type"] == "ReLU" and stats["1"]["act_std"] == pytest.approx(h1.std(unbiased=False).item(), rel=1e-5)
    assert stats["1"]["dead_fraction"] == pytest.approx(((h1 > 0).sum(0) == 0).float().mean().item())
    assert stats["3"]["saturated_fraction"] == pytest.approx((h2.abs() > 0.99).float().mean().item())
    assert stats["5"]["saturated_fraction"] == pytest.approx(((h3 < 0.01) | (h3 > 0.99)).float().mean().item())
    assert sum(stats["1"]["hist_counts"]) == h1.numel() and len(stats["1"]["hist_edges"]) == 21
    assert "0" in stats and "dead_fraction" not in stats["0"]  # a Linear output cannot die


def test_preflight_and_watch_share_one_statistics_implementation():
    # The same layer measured by the preflight check and by bs.watch gives the same numbers.
    bs.train.seed_everything(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(64, 8)
    pre = layer_stats(net, x)
    from babysit.watch import stats as shared
    from babysit.watch.stats import is_activation

    for name, module in net.named_children():
        kind = shared.layer_kind(module)
        h = net[: int(name) + 1](x)
        values = shared.read_back(shared.measure(h, kind, 20))
        marked = {"activation": True} if is_activation(module) else {}  # the ReLU and the Tanh
        assert pre[name] == {"type": type(module).__name__, **marked, **shared.describe(values, kind, h.numel(), 20)}
    assert [name for name, stats in pre.items() if stats.get("activation")] == ["1", "3"]


def test_hooks_are_removed_even_when_the_forward_pass_fails():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with pytest.raises(RuntimeError):
        with forward_hooks(dict(net.named_children()), lambda *a: None):
            net(torch.randn(2, 5))  # wrong width
    assert all(not m._forward_hooks for m in net.modules())
    layer_stats(net, torch.randn(2, 3))
    assert all(not m._forward_hooks for m in net.modules())


def test_small_init_in_a_deep_tanh_net_vanishes():
    # docs/lectures.md §3: W = 0.01 N(0,1), 10 tanh layers: the std shrinks layer by layer to about 0.
    r = init_health(make_ctx(deep_tanh(init="small"), unit_gaussian_data()))
    assert r.status == "fail" and r.findings[0].rule == "activations_vanish"
    stds = [s["act_std"] for s in r.evidence["layers"].values() if s["type"] == "Tanh"]
    assert stds == sorted(stds, reverse=True) and stds[-1] < 1e-8
    # Each layer multiplies the std by about 0.01 * sqrt(100) = 0.1 (tanh is linear near 0).
    assert stds[5] / stds[4] == pytest.approx(0.1, rel=0.2)


def test_unit_std_init_saturates_tanh():
    r = init_health(make_ctx(deep_tanh(init="normal", init_std=1.0, depth=3), unit_gaussian_data()))
    assert r.findings[0].rule == "saturation_at_init" and r.findings[0].severity == "error"
    assert max(s.get("saturated_fraction", 0) for s in r.evidence["layers"].values()) > 0.5


@pytest.mark.parametrize("activation, init", [("tanh", "xavier"), ("relu", "he"), ("leaky_relu", "he")])
def test_xavier_and_he_init_are_healthy_in_a_deep_net(activation, init):
    bs.train.seed_everything(0)
    net = bs.blocks.mlp((64,), 10, hidden=(100,) * 10, activation=activation, init=init)
    r = init_health(make_ctx(net, unit_gaussian_data()))
    assert r.status == "pass", r.findings


def test_large_negative_relu_bias_kills_the_units():
    bs.train.seed_everything(0)
    net = bs.blocks.mlp((64,), 10, hidden=(100, 100), bias=-5.0)
    r = init_health(make_ctx(net, unit_gaussian_data()))
    assert r.findings[0].rule == "dead_relu_at_init" and r.findings[0].severity == "error"


def test_zero_init_is_reported_as_broken_symmetry_first():
    net = bs.blocks.mlp((64,), 10, hidden=(32, 32), init="zeros")
    r = init_health(make_ctx(net, unit_gaussian_data()))
    assert r.findings[0].rule == "init_symmetry" and r.findings[0].evidence["identical_layers"] == ["1", "3"]


def test_a_zero_output_layer_alone_is_not_a_symmetry_problem():
    bs.train.seed_everything(0)
    net = bs.blocks.mlp((64,), 10, hidden=(32,))
    with torch.no_grad():
        net[-1].weight.zero_()
    assert "init_symmetry" not in [f.rule for f in init_health(make_ctx(net, unit_gaussian_data())).findings]


def test_the_check_leaves_the_users_model_untouched():
    bs.train.seed_everything(0)
    net = bs.blocks.mlp((64,), 10, hidden=(16,), batchnorm=True).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    init_health(make_ctx(net, unit_gaussian_data()))
    assert not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_layer_fed_by_a_dead_layer_is_not_called_symmetric():
    # Layer 1 dead (bias -50): layer 3's outputs are identical across samples, but its weights are random.
    bs.train.seed_everything(0)
    net = bs.blocks.mlp((64,), 10, hidden=(32, 32))
    with torch.no_grad():
        net[1].bias.fill_(-50.0)
    r = init_health(make_ctx(net, unit_gaussian_data()))
    rules = [f.rule for f in r.findings]
    assert "init_symmetry" not in rules and rules[0] == "dead_relu_at_init"


def test_identical_weight_rows_are_symmetric_even_when_nonzero():
    bs.train.seed_everything(0)
    net = bs.blocks.mlp((64,), 10, hidden=(32, 32))
    with torch.no_grad():
        net[3].weight.copy_(net[3].weight[:1].expand_as(net[3].weight))
    f = init_health(make_ctx(net, unit_gaussian_data())).findings[0]
    assert f.rule == "init_symmetry" and f.evidence["why"] == {"3": "identical rows"}


@pytest.mark.parametrize("activation", ["leaky_relu", "elu", "tanh"])
def test_only_activations_that_can_die_are_called_dead(activation):
    # A hugely negative bias: ReLU would be 100% dead; Leaky ReLU / ELU keep a gradient, tanh saturates instead.
    bs.train.seed_everything(0)
    net = bs.blocks.mlp((64,), 10, hidden=(32, 32), activation=activation, bias=-50.0)
    rules = [f.rule for f in init_health(make_ctx(net, unit_gaussian_data())).findings]
    assert "dead_relu_at_init" not in rules


@pytest.mark.parametrize("head", [nn.Softmax(dim=1), nn.Sigmoid(), nn.ReLU()])
def test_an_activation_on_the_class_scores_is_named(head):
    bs.train.seed_everything(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), head)
    f = init_health(make_ctx(net, unit_gaussian_data())).findings[0]
    assert f.rule == "activation_on_scores" and f.severity == "error" and type(head).__name__ in f.title


def test_softmaxed_scores_are_recognised_without_a_softmax_module():
    class Probabilities(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x).softmax(1)  # a functional softmax: no module shows it

    from babysit.checks.init_health import score_checks

    net = Probabilities()
    x = torch.randn(32, 64)
    f = score_checks(nn.Sequential(), net(x), torch.zeros(32, dtype=torch.long), 10)
    assert f[0].rule == "activation_on_scores" and "sums to 1" in f[0].title
    assert score_checks(nn.Sequential(), net.fc(x), torch.zeros(32, dtype=torch.long), 10) == []


def test_scores_of_the_wrong_width_for_the_labels_are_refused_before_any_check():
    from babysit.errors import ConfigError

    bs.train.seed_everything(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))
    with pytest.raises(ConfigError, match=r"returns shape \(2, 3\) for 2 samples, but the data has 10 classes"):
        bs.check(net, unit_gaussian_data(), progress=False)
