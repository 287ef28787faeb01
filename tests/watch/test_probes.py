"""`bs.watch`: the lecture's activation and update statistics, measured through hooks."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import babysit as bs
from babysit.errors import ConfigError


def tanh_net(depth=10, width=500, weight_std=None):
    """The lecture's demo net: `depth` x (Linear(width, width), tanh); Xavier when weight_std is None."""
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    net = nn.Sequential(*layers)
    if weight_std is None:
        bs.blocks.apply_init(net, "xavier")
    else:
        for m in net:
            if isinstance(m, nn.Linear):
                with torch.no_grad():
                    m.weight.normal_(0.0, weight_std)
                    m.bias.zero_()
    return net


def tanh_stds(record):
    return [v["act_std"] for v in record["layers"].values() if v["type"] == "Tanh"]


def no_hooks_left(model, optimizer=None):
    modules_clean = all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in model.modules())
    if optimizer is None:
        return modules_clean
    return modules_clean and not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks


X_UNIT = torch.randn(1000, 500, generator=torch.Generator().manual_seed(1))


def test_small_init_activations_vanish_layer_by_layer():
    net = tanh_net(weight_std=0.01)
    with bs.watch(net) as w:
        net(X_UNIT)
    stds = tanh_stds(w.records[0])
    assert len(stds) == 10
    assert all(b < a for a, b in zip(stds, stds[1:]))  # shrinks at every layer
    assert stds[-1] < 1e-3
    # Each tanh layer multiplies the std by about sqrt(500) * 0.01 = 0.22 (tanh ~ identity near 0).
    assert stds[5] / stds[4] == pytest.approx(math.sqrt(500) * 0.01, rel=0.1)


def test_xavier_keeps_activations_alive_and_std1_saturates():
    net = tanh_net()
    with bs.watch(net) as w:
        out = net(X_UNIT)
    stds = tanh_stds(w.records[0])
    assert all(0.2 <= s <= 1.0 for s in stds), stds
    assert stds[-1] == pytest.approx(out.std(unbiased=False).item(), rel=1e-4)  # the reference: torch on the output
    assert all(v["saturated_fraction"] < 0.05 for v in w.records[0]["layers"].values() if v["type"] == "Tanh")

    big = tanh_net(weight_std=1.0)
    with bs.watch(big) as w:
        out = big(X_UNIT)
    last = w.records[0]["layers"]["19"]
    assert last["saturated_fraction"] == pytest.approx((out.abs() > 0.99).float().mean().item(), abs=1e-6)
    assert last["saturated_fraction"] > 0.8  # activations pile up at +-1
    counts = last["hist_counts"]
    assert counts[0] + counts[-1] > 0.8 * sum(counts) and last["hist_edges"][0] == -1.0 and last["hist_edges"][-1] == 1.0


def test_relu_units_die_with_a_large_negative_bias():
    torch.manual_seed(0)
    net = bs.blocks.apply_init(nn.Sequential(nn.Linear(50, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU()), "he", bias=-10.0)
    x = torch.randn(256, 50)
    with bs.watch(net) as w:
        net(x)
    first = w.records[0]["layers"]["1"]
    reference = 1.0 - (net[1](net[0](x)) > 0).any(0).float().mean().item()
    assert first["dead_fraction"] == pytest.approx(reference, abs=1e-9)
    assert first["dead_fraction"] > 0.9
    healthy = bs.blocks.apply_init(nn.Sequential(nn.Linear(50, 200), nn.ReLU()), "he", bias=0.0)
    with bs.watch(healthy) as w:
        healthy(x)
    assert w.records[0]["layers"]["1"]["dead_fraction"] < 0.1


def test_dead_units_of_a_convnet_are_channels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 8, 3), nn.ReLU())
    with torch.no_grad():
        net[0].bias[:6] = -100.0  # six of eight filters never fire
    with bs.watch(net) as w:
        net(torch.randn(16, 1, 20))
    assert w.records[0]["layers"]["1"]["dead_fraction"] == pytest.approx(6 / 8)


