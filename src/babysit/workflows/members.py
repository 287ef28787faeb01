"""`auto`'s final stage as a model ensemble when the budget buys more than the search validated (docs/lectures.md §9).

    members = member_count(epochs, horizon)          # 1: one final run, as always
    extra = train_members(base, values, data, ...)   # members 2..n, each a run of its own seed
    accuracy, single = ensemble_accuracy([first.model, *(m.model for m in extra)], data)

The configuration `auto` re-evaluated was ranked on runs of h epochs (the horizon); a final run
of `FINAL_FACTOR` x h is the extrapolation every final run makes (`workflows.budget`). When the
budget left buys many times that (a k-fold re-evaluation's ten runs leave the final run at least
their cost: about ten horizons), one run stretched over all of it trains far past anything that
ranked its configuration, and short trials favour too little regularization: on 2,000-sample
MNIST-1D at 10 CPU-minutes the search chose weight decay 1e-6 and the 4,800-epoch final runs
overfit (validation peaked a third of the way in; test 0.80-0.86, their best checkpoints
0.88-0.90). The lectures' use for the extra compute is a model ensemble: train independent models
and average their predictions at test time. So the final stage trains `member_count` runs of
at least `FINAL_FACTOR` x h epochs, seeds apart, and delivers the mean of their class
probabilities: there 0.9092 ± 0.0201 over 3 seeds against 0.8358 ± 0.0313 for the one long run,
its 5 members alone 0.83-0.87 on average (bench/auto_results/10m.jsonl, README).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from babysit.build import load_data, model_from_config, run
from babysit.config import RunConfig, build_config
from babysit.data.datasets import Dataset
from babysit.ensemble import Ensemble
from babysit.io import atomic_write_bytes
from babysit.status import COMPLETED
from babysit.train.checkpoint import load_checkpoint, serialize
from babysit.train.trainer import evaluate
from babysit.tune.runner import trial_config
from babysit.workflows.budget import FINAL_FACTOR, BudgetGuard, Cost, FitToBudget, cpu_seconds

MAX_MEMBERS = 8  # the test predictions cost a forward pass per member and fixed view
FORMAT = "babysit-ensemble"


@dataclass
class Member:
    """One run of the ensemble: its seed, its length, how it ended and its own test accuracy."""

    seed: int
    epochs: int
    status: str
    test_accuracy: float | None
    model: nn.Module

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "epochs": self.epochs, "status": self.status, "test_accuracy": self.test_accuracy}


def member_count(epochs: int, horizon: int) -> int:
    """How many runs of at least `FINAL_FACTOR` x `horizon` epochs the final stage's `epochs` make (1 without a horizon).

    `horizon`: the length the re-evaluation ranked the configuration at (0: nothing was re-evaluated,
    and the final run trains the configuration it started from, as long as the budget allows).
    """
    if horizon < 1:
        return 1
    return max(1, min(MAX_MEMBERS, epochs // (FINAL_FACTOR * horizon)))


def first_share(left: float, members: int, recorded: Cost, bare: Cost) -> int:
    """The epochs of each member when the first is recorded (probes, checkpoints) and the rest are bare, all as long, in `left` CPU-s."""
    combined = Cost(recorded.per_epoch_s + (members - 1) * bare.per_epoch_s, recorded.fixed_s + (members - 1) * bare.fixed_s)
    return combined.epochs_for(left)


def train_members(base: RunConfig, values: dict[str, Any], data: Dataset, seeds: list[int], cost: Cost, end: float, guard_end: float,
                  min_epochs: int, callbacks: list[Any], notes: list[str]) -> list[Member]:  # fmt: skip
    """Members 2..n: bare runs of `values`, one per seed, each fitted to an equal share of the CPU left before `end`.

    A member whose share buys fewer than `min_epochs` (the horizon that ranked its configuration) is not
    trained; one that diverges or is cut by the last-resort guard at `guard_end` is left out of the ensemble.
    Each case is noted.
    """
    members: list[Member] = []
    for k, seed in enumerate(seeds):
        share = (end - cpu_seconds()) / (len(seeds) - k)
        epochs = cost.epochs_for(share)
        if epochs < max(min_epochs, 1):
            kept = f"the ensemble has {len(members) + 1} members" if members else "the first run is delivered alone"
            notes.append(f"the budget left bought {epochs} epoch{'s' if epochs != 1 else ''} for ensemble member {k + 2}, fewer than the {min_epochs} that ranked its "
                         f"configuration: {kept}")  # fmt: skip
            break
        cfg = trial_config(base, values, epochs)
        cfg = replace(cfg, train=replace(cfg.train, seed=seed))
        guard = BudgetGuard(guard_end)
        done = run(cfg, callbacks=[FitToBudget(cpu_seconds() + share), guard, *callbacks], progress=False, data=replace(data, test_views=()))
        if done.result.status != COMPLETED or guard.fired:
            why = "the last-resort guard cut it" if guard.fired else f"it ended {done.result.status} ({done.result.stop_reason})"
            notes.append(f"ensemble member {k + 2} (train.seed {seed}) was left out: {why} at epoch {done.result.epochs}")
            continue
        members.append(Member(seed, done.result.epochs, done.result.status, done.result.test_accuracy, done.model))
    return members


def ensemble_accuracy(models: list[nn.Module], data: Dataset) -> tuple[float, float | None]:
    """The test accuracy of the mean of `models`' class probabilities, averaged over the data's fixed test views, and on one view (None without views)."""
    ensemble = Ensemble(models)
    device = next((p.device for p in ensemble.parameters()), torch.device("cpu"))
    x, y = data.test.x.to(device), data.test.y.to(device)
    accuracy = evaluate(ensemble, x, y, views=data.test_views)[1]
    return accuracy, (evaluate(ensemble, x, y)[1] if data.test_views else None)


def save_ensemble(path: str | Path, cfg: RunConfig, members: list[Member]) -> Path:
    """Write every member's weights and the config they were trained with to `path`, atomically (`load_ensemble` reads it back)."""
    payload = {
        "format": FORMAT,
        "config": cfg.to_dict(),
        "members": [{**m.to_dict(), "model": {k: v.detach().cpu() for k, v in m.model.state_dict().items()}} for m in members],
    }
    return atomic_write_bytes(path, serialize(payload))


def load_ensemble(path: str | Path, data: Dataset | None = None) -> Ensemble:
    """The ensemble `babysit auto` saved in `path` (its ensemble.pt), rebuilt on its config's data (or `data`, already loaded).

    Read with safe deserialisation (tensors and plain values only).
    """
    saved = load_checkpoint(path, kind=FORMAT)
    cfg = build_config(saved["config"])
    data = data if data is not None else load_data(cfg.data)
    models = []
    for member in saved["members"]:
        model = model_from_config(cfg.model, data, seed=member["seed"])
        model.load_state_dict(member["model"])
        models.append(model.eval())
    return Ensemble(models)
