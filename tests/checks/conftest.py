"""Helpers for the preflight-check tests: small data sets and a context builder."""

from __future__ import annotations

import pytest
import torch

import babysit as bs
from babysit.checks.base import CheckContext, CheckSettings
from babysit.data.datasets import Dataset, Split

# Small budgets: every check stays well under a second on digits.
FAST = CheckSettings(overfit_steps=200, sweep_steps=80, baseline_steps=100)


def make_ctx(model, data, recipe=None, settings=None, eval_fn=None) -> CheckContext:
    """A check context on the CPU, as `bs.check` builds it."""
    return CheckContext(model, data, recipe or bs.Recipe(device="cpu"), settings or FAST, torch.device("cpu"), eval_fn)


def tabular(x_train, x_val, x_test, classes=3, seed=0) -> Dataset:
    """A Dataset from feature matrices, with random labels."""
    g = torch.Generator().manual_seed(seed)
    split = lambda x: Split(x.float(), torch.randint(0, classes, (len(x),), generator=g))  # noqa: E731
    return Dataset("tabular", split(x_train), split(x_val), split(x_test), classes, tuple(x_train.shape[1:]), tuple(map(str, range(classes))))


@pytest.fixture
def ctx_for():
    return make_ctx