def test_update_ratio_of_one_sgd_step_is_lr_grad_over_weight():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    lr = 0.05
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
    w0 = net[0].weight.detach().clone()
    with bs.watch(net, opt, preset="full") as w:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        g = net[0].weight.grad.detach().clone()
        opt.step()
    stats = w.records[0]["params"]["0.weight"]
    assert stats["grad_norm"] == pytest.approx(g.norm().item(), rel=1e-6)
    assert stats["weight_norm"] == pytest.approx(w0.norm().item(), rel=1e-6)
    assert stats["update_ratio"] == pytest.approx(lr * g.norm().item() / w0.norm().item(), rel=1e-5)
    assert set(w.records[0]["params"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_a_sparse_embedding_gradient_is_measured_like_a_dense_one():
    torch.manual_seed(0)
    net = nn.Sequential(nn.EmbeddingBag(50, 8, mode="mean", sparse=True), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    w0 = net[0].weight.detach().clone()
    with bs.watch(net, opt, preset="full") as w:
        opt.zero_grad()
        F.cross_entropy(net(torch.randint(0, 50, (16, 4))), torch.randint(0, 3, (16,))).backward()
        g = net[0].weight.grad.to_dense()
        opt.step()
    stats = w.records[0]["params"]["0.weight"]
    assert stats["grad_norm"] == pytest.approx(g.norm().item(), rel=1e-6)
    assert stats["update_ratio"] == pytest.approx(0.1 * g.norm().item() / w0.norm().item(), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_norms_and_update_ratio_hold_in_every_dtype(dtype):
    torch.manual_seed(0)
    net = nn.Linear(12, 4).to(dtype)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    w0 = net.weight.detach().clone()
    with bs.watch(net, opt, preset="full") as w:
        net(torch.randn(8, 12, dtype=dtype)).pow(2).mean().backward()
        g = net.weight.grad.detach().clone()
        opt.step()
    stats = w.records[0]["params"]["weight"]
    rel = 1e-2 if dtype == torch.bfloat16 else 1e-5
    assert stats["grad_norm"] == pytest.approx(g.double().norm().item(), rel=rel)
    assert stats["update_ratio"] == pytest.approx(((net.weight.detach() - w0).double().norm() / w0.double().norm()).item(), rel=rel)


@pytest.mark.filterwarnings("error")  # an overflow the record shows needs no numpy warning besides
def test_a_gradient_whose_squares_overflow_float32_gets_a_finite_norm():
    net = nn.Linear(6, 4)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with bs.watch(net, opt, preset="full") as w:
        out = net(torch.full((8, 6), 1e19))  # outputs near 1e19: their squares overflow float32 too
        out.sum().backward()  # each weight gradient is 8e19
        g = net.weight.grad.detach().double()
        opt.step()
    assert w.records[0]["params"]["weight"]["grad_norm"] == pytest.approx(g.norm().item(), rel=1e-6)
    layer = w.records[0]["layers"]["Linear"]
    assert layer["act_mean"] == pytest.approx(out.double().mean().item(), rel=1e-5)
    assert layer["act_std"] == pytest.approx(out.double().std(unbiased=False).item(), rel=1e-5)


class _Rebinding(torch.optim.Optimizer):
    """Plain SGD that gives each weight new storage (p.data = ...), as some hand-written optimisers do."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.data = p.data - group["lr"] * p.grad


def test_update_ratio_follows_a_weight_given_new_storage_by_the_optimiser():
    torch.manual_seed(0)
    net = nn.Linear(10, 3)
    opt = _Rebinding(net.parameters(), lr=0.5)
    w0 = net.weight.detach().clone()
    with bs.watch(net, opt, preset="full") as w:
        net(torch.randn(8, 10)).pow(2).mean().backward()
        opt.step()
    expected = (net.weight.detach() - w0).norm() / w0.norm()
    assert expected > 0 and w.records[0]["params"]["weight"]["update_ratio"] == pytest.approx(expected.item(), rel=1e-5)


def test_update_ratio_matches_the_weight_change_for_adam():
    torch.manual_seed(0)
    net = nn.Linear(10, 3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    with bs.watch(net, opt, preset="full") as w:
        for _ in range(3):
            before = net.weight.detach().clone()
            opt.zero_grad()
            net(torch.randn(8, 10)).pow(2).mean().backward()
            opt.step()
            expected = (net.weight.detach() - before).norm() / before.norm()
            assert w.last["params"]["weight"]["update_ratio"] == pytest.approx(expected.item(), rel=1e-5)
    assert [r["step"] for r in w.records] == [1, 2, 3]


def _loop(net, opt, steps, fail_at=None):
    for step in range(1, steps + 1):
        opt.zero_grad()
        F.cross_entropy(net(torch.randn(16, 4)), torch.randint(0, 3, (16,))).backward()
        opt.step()
        if step == fail_at:
            raise RuntimeError("the loop broke")


def test_hand_written_loop_leaves_no_hooks_behind_even_when_it_raises():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with bs.watch(net, opt, every=2) as w:
        _loop(net, opt, 6)
        assert not no_hooks_left(net, opt)  # while watching, the step hooks are there
    assert [r["step"] for r in w.records] == [2, 4, 6]
    assert no_hooks_left(net, opt)

    with pytest.raises(RuntimeError, match="the loop broke"):
        with bs.watch(net, opt, preset="full"):
            _loop(net, opt, 5, fail_at=3)
    assert no_hooks_left(net, opt)


def test_unprobed_steps_carry_no_forward_hooks_and_off_records_nothing():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(sum(len(m._forward_hooks) for m in net.modules()))
            return x

    probe_net = nn.Sequential(Spy(), net)
    with bs.watch(probe_net, opt, every=3) as w:
        for _ in range(6):
            opt.zero_grad()
            F.cross_entropy(probe_net(torch.randn(16, 4)), torch.randint(0, 3, (16,))).backward()
            opt.step()
    assert seen == [0, 0, 3, 0, 0, 3]  # hooks on the 3 probed layers only during steps 3 and 6
    with bs.watch(net, opt, preset="off") as w:
        _loop(net, opt, 4)
    assert w.records == [] and w.step == 4


def test_only_training_mode_passes_are_measured():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with bs.watch(net) as w:
        net.eval()
        net(torch.randn(8, 4) + 100.0)  # an evaluation pass: skipped
        net.train()
        net(torch.randn(8, 4))
    assert abs(w.records[0]["layers"]["0"]["act_mean"]) < 5


def test_watch_in_fit_records_steps_epochs_and_cleans_up(digits):
    bs.train.seed_everything(0)
    model = bs.blocks.mlp(digits.input_shape, digits.num_classes, hidden=(32,), activation="tanh")
    recipe = bs.Recipe(optimizer="sgd", lr=0.1, epochs=2, batch_size=500, device="cpu")
    with bs.watch(every=1) as w:
        result = bs.fit(model, digits, recipe, callbacks=[w], progress=False)
    steps = math.ceil(len(digits.train) / 500)
    assert [r["step"] for r in w.records] == list(range(1, 2 * steps + 1))
    assert [r["epoch"] for r in w.records] == [1] * steps + [2] * steps
    assert set(w.records[0]["layers"]) == {"1", "2", "3"}  # Linear, Tanh, Linear head
    assert result.status == "completed" and no_hooks_left(model)


def test_non_finite_activations_are_recorded_not_fatal():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    x = torch.randn(4, 3)
    x[0, 0] = math.nan
    with bs.watch(net) as w:
        net(x)
    assert math.isnan(w.records[0]["layers"]["0"]["act_mean"])


def test_frozen_parameters_have_no_update_statistics():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    net[0].requires_grad_(False)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    with bs.watch(net, opt, preset="full") as w:
        opt.zero_grad()
        net(torch.randn(5, 4)).sum().backward()
        opt.step()
    assert set(w.records[0]["params"]) == {"1.weight", "1.bias"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"preset": "ful"}, "did you mean 'full'"),
        ({"preset": "full", "every": 3}, "not both"),
        ({"every": 0}, "step count >= 1"),
        ({"every": "often"}, "step count >= 1"),
        ({"bins": 0}, "bins"),
    ],
)
def test_bad_watch_arguments_are_one_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        bs.watch(nn.Linear(2, 2), **kwargs)


def test_repr_names_the_schedule_and_the_model():
    w = bs.watch(nn.Linear(2, 2), preset="light")
    assert "Periodic(period=50, warmup=64)" in repr(w) and "Linear" in repr(w)


def test_an_in_place_activation_after_a_layer_leaves_the_layer_its_own_statistics():
    # ReLU(inplace=True) overwrites the Linear output the hook saw; the record keeps what the Linear produced.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 50), nn.ReLU(inplace=True), nn.Linear(50, 3))
    seen = []
    net[0].register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with bs.watch(net, opt, preset="full") as w:
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(net(torch.randn(40, 6)), torch.randint(0, 3, (40,))).backward()
            opt.step()
    for record, before in zip(w.records, seen):
        linear = record["layers"]["0"]
        assert linear["act_mean"] == pytest.approx(before.mean().item(), abs=1e-6)
        assert linear["act_std"] == pytest.approx(before.std(unbiased=False).item(), rel=1e-5)
        assert linear["hist_edges"][0] == pytest.approx(before.min().item())
        assert linear["hist_edges"][0] < 0  # the negatives that ReLU then zeroed
        assert sum(linear["hist_counts"]) == before.numel()


class _Swish(nn.Module):
    """An activation module of some other library: recognised by where its class lives, not by its name."""

    def forward(self, x):
        return x * torch.sigmoid(x)


_Swish.__module__ = "somelib.layers.activations"


def test_activation_modules_of_any_library_are_probed_and_marked_as_activations():
    transformers = pytest.importorskip("transformers", reason="transformers is an optional extra: pip install 'babysit[hf]'")
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=3, hidden_act="gelu")  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)  # built from the config: no download
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with bs.watch(model, opt, preset="full") as w:
        model(input_ids=torch.randint(0, 50, (4, 8)), labels=torch.randint(0, 3, (4,))).loss.backward()
        opt.step()
    layers = w.records[0]["layers"]
    marked = {name: s["type"] for name, s in layers.items() if s.get("activation")}
    # Hugging Face's GELU of each block's feed-forward (a transformers class, not torch's nn.GELU) and the pooler's Tanh.
    assert marked == {"bert.encoder.layer.0.intermediate.intermediate_act_fn": "GELUActivation",
                      "bert.encoder.layer.1.intermediate.intermediate_act_fn": "GELUActivation", "bert.pooler.activation": "Tanh"}  # fmt: skip
    gelu = layers["bert.encoder.layer.0.intermediate.intermediate_act_fn"]
    assert gelu["act_std"] > 0 and sum(gelu["hist_counts"]) > 0
    # GELU keeps the positive inputs and squashes the negative ones towards 0: its output's mean is above its input's.
    assert gelu["act_mean"] > layers["bert.encoder.layer.0.intermediate.dense"]["act_mean"]
    assert not any(layers[n].get("activation") for n in layers if n.endswith(("dense", "query", "LayerNorm")))

    net = nn.Sequential(nn.Linear(4, 8), _Swish(), nn.Linear(8, 3), nn.Softmax(dim=1))
    with bs.watch(net, preset="full") as w:
        net(torch.randn(5, 4))
    assert {n: (s["type"], s.get("activation", False)) for n, s in w.records[0]["layers"].items()} == {
        "0": ("Linear", False), "1": ("_Swish", True), "2": ("Linear", False)}  # softmax normalises the scores: not an activation
