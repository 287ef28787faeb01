from dataclasses import replace

import pytest
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
    reference = max(r.evidence["val_accuracy_zeroed"], r.evidence["majority_share"])
    assert r.evidence["margin"] == r.evidence["val_accuracy_real"] - reference and r.evidence["verdict"] == "pass"


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


def test_eight_binary_validation_samples_are_inconclusive_not_an_error():
    # A learnable two-class problem, but only 8 validation samples: a difference of 25 points has a
    # standard error of about 23 points, so no verdict rests on it.
    from .conftest import tabular

    g = torch.Generator().manual_seed(0)
    x = torch.randn(208, 2, generator=g)
    data = tabular(x[:200], x[200:], x[200:], classes=2)
    y = (x[:, 0] > 0).long()
    data = replace(data, train=Split(x[:200], y[:200]), val=Split(x[200:], y[200:]), test=Split(x[200:], y[200:]))
    # A linear model at a tiny rate: near chance, and 8 samples cannot tell it from the majority class.
    bs.train.seed_everything(0)
    net = nn.Sequential(nn.Linear(2, 2))
    r = input_baseline(make_ctx(net, data, bs.Recipe(lr=1e-4, device="cpu")))
    assert r.evidence["val_samples"] == 8
    assert r.status != "fail" and all(f.severity != "error" for f in r.findings), r.findings
    f = r.findings[0]
    assert f.rule == "input_baseline_inconclusive" and f.severity == "info"
    assert f.evidence["samples_to_settle"] > 8 and f"about {f.evidence['samples_to_settle']} samples" in f.title


def test_significance_verdicts_use_the_two_proportion_standard_error():
    from babysit.diagnose import significance as sig

    se = sig.proportion_se(0.75, 8, 0.5, 8)
    assert se == pytest.approx(((0.75 * 0.25 + 0.25) / 8) ** 0.5)
    assert sig.verdict(0.25, se, 0.05) == "inconclusive"
    assert sig.verdict(0.8, sig.proportion_se(0.9, 1000, 0.1, 1000), 0.09) == "pass"
    assert sig.verdict(0.0, sig.proportion_se(0.1, 1000, 0.1, 1000), 0.09) == "fail"
    n = sig.samples_to_settle(0.25, se, 8, 0.05)
    assert sig.verdict(0.25, se * (8 / n) ** 0.5, 0.05) == "pass" and sig.verdict(0.25, se * (8 / (n - 2)) ** 0.5, 0.05) == "inconclusive"


def test_overfit_tiny_ignores_label_smoothing_which_keeps_the_loss_off_zero():
    # With eps = 0.1 on 10 classes the smoothed target's entropy is 0.50: the loss could never fall near 0.
    data = bs.prepare(bs.load_dataset("digits"))
    model = bs.build_model("mlp", data.input_shape, data.num_classes)
    report = bs.check(model, data, bs.Recipe(optimizer="adam", lr=1e-3, label_smoothing=0.1), only=["overfit_tiny"], progress=False)
    result = report.results[0]
    assert result.status == "pass", result.summary
    assert result.evidence["final_loss"] < result.evidence["fitted_loss"]
