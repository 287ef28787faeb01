"""Callbacks: a method named like an event that does not exist is refused, not silently never called."""

import pytest
import torch
from torch import nn

import babysit as bs
from babysit.errors import ConfigError
from babysit.train.callbacks import EVENTS, check_callbacks


class Typo:
    def __init__(self):
        self.calls = 0

    def on_epoch_ends(self, state):
        self.calls += 1


class Fine:
    def on_epoch_end(self, state):
        pass

    def helper(self):  # not an event name: left alone
        pass


def test_unknown_event_method_is_refused_with_the_events():
    with pytest.raises(ConfigError, match=r"Typo has a method on_epoch_ends\(\).*did you mean 'on_epoch_end'.*on_fit_start, on_epoch_start"):
        check_callbacks([Fine(), Typo()])
    check_callbacks([Fine(), bs.watch()])  # babysit's own and plain ones pass
    assert EVENTS == ("fit_start", "epoch_start", "batch_end", "epoch_end", "fit_end", "exception", "replan")


def test_a_failing_fit_tells_its_callbacks_then_raises_its_own_error():
    class Boom(Exception):
        pass

    seen = []

    class Fails:
        def on_epoch_end(self, state):
            raise Boom("epoch 1")

    class Told:
        def on_exception(self, state):
            seen.append(len(state.history))

    class Broken:
        def on_exception(self, state):
            raise OSError("disk full")

    data = bs.Dataset.from_arrays(torch.randn(60, 3), torch.arange(60) % 2)
    with pytest.warns(UserWarning, match=r"Broken.on_exception failed \(OSError: disk full\)"), pytest.raises(Boom, match="epoch 1"):
        bs.fit(torch.nn.Linear(3, 2), data, bs.Recipe(epochs=3), callbacks=[Told(), Broken(), Fails()], progress=False)
    assert seen == [1]


def test_fit_refuses_it_before_training():
    data = bs.Dataset.from_arrays(torch.randn(60, 3), torch.arange(60) % 2)
    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    typo = Typo()
    with pytest.raises(ConfigError, match="on_epoch_ends"):
        bs.fit(model, data, bs.Recipe(epochs=2, batch_size=16), callbacks=[typo], progress=False)
    assert typo.calls == 0 and torch.equal(model.weight, before)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
@pytest.mark.parametrize("planned, replanned", [(4, 7), (10, 5)])
def test_a_run_replanned_mid_way_trains_to_its_new_length_and_its_schedule_ends_there(schedule, planned, replanned):
    lrs = []

    class Replan:
        def on_batch_end(self, state):
            lrs.append(state.optimizer.param_groups[0]["lr"])

        def on_epoch_end(self, state):
            if len(state.history) == 2:
                state.replan(replanned)

    data = bs.Dataset.from_arrays(torch.randn(64, 3), torch.arange(64) % 2)
    recipe = bs.Recipe(epochs=planned, batch_size=16, lr=0.1, optimizer="adamw", schedule=schedule)
    result = bs.fit(torch.nn.Linear(3, 2), data, recipe, callbacks=[Replan()], progress=False)
    per_epoch = result.history.records[0]["step"]
    assert result.status == "completed" and result.epochs == replanned and len(lrs) == per_epoch * replanned
    # The schedule runs to the new end: its last rate is the decay's end (cosine 0, one-cycle 0.1 / 25 / 1e4), and
    # after the re-plan each rate is what a run planned at the new length from the start has at that step.
    assert lrs[-1] < 1e-3 * 0.1
    fresh = []
    plan = bs.Recipe(epochs=replanned, batch_size=16, lr=0.1, optimizer="adamw", schedule=schedule)
    bs.fit(torch.nn.Linear(3, 2), data, plan, callbacks=[type("L", (), {"on_batch_end": lambda self, s: fresh.append(s.optimizer.param_groups[0]["lr"])})()], progress=False)
    assert lrs[2 * per_epoch :] == pytest.approx(fresh[2 * per_epoch :], rel=1e-6)


def test_a_run_cannot_be_replanned_to_what_it_already_trained():
    class Shrink:
        def on_epoch_end(self, state):
            state.replan(1)

    data = bs.Dataset.from_arrays(torch.randn(64, 3), torch.arange(64) % 2)
    with pytest.raises(ValueError, match="re-planned to 1 epochs has already trained 1"):
        bs.fit(torch.nn.Linear(3, 2), data, bs.Recipe(epochs=3), callbacks=[Shrink()], progress=False)
