import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import babysit as bs
from babysit.checks.loss_checks import eval_mode, initial_loss, l2_penalty, regularization

from .conftest import make_ctx


def small(digits, **kw):
    bs.train.seed_everything(0)
    return bs.blocks.mlp(digits.input_shape, digits.num_classes, hidden=(32,), **kw)


def test_zero_scores_give_exactly_ln_c(digits):
    net = small(digits)
    with torch.no_grad():
        net[-1].weight.zero_()
    r = initial_loss(make_ctx(net, digits))
    assert r.status == "pass"
    assert r.evidence["loss"] == pytest.approx(math.log(10), abs=1e-6) and r.evidence["expected"] == pytest.approx(2.302585, abs=1e-6)


def test_initial_loss_matches_cross_entropy_on_the_batch(digits):
    ctx = make_ctx(small(digits), digits)
    x, y = ctx.batch()
    expected = F.cross_entropy(small(digits)(x), y).item()
    assert initial_loss(ctx).evidence["loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("scale, status", [(1.0, "pass"), (2.5, "warn"), (30.0, "fail")])
def test_large_scores_are_explained_by_their_std(digits, scale, status):
    net = small(digits)
    with torch.no_grad():
        net[-1].weight.mul_(scale)
    r = initial_loss(make_ctx(net, digits))
    assert r.status == status
    if status != "pass":
        f = r.findings[0]
        assert f.rule == "initial_loss_high" and "scores are too large" in f.title and "init" in f.fix
        assert f.evidence["score_std"] > 2.0


def test_l2_penalty_is_the_objective_behind_torch_weight_decay():
    # d/dw (lambda/2 ||w||^2) = lambda w: one SGD step with weight_decay equals one step on the penalised objective.
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    x, y, lam = torch.randn(8, 4), torch.randint(0, 3, (8,)), 0.3
    opt = torch.optim.SGD(a.parameters(), lr=0.1, weight_decay=lam)
    F.cross_entropy(a(x), y).backward()
    opt.step()
    (F.cross_entropy(b(x), y) + lam * l2_penalty_with_grad(b)).backward()
    with torch.no_grad():
        for p in b.parameters():
            p -= 0.1 * p.grad
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert l2_penalty(a).item() == pytest.approx(0.5 * sum((p.double() ** 2).sum().item() for p in a.parameters()))


def l2_penalty_with_grad(model):
    return 0.5 * sum((p ** 2).sum() for p in model.parameters())


def test_turning_regularization_up_raises_the_loss(digits):
    r = regularization(make_ctx(small(digits), digits))
    losses = list(r.evidence["loss_by_strength"].values())
    assert r.status == "pass" and losses == sorted(losses) and losses[-1] > 100 * losses[0]


def test_all_zero_weights_cannot_be_regularized(digits):
    net = small(digits)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    r = regularization(make_ctx(net, digits))
    assert r.status == "fail" and r.findings[0].rule == "regularization_no_effect"


def test_a_weight_decay_that_swamps_the_data_loss_is_flagged(digits):
    r = regularization(make_ctx(small(digits), digits, bs.Recipe(weight_decay=1.0, device="cpu")))
    share = r.evidence["configured_share"]
    assert share > 1.0 and r.findings[0].rule == "regularization_dominates"
    assert r.status == ("fail" if share >= 10 else "warn")
    # A tenth of that strength: the penalty is a tenth of the share, so the verdict drops to a warning or a pass.
    weaker = regularization(make_ctx(small(digits), digits, bs.Recipe(weight_decay=0.1, device="cpu")))
    assert abs(weaker.evidence["configured_share"] - share / 10) < 1e-6 * share
    assert weaker.status == ("fail" if share / 10 >= 10 else "warn" if share / 10 > 1 else "pass")
    assert regularization(make_ctx(small(digits), digits, bs.Recipe(weight_decay=1e-4, device="cpu"))).status == "pass"


@pytest.mark.parametrize("p, status", [(0.3, "pass"), (0.6, "warn"), (0.9, "fail")])
def test_dropout_that_drops_most_units_is_flagged_from_the_modules(digits, p, status):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(p), torch.nn.Linear(32, 10))
    r = regularization(make_ctx(net, digits))
    assert r.status == status
    if status != "pass":
        assert r.findings[0].rule == "regularization_too_strong" and r.findings[0].evidence["dropout"] == {"3": p}


