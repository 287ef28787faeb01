"""Transfer learning (docs/lectures.md §10): heads, freezing, lower body learning rates, and the end-to-end example."""

import runpy
from pathlib import Path

import pytest
import torch
from torch import nn

import babysit as bs
from babysit.errors import ConfigError
from babysit.transfer import FrozenBatchNorm, head_name

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "transfer_mnist1d.py"


def test_replace_head_swaps_the_last_linear_and_keeps_the_body():
    bs.train.seed_everything(0)
    net = bs.blocks.mlp((6,), 10, hidden=(8, 8))
    new = bs.blocks.replace_head(net, 3)
    assert head_name(net) == "5" and new[5].out_features == 3 and new[5].in_features == 8
    assert net[5].out_features == 10  # the original is untouched
    assert torch.equal(new[1].weight, net[1].weight) and new[1].weight is not net[1].weight
    assert new[5].bias.abs().sum() == 0
    with pytest.raises(ConfigError, match="no nn.Linear"):
        bs.blocks.replace_head(nn.Sequential(nn.ReLU()), 2)


def test_frozen_batch_norm_computes_the_eval_mode_output_in_training_too():
    bn = nn.BatchNorm1d(4)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(16, 4, 5)
    frozen = FrozenBatchNorm(bn).train()
    assert torch.allclose(frozen(x), bn.eval()(x), atol=1e-6)
    assert not list(frozen.parameters())


def test_freezing_trains_only_the_head(mnist1d):
    bs.train.seed_everything(0)
    net = bs.blocks.convnet(mnist1d.input_shape, 10, channels=(8, 8), batchnorm=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    head = head_name(net)
    bs.fit(net, mnist1d, bs.Recipe(lr=1e-2, epochs=1, body_lr_factor=0.0, device="cpu"), progress=False)
    assert any(isinstance(m, FrozenBatchNorm) for m in net.modules())
    after = net.state_dict()
    for key, value in before.items():
        if key.endswith("num_batches_tracked"):
            continue
        changed = not torch.equal(value, after[key])
        assert changed == key.startswith(head + "."), key  # body weights and statistics stay put


def test_fine_tuning_puts_the_body_in_a_group_with_a_lower_learning_rate():
    net = bs.blocks.mlp((6,), 3, hidden=(8,))
    groups = bs.blocks.param_groups(net, 1e-2, 0.1)
    assert [g["lr"] for g in groups] == [1e-2, pytest.approx(1e-3)]
    assert groups[0]["params"] == list(net[3].parameters())
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(net.parameters()))
    with pytest.raises(ConfigError, match="body_lr_factor"):
        bs.Recipe(body_lr_factor=2.0)
    with pytest.raises(ConfigError, match="one learning rate"):
        bs.Recipe(optimizer="lbfgs", body_lr_factor=0.1)


def test_fine_tuning_moves_the_body_less_than_the_head(mnist1d):
    moved = {}
    for factor in (1.0, 0.1):
        bs.train.seed_everything(0)
        net = bs.blocks.mlp(mnist1d.input_shape, 10, hidden=(32,))
        start = net[1].weight.clone()
        bs.fit(net, mnist1d, bs.Recipe(optimizer="sgd", lr=0.05, epochs=1, body_lr_factor=factor, device="cpu"), progress=False)
        moved[factor] = (net[1].weight - start).norm().item()
    # SGD steps scale with the lr: about 10x smaller for the body (the path differs, so a band).
    assert 0.05 < moved[0.1] / moved[1.0] < 0.2


def test_transfer_end_to_end_beats_training_from_scratch(capsys):
    results = runpy.run_path(str(EXAMPLE))["main"](seed=0)
    scratch = results["from scratch"]
    # Measured (seeds 0, 1): freeze 0.67, fine-tune 0.73-0.78, scratch 0.59-0.60.
    assert results["freeze all but the head"] > scratch + 0.03
    assert results["fine-tune all, body lr x0.1"] > scratch + 0.06
    assert "from scratch" in capsys.readouterr().out
