"""How `fit` applies the recipe's blocks: L-BFGS full batch, callbacks in order, config keys."""

import dataclasses

import pytest
import torch

import babysit as bs
from babysit.data.datasets import Split
from babysit.config import build_config, valid_keys
from babysit.nn.regularize import MaxNorm
from babysit.optim.averaging import ParameterAveraging
from babysit.optim.schedules import LRSchedule, MomentumAnnealing
from babysit.train.blocks import recipe_callbacks


class Steps:
    def __init__(self):
        self.steps = []

    def on_batch_end(self, state):
        self.steps.append(state.step)


def test_lbfgs_takes_one_full_batch_step_per_epoch(digits):
    steps = Steps()
    bs.train.seed_everything(0)
    net = bs.blocks.mlp(digits.input_shape, 10, hidden=(32,))
    result = bs.fit(net, digits, bs.Recipe(optimizer="lbfgs", epochs=3, batch_size=10, device="cpu"), callbacks=[steps], progress=False)
    assert steps.steps == [1, 2, 3]  # batch_size is ignored: the whole training split per step
    losses = result.history.series("train_loss")
    assert losses[-1] < 0.5 * losses[0] and result.test_accuracy > 0.85


def test_lbfgs_minimises_the_l1_objective_too(digits):
    norms = {}
    for l1 in (0.0, 1e-2):
        bs.train.seed_everything(0)
        net = bs.blocks.mlp(digits.input_shape, 10, hidden=(16,))
        bs.fit(net, digits, bs.Recipe(optimizer="lbfgs", epochs=2, l1=l1, device="cpu"), progress=False)
        norms[l1] = net[1].weight.abs().sum().item()
    assert norms[1e-2] < 0.8 * norms[0.0]


def test_recipe_callbacks_follow_the_recipe_in_a_fixed_order():
    assert recipe_callbacks(bs.Recipe()) == []
    cbs = recipe_callbacks(
        bs.Recipe(optimizer="momentum", schedule="step", momentum_final=0.99, max_norm=3.0, averaging="ema", epochs=4)
    )
    # max-norm projects the step's weights before they enter the average
    assert [type(c) for c in cbs] == [LRSchedule, MomentumAnnealing, MaxNorm, ParameterAveraging]


def test_every_new_recipe_and_config_key_round_trips_through_the_config():
    keys = set(valid_keys())
    for key in [
        "train.rho", "train.schedule", "train.period", "train.gamma", "train.decay_rate", "train.momentum_final",
        "train.l1", "train.max_norm", "train.averaging", "train.ema_decay", "train.body_lr_factor",
        "data.label_column", "data.pca_components", "data.whiten_eps", "data.augment", "data.crop_padding", "data.jitter",
        "model.slope", "model.alpha", "model.pieces", "model.init_std", "model.dropout_kind",
    ]:  # fmt: skip
        assert key in keys
    cfg = build_config({"data": {"pca_components": 20, "augment": "flip"}, "train": {"max_norm": 4, "schedule": "exponential"}})
    assert cfg.data.pca_components == 20 and isinstance(cfg.data.pca_components, int)
    assert cfg.data.augment == ("flip",) and cfg.train.max_norm == 4.0
    assert build_config({"data": {"pca_components": 0.9}}).data.pca_components == 0.9
    assert build_config(cfg.to_dict()) == cfg


def test_evaluation_without_averaging_is_the_model_itself(digits):
    seen = []

    class Spy:
        def on_fit_start(self, state):
            seen.append(state.eval_model is state.model)

    bs.fit(bs.blocks.mlp(digits.input_shape, 10, hidden=(8,)), digits, bs.Recipe(epochs=1, device="cpu"), callbacks=[Spy()], progress=False)
    assert seen == [True]


def test_label_smoothing_trains_on_the_smoothed_target_formula(digits):
    eps = 0.2
    # The training loss of one batch through fit equals (1 - eps) * CE + eps * mean_k(-log p_k).
    bs.train.seed_everything(0)
    net = bs.blocks.mlp(digits.input_shape, 10, hidden=(16,))
    x, y = digits.train.x[:100], digits.train.y[:100]
    tiny = dataclasses.replace(digits, train=Split(x, y))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    spy = []

    class Spy:
        def on_batch_end(self, state):
            spy.append(float(state.loss))

    bs.fit(net, tiny, bs.Recipe(optimizer="sgd", lr=1e-9, epochs=1, batch_size=100, label_smoothing=eps, device="cpu"), callbacks=[Spy()], progress=False)
    net.load_state_dict(before)
    logp = torch.log_softmax(net(x).detach(), 1)
    expected = (1 - eps) * -logp.gather(1, y[:, None]).mean() + eps * -logp.mean()
    assert spy[0] == pytest.approx(float(expected), rel=1e-5)


def test_clip_grad_norm_caps_the_step_of_a_huge_gradient(digits):
    norms = []

    class Spy:
        def on_batch_end(self, state):
            g = torch.cat([p.grad.flatten() for p in state.model.parameters() if p.grad is not None])
            norms.append(float(g.norm()))

    for clip in (None, 0.5):
        norms.clear()
        bs.train.seed_everything(0)
        net = bs.blocks.mlp(digits.input_shape, 10, hidden=(16,), init_std=1.0, init="normal")
        bs.fit(net, digits, bs.Recipe(optimizer="sgd", lr=1e-3, epochs=1, clip_grad_norm=clip, device="cpu"), callbacks=[Spy()], progress=False)
        if clip is None:
            assert max(norms) > 5.0  # the unclipped gradients are large
        else:
            assert max(norms) == pytest.approx(0.5, rel=1e-4)


def test_patience_stops_once_val_loss_stops_improving(digits):
    # lr far too high for plain SGD from a 1.0-std init: val loss stops improving almost at once.
    recipe = bs.Recipe(optimizer="sgd", lr=0.5, epochs=30, patience=2, device="cpu")
    bs.train.seed_everything(0)
    result = bs.fit(bs.blocks.mlp(digits.input_shape, 10, hidden=(32,)), digits, recipe, progress=False)
    losses = result.history.series("val_loss")
    best = min(range(len(losses)), key=losses.__getitem__)
    assert result.status == "stopped" and "early stopping" in result.stop_reason
    assert len(losses) == best + 1 + 2 < 30  # exactly `patience` epochs after the best
    with pytest.raises(bs.errors.ConfigError, match="train.monitor"):
        bs.Recipe(patience=3, monitor="val_acc")