def test_eval_without_model_eval_is_caught_for_batch_norm(digits):
    forgetful = lambda model, x: model(x)  # noqa: E731  (the bug: no model.eval())
    r = eval_mode(make_ctx(small(digits, batchnorm=True), digits, eval_fn=forgetful))
    f = r.findings[0]
    assert r.status == "fail" and f.rule == "eval_mode" and "running statistics" in f.title
    assert f.evidence["batch_difference"] > 1e-3 and "model.eval()" in f.fix


def test_eval_without_model_eval_is_caught_for_dropout(digits):
    forgetful = lambda model, x: model(x)  # noqa: E731
    r = eval_mode(make_ctx(small(digits, dropout=0.5), digits, eval_fn=forgetful))
    assert r.status == "fail" and "dropout is active" in r.findings[0].title


def test_a_correct_eval_function_and_the_default_pass(digits):
    def careful(model, x):
        model.eval()
        with torch.no_grad():
            return model(x)

    net = small(digits, batchnorm=True, dropout=0.5)
    assert eval_mode(make_ctx(net, digits, eval_fn=careful)).status == "pass"
    assert eval_mode(make_ctx(net, digits)).status == "pass"


def test_a_custom_layer_that_ignores_eval_mode_is_caught(digits):
    class NoisyLayer(nn.Module):  # forgets to check self.training
        def forward(self, x):
            return x + 0.1 * torch.randn_like(x)

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), NoisyLayer())
    assert eval_mode(make_ctx(net, digits)).status == "fail"


def test_an_eval_function_that_returns_no_tensor_is_a_clear_error(digits):
    with pytest.raises(bs.ConfigError, match="must return a tensor of class scores, got list"):
        eval_mode(make_ctx(small(digits), digits, eval_fn=lambda model, x: [0.0]))


class _Log(nn.Module):
    def forward(self, x):
        return torch.log(x)  # NaN for the negative half of a standardised layer's outputs


@pytest.mark.parametrize("dataset", ["digits", "spiral"])
def test_a_forward_pass_that_makes_nan_is_named_at_its_layer_not_called_an_init_scale(dataset):
    data = bs.prepare(bs.load_dataset(dataset))
    width = math.prod(data.input_shape)
    model = nn.Sequential(nn.Flatten(), nn.Linear(width, 32), _Log(), nn.Linear(32, data.num_classes))
    loss = initial_loss(make_ctx(model, data))
    assert [f.rule for f in loss.findings] == ["scores_not_finite"]
    assert loss.evidence["first_non_finite_layer"] == "2" and "'2' (_Log)" in loss.findings[0].title
    reg = regularization(make_ctx(model, data))
    assert reg.status == "skip" and not reg.findings  # no "infx the data loss" from a NaN loss
    report = bs.check(model, data, bs.Recipe(device="cpu"), progress=False)
    assert report.findings[0].rule == "scores_not_finite"
    assert "initial_loss_high" not in {f.rule for f in report.findings}


def test_adamws_decoupled_decay_is_not_read_as_a_loss_term_that_swamps_the_data_loss():
    data = bs.prepare(bs.load_dataset("digits"))
    model = bs.build_model("mlp", data.input_shape, data.num_classes)
    coupled = regularization(make_ctx(model, data, bs.Recipe(device="cpu", optimizer="adam", weight_decay=0.05)))
    decoupled = regularization(make_ctx(model, data, bs.Recipe(device="cpu", optimizer="adamw", weight_decay=0.05)))
    assert "regularization_dominates" in {f.rule for f in coupled.findings}
    assert "regularization_dominates" not in {f.rule for f in decoupled.findings}
