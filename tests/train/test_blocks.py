"""How `fit` applies the recipe's blocks: L-BFGS full batch, callbacks in order, config keys."""

import babysit as bs
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
