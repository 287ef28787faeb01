"""Resume is exact: a recorded run stopped at a random step and resumed equals the run never stopped.

For every built-in profile (`config.PROFILES`: augmentation, shuffling, one-cycle, EMA, label
smoothing) and for the other stateful blocks (dropout, per-epoch and per-batch schedules,
momentum annealing, Polyak averaging, early stopping, stochastic depth, fractional max
pooling), the run is interrupted at three random optimiser steps (and once at an epoch's end,
between its checkpoint and its metrics line) by a KeyboardInterrupt raised from a callback,
which is how Ctrl-C and SIGTERM reach a run; it is then continued with `resume_run` from the
checkpoint on disk. The per-epoch metrics, the probes, the test scores and the final weights
must equal the uninterrupted run's to the bit (CPU). Sizes are cut down (few epochs, narrow
nets) so that each profile runs in a few seconds; the profiles' own blocks are all kept.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import numpy as np
import torch

import babysit as bs
from babysit.build import load_data
from babysit.config import PROFILES
from babysit.train.checkpoint import load_checkpoint
from babysit.workflows.recorded import resume_run, start_run

SEED = 23
KILLS = 3

# Every built-in profile, with only its sizes cut (its data, augmentation, schedule, averaging kept).
SMALLER = {
    ("mnist1d", "convnet"): {"model": {"channels": [4, 4, 4]}, "train": {"epochs": 2, "batch_size": 400}},
    ("digits", "convnet"): {"model": {"channels": [4, 4, 4]}, "train": {"epochs": 2, "batch_size": 200}},
    ("mnist1d", "mlp"): {"model": {"hidden": [8, 8]}, "train": {"epochs": 2, "batch_size": 400}},
    ("arrays", "mlp"): {"model": {"hidden": [8, 8]}, "train": {"epochs": 3, "batch_size": 32}},  # a table the test writes (`_config`)
}
PROFILE_CASES = {
    f"profile-{d}-{m}": {"data": {"name": d}, "model": {"name": m, **SMALLER[(d, m)]["model"]}, "train": SMALLER[(d, m)]["train"]} for d, m in PROFILES
}
SIZES = {"channels", "hidden", "epochs", "batch_size"}  # what SMALLER cuts; every other key of a profile is kept
OTHER_CASES = {
    "dropout-step-polyak": {
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [32], "dropout": 0.3},
        "train": {"optimizer": "momentum", "schedule": "step", "period": 1, "momentum_final": 0.95, "averaging": "polyak", "epochs": 3, "batch_size": 64},
    },
    "cosine-warmup-dropconnect-l1": {
        "data": {"name": "spiral"},
        "model": {"name": "mlp", "hidden": [16], "dropconnect": 0.2},
        "train": {"optimizer": "nesterov", "lr": 0.05, "schedule": "cosine", "warmup_epochs": 1, "l1": 1e-4, "clip_grad_norm": 1.0, "max_norm": 3.0, "epochs": 3},
    },
    "resnet-drop-path-flip-early-stop": {
        "data": {"name": "digits", "augment": ["flip"]},
        "model": {"name": "resnet", "channels": [8], "depth": 1, "drop_path": 0.2},
        "train": {"optimizer": "adam", "schedule": "warmup", "warmup_epochs": 1, "patience": 1, "monitor": "val_accuracy", "epochs": 3, "batch_size": 128},
    },
    "convnet-fmp-onecycle-sgd": {
        "data": {"name": "digits"},
        "model": {"name": "convnet", "channels": [8, 8], "downsample": "fmp", "dropout": 0.2},
        "train": {"optimizer": "momentum", "lr": 0.05, "schedule": "onecycle", "label_smoothing": 0.1, "epochs": 2, "batch_size": 128},
    },
}
CASES = {**PROFILE_CASES, **OTHER_CASES}


class Kill:
    """Raise KeyboardInterrupt (what Ctrl-C and babysit's SIGTERM handler raise) at one step or one epoch's end."""

    def __init__(self, step: int | None = None, epoch_end: int | None = None) -> None:
        self.step, self.epoch_end = step, epoch_end

    def on_batch_end(self, state) -> None:
        if state.step == self.step:
            raise KeyboardInterrupt

    def on_epoch_end(self, state) -> None:
        if len(state.history) == self.epoch_end:
            raise KeyboardInterrupt


def _config(raw: dict, folder: Path) -> bs.RunConfig:
    base = {"train": {"device": "cpu", "seed": 3}, "watch": {"probes": "light"}}
    if raw["data"]["name"] == "arrays":  # a user's table: scikit-learn's wine, saved as a user would bring it
        from sklearn.datasets import load_wine

        wine = load_wine()
        np.savez(folder / "table.npz", x=wine.data.astype("float32"), y=wine.target)
        base["data"] = {"path": str(folder / "table.npz")}
    merged = {s: {**base.get(s, {}), **raw.get(s, {})} for s in {*base, *raw}}
    return bs.build_config(merged)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path / "checkpoints" / "last.pt")["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _metrics(record) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in record.metrics]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_run_interrupted_at_random_steps_and_resumed_equals_the_uninterrupted_run(case: str, tmp_path: Path) -> None:
    cfg = _config(CASES[case], tmp_path)
    data = load_data(cfg.data)  # once: every run below trains on these very tensors
    reference = start_run(cfg, runs_dir=tmp_path, name="reference", progress=False, data=data)
    ref = bs.load_run(tmp_path / "reference")
    total = ref.summary["steps"]
    rng = random.Random(f"{SEED}-{case}")
    points = [Kill(step=s) for s in sorted(rng.sample(range(1, total), KILLS))] + [Kill(epoch_end=1)]
    for i, kill in enumerate(points):
        name = f"killed-{i}"
        with pytest.raises(KeyboardInterrupt):
            start_run(cfg, runs_dir=tmp_path, name=name, progress=False, callbacks=[kill], data=data)
        assert bs.load_run(tmp_path / name).status == "interrupted"
        resumed = resume_run(tmp_path / name, progress=False, data=data)
        got = bs.load_run(tmp_path / name)
        where = f"{case}, stopped at step {kill.step}" if kill.step else f"{case}, stopped at the end of epoch {kill.epoch_end}"
        assert _metrics(got) == _metrics(ref), where
        assert got.probes == ref.probes, where
        for key in ("status", "epochs", "test_loss", "test_accuracy", "best_epoch", "steps"):
            assert got.summary[key] == ref.summary[key], (where, key)
        assert _same(_weights(tmp_path / name), _weights(tmp_path / "reference")), where
        assert _same(resumed.model.state_dict(), reference.model.state_dict()), where


def test_every_built_in_profile_is_covered() -> None:
    assert {(c["data"]["name"], c["model"]["name"]) for c in PROFILE_CASES.values()} == set(PROFILES)
    for (d, m), profile in PROFILES.items():  # the cut-down profile keeps every stateful block of the real one
        cut = bs.build_config({"data": {"name": d}, "model": {"name": m, **SMALLER[(d, m)]["model"]}, "train": SMALLER[(d, m)]["train"]})
        for section, values in profile.items():
            for key, value in values.items():
                if key not in SIZES:
                    got = getattr(getattr(cut, section), key)
                    assert (list(got) if isinstance(got, tuple) else got) == value, (d, m, section, key)
