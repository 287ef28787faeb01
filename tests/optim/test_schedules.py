"""Learning-rate schedules and momentum annealing against docs/lectures.md §8, through `fit`'s history."""

import math
from types import SimpleNamespace

import pytest
import torch

import babysit as bs
from babysit.errors import ConfigError
from babysit.optim.schedules import PER_BATCH, SCHEDULES, LRSchedule, MomentumAnnealing

A0, K, PERIOD, GAMMA = 0.1, 0.3, 3, 0.5

# The learning rate during epoch t (0-based), as the lectures write it.
FORMULAS = {
    "none": lambda t: A0,
    "step": lambda t: A0 * GAMMA ** (t // PERIOD),
    "exponential": lambda t: A0 * math.exp(-K * t),
    "inverse_time": lambda t: A0 / (1 + K * t),
    "cyclic": lambda t: A0 * (1 + math.cos(math.pi * (t % PERIOD) / PERIOD)) / 2,
}


def _onecycle(s, total):
    # torch's OneCycleLR (two phases, cosine annealing): a0/25 -> a0 over 30% of the steps, then -> a0/25/1e4.
    peak = 0.3 * total - 1
    lo, hi, end = A0 / 25, A0, A0 / 25 / 1e4
    if s <= peak:
        return hi + (lo - hi) * (1 + math.cos(math.pi * s / peak)) / 2
    return end + (hi - end) * (1 + math.cos(math.pi * (s - peak) / (total - 1 - peak))) / 2


# The learning rate after s of T steps with a warm-up of W steps (per-batch schedules).
BATCH_FORMULAS = {
    "warmup": lambda s, T, W: A0 * min(1.0, (s + 1) / W) if W else A0,
    "cosine": lambda s, T, W: A0 * ((s + 1) / W if s < W else (1 + math.cos(math.pi * (s - W) / (T - W))) / 2),
    "onecycle": lambda s, T, W: _onecycle(s, T + 1),  # sized one step longer, to end at its minimum
}


def test_every_registered_schedule_has_a_formula_here():
    assert set(FORMULAS) | set(BATCH_FORMULAS) == set(SCHEDULES.names())
    assert set(BATCH_FORMULAS) == PER_BATCH


@pytest.fixture(scope="module")
def tiny(digits):
    """200 digits: a few steps per epoch, so that 8 epochs take a moment."""
    return bs.data.select_classes(digits, range(10), train_size=200)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_lr_per_epoch_follows_the_formula(name, tiny):
    recipe = bs.Recipe(optimizer="sgd", lr=A0, epochs=8, schedule=name, period=PERIOD, gamma=GAMMA, decay_rate=K, device="cpu")
    history = bs.fit(bs.blocks.mlp(tiny.input_shape, 10, hidden=(8,)), tiny, recipe, progress=False).history
    expected = [FORMULAS[name](t) for t in range(8)]
    assert history.series("lr") == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_schedules_scale_every_parameter_group_from_its_own_initial_lr():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": 1.0}, {"params": [params[1]], "lr": 0.1}])
    sched = LRSchedule("inverse_time", decay_rate=1.0)
    state = SimpleNamespace(optimizer=opt)
    sched.on_fit_start(state)
    for _ in range(3):
        opt.step()
        sched.on_epoch_end(state)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.0 / 4, 0.1 / 4])


def test_momentum_is_annealed_from_its_start_to_its_final_value(tiny):
    seen = []

    class Spy:
        def on_epoch_start(self, state):
            seen.append(state.optimizer.param_groups[0]["momentum"])

    recipe = bs.Recipe(optimizer="nesterov", lr=0.01, momentum=0.5, momentum_final=0.99, epochs=8, device="cpu")
    bs.fit(bs.blocks.mlp(tiny.input_shape, 10, hidden=(8,)), tiny, recipe, callbacks=[Spy()], progress=False)
    assert seen == pytest.approx([0.5 + 0.49 * t / 7 for t in range(8)])
    assert MomentumAnnealing(0.5, 0.9, epochs=1).momentum_at(0) == 0.9
    assert "0.5 -> 0.9" in repr(MomentumAnnealing(0.5, 0.9, epochs=4))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"schedule": "cosin"}, "unknown schedule 'cosin'"),
            ({"schedule": "cosine", "warmup_epochs": -1}, "train.warmup_epochs"),
        ({"schedule": "step", "period": 0}, "train.period"),
        ({"gamma": 1.5}, "train.gamma"),
        ({"decay_rate": -0.1}, "train.decay_rate"),
        ({"optimizer": "adam", "momentum_final": 0.99}, "use momentum or nesterov"),
        ({"optimizer": "momentum", "momentum_final": 1.0}, "train.momentum_final"),
        ({"rho": 1.0}, "train.rho"),
    ],
)
def test_bad_schedule_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError) as info:
        bs.Recipe(**kwargs)
    assert message in str(info.value)


class LRSpy:
    """Records the learning rate each optimiser step used."""

    def __init__(self):
        self.lrs = []

    def on_fit_start(self, state):
        self.lrs.append(state.optimizer.param_groups[0]["lr"])

    def on_batch_end(self, state):  # runs after the schedule stepped: the lr of the next step
        self.lrs.append(state.optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("name", sorted(PER_BATCH))
@pytest.mark.parametrize("epochs", [3, 6])
def test_per_batch_schedules_follow_the_formula_and_the_run_length(name, epochs, tiny):
    # 200 samples / 50 = 4 steps per epoch; the period is never set: the schedule reads epochs.
    recipe = bs.Recipe(optimizer="sgd", lr=A0, epochs=epochs, batch_size=50, schedule=name, warmup_epochs=1, device="cpu")
    spy = LRSpy()
    history = bs.fit(bs.blocks.mlp(tiny.input_shape, 10, hidden=(8,)), tiny, recipe, callbacks=[spy], progress=False).history
    T, W = 4 * epochs, 4
    expected = [BATCH_FORMULAS[name](s, T, W) for s in range(T)]
    assert spy.lrs[:T] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert len(spy.lrs) == T + 1
    if name != "warmup":  # decaying schedules end (almost) at zero whatever the number of epochs
        assert history.series("lr")[-1] <= A0 * 1e-3
        assert max(spy.lrs) == pytest.approx(A0, rel=1e-2)  # the peak: a0 (onecycle: nearest step to it)
