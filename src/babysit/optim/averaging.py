"""Parameter averaging for evaluation: Polyak (uniform) and EMA (docs/lectures.md §9).

"Polyak averaging: use a moving average of the parameters at test time." The
iterates of SGD bounce around a minimum; their average sits nearer its centre
and changes slowly, so validation accuracy measured on it is higher and
smoother. Both forms use torch's `AveragedModel` (with the batch-norm running
statistics averaged alongside the weights, `use_buffers=True`):

    polyak   w_avg_t = (1/t) * sum_{s<=t} w_s           (Polyak & Juditsky 1992)
    ema      w_avg_t = d_t * w_avg_{t-1} + (1 - d_t) * w_t,  d_t = min(d, (1 + t) / (10 + t))
             (window ~ 1/(1-d) steps once warmed up)

The EMA's decay warms up (as TensorFlow's ExponentialMovingAverage does with
`num_updates`): with a constant d = 0.99 the first iterate keeps a weight of d^t,
still 64% after 44 steps, so a short run (a `babysit doctor` look) evaluated a
copy of the barely trained first weights and read chance-level validation
accuracy; from about 900 steps on d_t is d itself.

Contract: `AVERAGING.get(name)(model, **options)` returns an `AveragedModel` (or
None for "none"); the `ParameterAveraging` callback updates it after every step,
makes `fit` evaluate it, and copies it into the model when training ends.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

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


def warm_ema_multi_avg_fn(decay: float):
    """The EMA update with a warming decay, d_t = min(d, (1 + t) / (10 + t)) after t updates (see the module docstring).

    The decay is computed on the averages' device from the update count, so no step waits for the device.
    """

    @torch.no_grad()
    def update(ema_params: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        n = num_averaged.to(torch.float32)
        weight = 1.0 - torch.clamp((1.0 + n) / (10.0 + n), max=decay)
        if torch.is_floating_point(ema_params[0]) or torch.is_complex(ema_params[0]):
            torch._foreach_lerp_(ema_params, current, [weight.to(ema_params[0].dtype)] * len(ema_params))
        else:  # integer buffers (batch norm's step count): as torch's own EMA does
            for a, c in zip(ema_params, current, strict=True):
                a.copy_(a * (1 - weight) + c * weight)

    return update


@AVERAGING.register("ema")
def ema(model: nn.Module, ema_decay: float = 0.99) -> AveragedModel:
    """Evaluate an exponential moving average of the iterates (decay d per step, warming up over the first steps)."""
    _check_decay(ema_decay)
    return AveragedModel(model, multi_avg_fn=warm_ema_multi_avg_fn(ema_decay), use_buffers=True)


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
