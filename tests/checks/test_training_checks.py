from dataclasses import replace

import torch
from torch import nn

import babysit as bs
from babysit.checks.training_checks import input_baseline, overfit_tiny
from babysit.data.datasets import Split

from .conftest import make_ctx


def small(digits, **kw):
    bs.train.seed_everything(0)
    return bs.blocks.mlp(digits.input_shape, digits.num_classes, hidden=(64,), **kw)


def shuffled_labels(data):
    y = data.train.y[torch.randperm(len(data.train.y), generator=torch.Generator().manual_seed(1))]
    return replace(data, train=Split(data.train.x, y))


def test_a_healthy_model_overfits_20_samples_to_100_percent_and_near_zero_loss(digits):
    r = overfit_tiny(make_ctx(small(digits), digits, bs.Recipe(lr=1e-2, device="cpu")))
    assert r.status == "pass"
    assert r.evidence["samples"] == 20 and r.evidence["train_accuracy"] == 1.0
    assert r.evidence["final_loss"] <= r.evidence["fitted_loss"] < 0.12 and r.evidence["steps"] < 200


def test_overfitting_runs_without_regularization(digits):
    # Heavy dropout and weight decay in the recipe: the lectures' check turns both off.
    r = overfit_tiny(make_ctx(small(digits, dropout=0.9), digits, bs.Recipe(lr=1e-2, weight_decay=10.0, device="cpu")))
    assert r.status == "pass"


def test_a_model_that_ignores_its_inputs_cannot_overfit(digits):
    class Blind(nn.Module):
        def __init__(self):
            super().__init__()
            self.scores = nn.Parameter(torch.zeros(10))

        def forward(self, x):
            return self.scores.expand(len(x), 10)

    r = overfit_tiny(make_ctx(Blind(), digits, bs.Recipe(lr=1e-1, device="cpu")))
    assert r.status == "fail" and r.findings[0].rule == "overfit_failed"
    assert r.evidence["train_accuracy"] <= 0.3


def test_overfitting_uses_the_rate_the_range_test_proposed(digits):
    ctx = make_ctx(small(digits), digits, bs.Recipe(lr=1e-7, device="cpu"))
    assert overfit_tiny(ctx).status == "fail"  # 1e-7 cannot fit anything
    ctx.lr = 1e-2
    assert overfit_tiny(ctx).status == "pass"


def test_real_inputs_beat_zeroed_inputs(digits):
    ctx = make_ctx(small(digits), digits, bs.Recipe(lr=3e-3, device="cpu"))
    r = input_baseline(ctx)
    assert r.status == "pass"
    assert r.evidence["val_accuracy_real"] > 0.8 and r.evidence["val_accuracy_zeroed"] < 0.2
    assert r.evidence["margin"] == r.evidence["val_accuracy_real"] - r.evidence["val_accuracy_zeroed"]


def test_shuffled_labels_do_no_better_than_zeroed_inputs(digits):
    r = input_baseline(make_ctx(small(digits), shuffled_labels(digits), bs.Recipe(lr=3e-3, device="cpu")))
    assert r.status == "fail" and r.findings[0].rule == "input_independent"
    assert r.evidence["margin"] < r.evidence["needed"]


def test_training_checks_leave_the_users_model_untouched(digits):
    net = small(digits)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ctx = make_ctx(net, digits, bs.Recipe(lr=1e-2, device="cpu"))
    overfit_tiny(ctx)
    input_baseline(ctx)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_brief_training_keeps_a_constant_rate_whatever_the_schedule(digits):
    # A per-epoch step decay over 300 one-step epochs would shrink the rate to nothing.
    ctx = make_ctx(small(digits), digits, bs.Recipe(lr=1e-2, schedule="step", period=1, gamma=0.1, device="cpu"))
    recipe = ctx.short_recipe(300, 20, batch_size=20)
    assert recipe.schedule == "none" and recipe.epochs == 300 and recipe.lr == 1e-2
    assert overfit_tiny(ctx).status == "pass"
