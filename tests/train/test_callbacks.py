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
    assert len(EVENTS) == 5


def test_fit_refuses_it_before_training():
    data = bs.Dataset.from_arrays(torch.randn(60, 3), torch.arange(60) % 2)
    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    typo = Typo()
    with pytest.raises(ConfigError, match="on_epoch_ends"):
        bs.fit(model, data, bs.Recipe(epochs=2, batch_size=16), callbacks=[typo], progress=False)
    assert typo.calls == 0 and torch.equal(model.weight, before)
