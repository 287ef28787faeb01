import math

import pytest
import torch
from torch import nn

import babysit as bs
from babysit.errors import ConfigError


def small_mlp(data, **kw):
    bs.train.seed_everything(0)
    return bs.blocks.mlp(data.input_shape, data.num_classes, hidden=(32,), **kw)


def test_training_lowers_the_loss_and_reports_every_epoch(digits):
    result = bs.fit(small_mlp(digits), digits, bs.Recipe(lr=1e-2, epochs=4, device="cpu"), progress=False)
    losses = result.history.series("train_loss")
    assert result.status == "completed" and result.epochs == 4
    assert losses[-1] < losses[0] * 0.5
    assert set(result.history.records[0]) >= {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"}
    assert result.test_accuracy > 0.85


def test_same_seed_gives_identical_numbers_on_cpu(digits):
    recipe = bs.Recipe(optimizer="momentum", epochs=2, device="cpu", seed=3)
    runs = [bs.fit(small_mlp(digits, dropout=0.3), digits, recipe, progress=False) for _ in range(2)]
    assert runs[0].history.records[-1]["train_loss"] == runs[1].history.records[-1]["train_loss"]
    assert [r["val_loss"] for r in runs[0].history.records] == [r["val_loss"] for r in runs[1].history.records]
    assert runs[0].test_loss == runs[1].test_loss


def test_evaluate_runs_in_eval_mode_and_restores_training_mode(digits):
    net = small_mlp(digits, dropout=0.5)
    net.train()
    a = bs.evaluate(net, digits.val.x, digits.val.y)
    b = bs.evaluate(net, digits.val.x, digits.val.y)
    assert a == b  # dropout off: deterministic
    assert net.training


class Recorder:
    def __init__(self, stop_at_step=None):
        self.events = []
        self.stop_at_step = stop_at_step

    def on_fit_start(self, state):
        self.events.append("fit_start")

    def on_epoch_start(self, state):
        self.events.append("epoch_start")

    def on_batch_end(self, state):
        self.events.append("batch_end")
        if state.step == self.stop_at_step:
            state.stop, state.status, state.stop_reason = True, "stopped", "test asked"

    def on_epoch_end(self, state):
        self.events.append("epoch_end")

    def on_fit_end(self, state):
        self.events.append(("fit_end", state.result.status))


def test_callback_events_arrive_in_order_and_can_stop_training(digits):
    rec = Recorder()
    bs.fit(small_mlp(digits), digits, bs.Recipe(epochs=2, batch_size=500, device="cpu"), callbacks=[rec], progress=False)
    steps = math.ceil(len(digits.train) / 500)
    one_epoch = ["epoch_start", *["batch_end"] * steps, "epoch_end"]
    assert rec.events == ["fit_start", *one_epoch, *one_epoch, ("fit_end", "completed")]

    stopper = Recorder(stop_at_step=2)
    result = bs.fit(small_mlp(digits), digits, bs.Recipe(epochs=5, batch_size=100, device="cpu"), callbacks=[stopper], progress=False)
    assert result.status == "stopped" and result.epochs == 1 and result.stop_reason == "test asked"
    assert stopper.events.count("batch_end") == 2


def test_works_with_any_user_module(digits):
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))

    result = bs.fit(Tiny(), digits, bs.Recipe(lr=1e-2, epochs=3, device="cpu"), progress=False)
    assert result.test_accuracy > 0.8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": -1.0}, "train.lr must be a positive number"),
        ({"lr": float("nan")}, "train.lr"),
        ({"epochs": 0}, "train.epochs"),
        ({"momentum": 1.0}, "train.momentum"),
        ({"optimizer": "adamm"}, "did you mean 'adam'"),
        ({"device": "gpu7"}, "train.device"),
    ],
)
def test_recipe_refuses_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=None) as info:
        bs.fit(nn.Linear(2, 2), None, bs.Recipe(**kwargs))
    assert message in str(info.value)


def test_recipe_picks_an_optimiser_specific_default_lr():
    assert bs.Recipe(optimizer="adam").lr == 1e-3
    assert bs.Recipe(optimizer="sgd").lr == 0.1
    assert bs.Recipe(optimizer="sgd", lr=0.5).lr == 0.5


def test_divergence_guard_stops_an_exploding_run(digits):
    guard = bs.train.DivergenceGuard()
    result = bs.fit(small_mlp(digits), digits, bs.Recipe(optimizer="sgd", lr=1e6, epochs=3, device="cpu"), callbacks=[guard], progress=False)
    assert result.status == "diverged"
    assert guard.diverged_at is not None and guard.diverged_at <= 5
    assert "step" in result.stop_reason


def test_divergence_guard_leaves_a_healthy_run_alone(digits):
    guard = bs.train.DivergenceGuard()
    result = bs.fit(small_mlp(digits), digits, bs.Recipe(lr=1e-2, epochs=2, device="cpu"), callbacks=[guard], progress=False)
    assert result.status == "completed" and guard.diverged_at is None


def test_a_last_batch_of_one_sample_is_skipped_so_a_batchnorm_net_trains():
    # 201 training rows at batch 100: the third batch would hold one sample, which BatchNorm cannot normalise.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(260, 5, generator=g)
    data = bs.Dataset.from_arrays(x[:201], (x[:201, 0] > 0).long(), x_val=x[201:241], y_val=(x[201:241, 0] > 0).long(), x_test=x[241:], y_test=(x[241:, 0] > 0).long())
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    steps = []

    class Count:
        def on_batch_end(self, state):
            steps.append(state.step)

    result = bs.fit(model, data, bs.Recipe(epochs=3, batch_size=100, device="cpu"), callbacks=[Count()], progress=False)
    assert result.status == "completed" and steps == list(range(1, 7))  # two full batches per epoch, none of one sample


def test_training_on_the_cpu_flushes_subnormal_floats_and_restores_the_mode_after(digits):
    from babysit.train.trainer import flushing_denormals

    seen = []

    class Look:  # what the arithmetic does inside the loop: a float32 below 1.2e-38 times one
        def on_epoch_end(self, state):
            seen.append((torch.tensor([1e-39]) * 1.0).item())

    assert not flushing_denormals()
    bs.fit(bs.blocks.mlp(digits.input_shape, 10, hidden=(8,)), digits, bs.Recipe(epochs=2, device="cpu"), callbacks=[Look()], progress=False)
    assert seen == [0.0, 0.0]  # flushed while it trained: no slow subnormal arithmetic late in a run that fits its data
    assert not flushing_denormals() and (torch.tensor([1e-39]) * 1.0).item() > 0  # the caller's default mode is back
    torch.set_flush_denormal(True)  # a caller that flushes already keeps flushing
    try:
        bs.fit(bs.blocks.mlp(digits.input_shape, 10, hidden=(8,)), digits, bs.Recipe(epochs=1, device="cpu"), progress=False)
        assert flushing_denormals()
    finally:
        torch.set_flush_denormal(False)


def test_a_run_that_fails_still_gives_back_the_callers_mode(digits):
    from babysit.train.trainer import flushing_denormals

    class Boom:
        def on_epoch_end(self, state):
            raise RuntimeError("a callback's own error")

    with pytest.raises(RuntimeError, match="own error"):
        bs.fit(bs.blocks.mlp(digits.input_shape, 10, hidden=(8,)), digits, bs.Recipe(epochs=2, device="cpu"), callbacks=[Boom()], progress=False)
    assert not flushing_denormals()
