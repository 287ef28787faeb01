"""Model ensembles: average the softmax of several models (docs/lectures.md §9).

"Train several independent models, average their predictions at test time"
(about 2% extra accuracy); or, cheaper, take snapshots of one run, ideally at
the low points of a cyclic learning rate (Huang et al. 2017, snapshot ensembles).

    models = [fit_one(seed) for seed in range(3)]
    ens = Ensemble(models)
    loss, acc = evaluate(ens, x_test, y_test)

An `Ensemble` is an `nn.Module` whose scores are log p_ens(y|x), so everything
that takes a model (evaluate, cross-entropy, argmax) takes an ensemble.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from babysit.errors import ConfigError


class Ensemble(nn.Module):
    """Average of the members' class probabilities: p(y|x) = (1/M) * sum_m softmax(f_m(x)).

    `forward` returns log p(y|x), shape (N, C): valid scores, since
    cross_entropy(log p, y) = -log p_y and argmax is unchanged by the log.

    Args:
        models: M >= 1 modules mapping the same inputs to (N, C) scores.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(models) == 0:
            raise ConfigError("an ensemble needs at least one model")
        self.members = nn.ModuleList(models)

    def forward(self, x: Tensor) -> Tensor:
        log_probs = torch.stack([torch.log_softmax(m(x), dim=1) for m in self.members])  # (M, N, C)
        # log((1/M) sum_m p_m) computed stably as logsumexp(log p_m) - log M.
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))

    def __repr__(self) -> str:
        return f"Ensemble({len(self.members)} x {type(self.members[0]).__name__})"


class Snapshots:
    """Callback keeping a copy of the model every `every` epochs, for a snapshot ensemble of one run.

    With the "cyclic" schedule and `every` equal to its period, each snapshot is
    taken at the end of a cycle, where the learning rate is lowest.

    Args:
        every: epochs between snapshots (>= 1).
        last: keep only the last `last` snapshots (None keeps all).
    """

    def __init__(self, every: int, last: int | None = None) -> None:
        if every < 1:
            raise ConfigError(f"snapshots need every >= 1 epoch, got {every}")
        self.every = every
        self.last = last
        self.models: list[nn.Module] = []
        self.epochs: list[int] = []

    def on_epoch_end(self, state) -> None:
        epoch = state.epoch + 1
        if epoch % self.every == 0:
            self.models.append(copy.deepcopy(state.model).eval())
            self.epochs.append(epoch)
            if self.last is not None:
                self.models, self.epochs = self.models[-self.last :], self.epochs[-self.last :]

    def ensemble(self) -> Ensemble:
        """The snapshots taken so far, as one ensemble."""
        return Ensemble(self.models)

    def __repr__(self) -> str:
        return f"Snapshots(every={self.every}, taken at epochs {self.epochs})"
