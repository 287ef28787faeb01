"""Polyak and EMA parameter averaging (docs/lectures.md §9): the formulas, evaluation on the average, a smoother curve."""

import numpy as np
import pytest
import torch
from torch import nn

import babysit as bs
from babysit.optim.averaging import AVERAGING, ParameterAveraging


class Iterates:
    """Records the weights after every step (after the averaging callback's update)."""

    def __init__(self):
        self.weights = []

    def on_batch_end(self, state):
        self.weights.append(torch.nn.utils.parameters_to_vector(state.model.parameters()).detach().clone())


# The average after T steps of the iterates w_1..w_T, as the lectures define it.
FORMULAS = {
    "none": lambda ws: ws[-1],
    "polyak": lambda ws: torch.stack(ws).mean(0),
    "ema": lambda ws: _ema(ws, 0.9),
}


def _ema(ws, d):
    avg = ws[0]  # torch's AveragedModel starts from the first iterate
    for t, w in enumerate(ws[1:], start=1):
        decay = min(d, (1 + t) / (10 + t))  # the warm-up: t updates averaged so far
        avg = decay * avg + (1 - decay) * w
    return avg


def test_the_ema_decay_warms_up_and_then_is_the_configured_one():
    """A short run's average is not stuck on its first iterate: after 44 steps at d = 0.99 it kept 64% of it."""
    from babysit.optim.averaging import warm_ema_multi_avg_fn

    update = warm_ema_multi_avg_fn(0.99)
    first = [torch.zeros(3)]
    for t in range(1, 45):
        update(first, [torch.ones(3)], torch.tensor(t))
    weight_of_first = float(1 - first[0][0])
    assert weight_of_first < 0.05  # constant 0.99: 0.99 ** 44 = 0.64
    late = [torch.zeros(1)]
    update(late, [torch.ones(1)], torch.tensor(10_000))
    assert float(late[0]) == pytest.approx(0.01)  # (1 + t) / (10 + t) > 0.99: the configured decay


def test_every_registered_averaging_has_a_formula_here():
    assert set(FORMULAS) == set(AVERAGING.names())


@pytest.mark.parametrize("name", AVERAGING.names())
def test_the_evaluated_and_returned_weights_are_the_average_of_the_iterates(name, digits):
    tiny = bs.data.select_classes(digits, range(10), train_size=300)
    bs.train.seed_everything(0)
    net = bs.blocks.mlp(tiny.input_shape, 10, hidden=(16,))
    spy = Iterates()
    recipe = bs.Recipe(optimizer="sgd", lr=0.1, epochs=3, averaging=name, ema_decay=0.9, device="cpu")
    result = bs.fit(net, tiny, recipe, callbacks=[spy], progress=False)
    expected = FORMULAS[name](spy.weights)
    returned = torch.nn.utils.parameters_to_vector(net.parameters()).detach()
    assert torch.allclose(returned, expected, atol=1e-6)  # fit hands back the averaged model ...
    loss, acc = bs.evaluate(net, tiny.test.x, tiny.test.y)
    assert (loss, acc) == pytest.approx((result.test_loss, result.test_accuracy))  # ... which is the one tested
    if name != "none":
        assert not torch.allclose(returned, spy.weights[-1], atol=1e-4)


def test_batch_norm_statistics_are_averaged_too():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    avg = ParameterAveraging("polyak")
    state = bs.train.TrainState(net, torch.optim.SGD(net.parameters(), lr=0.1), bs.Recipe(), None, torch.device("cpu"), 1)
    avg.on_fit_start(state)
    means = []
    for i in range(4):
        net(torch.randn(16, 3) + i)
        means.append(net[1].running_mean.clone())
        avg.on_batch_end(state)
    assert state.eval_model is avg.averaged
    assert torch.allclose(avg.averaged.module[1].running_mean, torch.stack(means).mean(0), atol=1e-6)
    assert "polyak" in repr(avg)


def _roughness(curve):
    """Std of the epoch-to-epoch changes of a validation curve: 0 for a straight line, large for a jagged one."""
    return float(np.std(np.diff(curve)))


def test_polyak_averaging_gives_a_smoother_validation_curve(mnist1d):
    # Plain SGD at a high rate bounces around; the average of its iterates moves steadily.
    curves = {}
    for averaging in ("none", "polyak"):
        bs.train.seed_everything(0)
        net = bs.blocks.mlp(mnist1d.input_shape, 10, hidden=(100,))
        recipe = bs.Recipe(optimizer="sgd", lr=0.2, epochs=15, averaging=averaging, seed=0, device="cpu")
        curves[averaging] = bs.fit(net, mnist1d, recipe, progress=False).history.series("val_accuracy")[2:]
    # Measured over seeds 0-2: roughness ratio 0.29-0.44 (seed 0: 0.30); the band leaves room for platform noise.
    assert _roughness(curves["polyak"]) < 0.6 * _roughness(curves["none"])
    assert curves["polyak"][-1] > 0.4  # and it still learns (chance is 0.1)
