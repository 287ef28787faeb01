"""Shared fixtures: small real data sets, loaded once per test process."""

from __future__ import annotations

import functools
import os

import pytest
import torch

import babysit as bs

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per xdist worker: the CI machine has 2 cores and runs 2 workers.
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _runs_dir(tmp_path_factory):
    """Run records and crash logs of CLI tests (and their subprocesses) go to temporary folders, not ./runs and ~/.cache."""
    saved = {key: os.environ.get(key) for key in ("BABYSIT_RUNS_DIR", "XDG_CACHE_HOME")}
    os.environ["BABYSIT_RUNS_DIR"] = str(tmp_path_factory.mktemp("runs"))
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    for key, previous in saved.items():
        if previous is None:
            del os.environ[key]
        else:
            os.environ[key] = previous


@functools.lru_cache(maxsize=None)
def _load(name: str) -> bs.Dataset:
    return bs.prepare(bs.load_dataset(name))


@pytest.fixture(scope="session")
def digits() -> bs.Dataset:
    """scikit-learn digits, standardised on train."""
    return _load("digits")


@pytest.fixture(scope="session")
def mnist1d() -> bs.Dataset:
    """MNIST-1D at the paper's sizes, standardised on train."""
    return _load("mnist1d")
