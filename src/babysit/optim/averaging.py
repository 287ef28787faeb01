"""Parameter averaging for evaluation: Polyak (uniform) and EMA (docs/lectures.md §9).

"Polyak averaging: use a moving average of the parameters at test time." The
iterates of SGD bounce around a minimum; their average sits nearer its centre
and changes slowly, so validation accuracy measured on it is higher and
smoother. Both forms use torch's `AveragedModel` (with the batch-norm running
statistics averaged alongside the weights, `use_buffers=True`):

    polyak   w_avg_t = (1/t) * sum_{s<=t} w_s           (Polyak & Juditsky 1992)
    ema      w_avg_t = d * w_avg_{t-1} + (1 - d) * w_t   (window ~ 1/(1-d) steps)

Contract: `AVERAGING.get(name)(model, **options)` returns an `AveragedModel` (or
None for "none"); the `ParameterAveraging` callback updates it after every step,
makes `fit` evaluate it, and copies it into the model when training ends.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from babysit.errors import ConfigError
from babysit.registry import Registry, accepted_options

AVERAGING: Registry = Registry("averaging")


@AVERAGING.register("none")
def none(model: nn.Module) -> None:
    """Evaluate the last iterate, as trained."""
    return None


@AVERAGING.register("polyak")
def polyak(model: nn.Module) -> AveragedModel:
    """Evaluate the uniform average of every iterate since the start of training."""
    return AveragedModel(model, use_buffers=True)


def _check_decay(ema_decay: float) -> None:
    if not 0.0 < ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in (0, 1) (0.99 averages ~100 steps), got {ema_decay}")


@AVERAGING.register("ema")
def ema(model: nn.Module, ema_decay: float = 0.99) -> AveragedModel:
    """Evaluate an exponential moving average of the iterates (decay d per step)."""
    _check_decay(ema_decay)
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)


class ParameterAveraging:
    """Callback: average the weights after every optimiser step and evaluate the average.

    At `fit_start` it copies the model into an `AveragedModel` and sets
    `state.eval_model` to it, so validation and the final test use the averaged
    weights; at `fit_end` the averaged weights are loaded into the model itself,
    so the model `fit` returns is the one that was tested.

    Args:
        name: a name from `AVERAGING`.
        ema_decay: the per-step decay d of "ema", in (0, 1).
    """

    def __init__(self, name: str, ema_decay: float = 0.99) -> None:
        self.factory = AVERAGING.get(name)
        _check_decay(ema_decay)
        self.name = name
        self.options = accepted_options(self.factory, {"ema_decay": ema_decay})
        self.averaged: AveragedModel | None = None

    def on_fit_start(self, state) -> None:
        self.averaged = self.factory(state.model, **self.options)
        if self.averaged is not None:
            state.eval_model = self.averaged

    def on_batch_end(self, state) -> None:
        if self.averaged is not None:
            self.averaged.update_parameters(state.model)

    def on_fit_end(self, state) -> None:
        if self.averaged is not None:
            state.model.load_state_dict(self.averaged.module.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """The running average (weights and count), saved in checkpoints for a resumed run."""
        return self.averaged.state_dict() if self.averaged is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.averaged is not None and state:
            self.averaged.load_state_dict(state)

    def __repr__(self) -> str:
        return f"ParameterAveraging({self.name!r}, {self.options})"
