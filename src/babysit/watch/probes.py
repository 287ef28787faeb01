"""`watch`: per-layer probes through PyTorch's own hooks, in `fit` or in your own loop.

    with bs.watch(model, optimizer, preset="light") as w:
        for xb, yb in batches:
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()             # the step hooks finish each probed step's record
    w.records[0]["layers"]["1"]["act_std"], w.records[0]["params"]["0.weight"]["update_ratio"]

In `fit`, pass the watch as a callback; it attaches to the model and optimiser
being trained: `with bs.watch() as w: bs.fit(model, data, recipe, callbacks=[w])`.

Which hooks, and why these:
- forward hooks on every probed layer (Linear, Conv, norm layers, activation
  modules, attention, recurrent layers: `watch.layers`), installed only for the
  steps the schedule picks and removed after them, so an unprobed step pays
  nothing per layer. Only training-mode passes are measured (validation runs in
  eval mode between steps), the first one of the step for each layer;
- the optimiser's step pre-hook: gradient norms per parameter tensor (gradients
  are final there, also for shared parameters) and a copy of the weights;
- the optimiser's step post-hook: ‖W_after − W_before‖ / ‖W_before‖, the update
  ratio the lectures want near 1e-3 (docs/lectures.md §7), then the step's record
  is read back to the CPU in one transfer and handed to the sink.
Backward module hooks are not needed for any of these and would refuse in-place
activations, so none are installed.

A record (one per probed step) is the probes.jsonl line of docs/run-record.md:
{"step", "epoch", "layers": {name: {...}}, "params": {name: {"grad_norm",
"weight_norm", "update_ratio"}}}.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from babysit.errors import ConfigError
from babysit.watch.schedule import Schedule, make_schedule
from babysit.watch.layers import Measured, ProbedLayer, describe_layer, hook, measure_layer, probed_layers
from babysit.watch.stats import QUIET, Piece, read_back

Record = dict[str, Any]


class Watch:
    """Probes on one model (and optimiser); a context manager and a `fit` callback.

    Build it with `babysit.watch(...)`. Attributes: `records` (finished records,
    when no sink is given), `last` (the newest record), `step` (optimiser steps
    seen), `epoch` (1-based, set by `fit`; set it yourself in your own loop if
    you want it recorded).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        schedule: Schedule,
        sink: Callable[[Record], None] | None = None,
        bins: int = 20,
    ) -> None:
        if bins < 1:
            raise ConfigError(f"watch(bins=...) must be at least 1, got {bins}")
        self.model, self.optimizer = model, optimizer
        self.schedule, self.bins = schedule, bins
        self.records: list[Record] = []
        self._sink = sink if sink is not None else self.records.append
        self.last: Record | None = None
        self.step = 0
        self.epoch = 0
        self._layers: list[ProbedLayer] = []
        self._params: list[tuple[str, nn.Parameter]] = []
        self._handles: list[Any] = []  # optimiser step hooks, for as long as attached
        self._forward_handles: list[Any] = []  # forward hooks, only while a probed step runs
        self._pending: dict[str, Measured] = {}
        self._snapshot: _Snapshot | _HostSnapshot | None = None
        self._copies: dict[int, np.ndarray] = {}  # the host snapshot's weight copies, reused every probed step
        self._armed = False
        self._skipped = 0  # the step whose skipped iteration was recorded (once per step)

    # -- attaching and detaching ------------------------------------------------------

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *, step: int = 0) -> Watch:
        """Install the hooks on `model` (and `optimizer`), counting steps from `step`; replaces earlier ones."""
        self.close()
        self.model, self.optimizer, self.step = model, optimizer, step
        self._layers = probed_layers(model)
        trained = {id(p) for g in optimizer.param_groups for p in g["params"]} if optimizer is not None else None
        self._params = [(n, p) for n, p in model.named_parameters() if p.requires_grad and (trained is None or id(p) in trained)]
        if optimizer is not None:
            self._handles = [
                optimizer.register_step_pre_hook(self._before_step),
                optimizer.register_step_post_hook(self._after_step),
            ]
        self._arm()
        return self

    def close(self) -> None:
        """Remove every hook this watch installed (safe to call twice).

        Without an optimiser, a step still open (a forward pass measured but not
        yet ended with `end_step`) is finished first, so `with watch(model): model(x)`
        yields one record.
        """
        if self.optimizer is None and self._pending:
            self.end_step()
        self._disarm()
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._snapshot = None
        self._copies.clear()

    def __enter__(self) -> Watch:
        if self.model is not None:
            self.attach(self.model, self.optimizer, step=self.step)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fit callback -------------------------------------------------------------------

    def on_fit_start(self, state) -> None:
        self.attach(state.model, state.optimizer, step=state.step)

    def on_epoch_start(self, state) -> None:
        self.epoch = state.epoch + 1

    def on_fit_end(self, state) -> None:
        self.close()

    # -- steps -----------------------------------------------------------------------------

    def end_step(self) -> None:
        """Finish the current step: write its record if it was probed, then arm the next one.

        The optimiser's step post-hook calls this; call it yourself only when
        watching without an optimiser (e.g. forward passes at initialisation).
        """
        if self._armed:
            self._finish()
        self.step += 1
        self._arm()

    def skip_step(self) -> None:
        """Record the current step as skipped: a gradient scaler found inf/NaN gradients and did not call `optimizer.step()`.

        The step's forward passes are written once per step (`"skipped": true`: the layer
        that overflowed shows there) and the step count stays, since the next iteration
        is the same optimiser step again. `bs.record(..., scaler=...)` calls it.
        """
        if self._armed and self._pending and self._skipped != self.step + 1:
            self._skipped = self.step + 1
            self._snapshot = None
            self._finish(skipped=True)
        self._arm()

    def _arm(self) -> None:
        """Decide whether the next step is probed; forward hooks exist exactly while it is."""
        self._armed = bool(self.schedule(self.step + 1))
        if not self._armed and not self._forward_handles and not self._pending:  # most steps: nothing to undo
            return
        self._pending.clear()
        if self._armed and not self._forward_handles:
            self._forward_handles = [hook(layer, self._on_forward) for layer in self._layers]
        elif not self._armed:
            self._disarm()

    def _disarm(self) -> None:
        for handle in self._forward_handles:
            handle.remove()
        self._forward_handles = []
        self._pending.clear()
        self._armed = False

    def _on_forward(self, layer: ProbedLayer, args: tuple, kwargs: dict, output: Any) -> None:
        if not layer.module.training or layer.name in self._pending:
            return
        if (measured := measure_layer(layer, args, kwargs, output, self.bins)) is not None:
            self._pending[layer.name] = measured

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> tuple[tuple, dict] | None:
        if not self._armed:
            return None
        # torch passes the step's own arguments: (optimizer, closure?) and kwargs.
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            self._snapshot = self._take_snapshot()
            return None
        # step(closure) (Lightning, L-BFGS) computes this step's gradients inside the step: snapshot
        # after the closure's first call, which ran backward but has not moved the weights yet.
        def snapshot_after(*a: Any, **kw: Any) -> Any:
            loss = closure(*a, **kw)
            if self._snapshot is None:
                self._snapshot = self._take_snapshot()
            return loss

        self._snapshot = None
        if "closure" in kwargs:
            return args, {**kwargs, "closure": snapshot_after}
        return (args[0], snapshot_after, *args[2:]), kwargs

    def _take_snapshot(self) -> _Snapshot | _HostSnapshot:
        named = [(n, p) for n, p in self._params if p.grad is not None]
        if all(_on_host(p) for _, p in named):
            return _HostSnapshot.take(named, self._copies)
        return _Snapshot.take(named)

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.end_step()

    def _finish(self, skipped: bool = False) -> None:
        """Assemble the step's record from the device statistics, with one transfer to the CPU."""
        snapshot = self._snapshot
        if snapshot is None:  # no optimiser step: gradient and weight norms, no update
            snapshot = self._take_snapshot()
            norms = snapshot.norms(updated=False)
        else:
            norms = snapshot.norms(updated=True)
        values = read_back([piece for entry in self._pending.values() for piece in entry.pieces] + norms)

        record: Record = {"step": self.step + 1, "epoch": self.epoch, "layers": {}, "params": {}}
        if skipped:
            record["skipped"] = True
        i = 0
        for name, e in self._pending.items():
            size = e.size
            record["layers"][name] = describe_layer(e, values[i : i + size], self.bins)
            i += size
        k = len(snapshot.names)
        for j, name in enumerate(snapshot.names):
            grad_norm, weight_norm, update_norm = values[i + j], values[i + k + j], values[i + 2 * k + j]
            # ||dW|| / ||W|| is undefined for an all-zero tensor (e.g. a bias at its zero init).
            ratio = update_norm / weight_norm if weight_norm > 0 else math.nan
            record["params"][name] = {"grad_norm": grad_norm, "weight_norm": weight_norm, "update_ratio": ratio}
        self._pending.clear()
        self._snapshot = None
        self.last = record
        self._sink(record)

    def __repr__(self) -> str:
        attached = type(self.model).__name__ if self.model is not None else "nothing"
        return (
            f"Watch(schedule={self.schedule!r}, on={attached}, layers={len(self._layers)}, "
            f"params={len(self._params)}, step={self.step}, records={len(self.records)})"
        )


class _Snapshot:
    """Gradient norms and a copy of the weights, taken just before the optimiser step.

    Every piece is one fused foreach call however many tensors there are: the
    gradient norms and the copy before the step, the updates and both norms after
    it. On a small model the cost of a probe is the number of calls, not their
    arithmetic.
    """

    def __init__(self, names: list[str], params: list[Tensor], grad_norms: tuple[Tensor, ...], before: tuple[Tensor, ...]) -> None:
        self.names, self.params, self.grad_norms, self.before = names, params, grad_norms, before

    @classmethod
    @torch.no_grad()
    def take(cls, named: list[tuple[str, nn.Parameter]]) -> _Snapshot:
        params = [p for _, p in named]
        if not params:
            return cls([], [], (), ())
        # A sparse gradient (nn.Embedding(sparse=True)) has no norm kernel: densified here only.
        grads = [p.grad.to_dense() if p.grad.is_sparse else p.grad for p in params]
        grad_norms = torch._foreach_norm(grads, dtype=torch.float32)
        before = torch._foreach_mul(params, 1.0)  # a copy of every weight in one call (x * 1 is x)
        return cls([n for n, _ in named], params, grad_norms, before)

    @torch.no_grad()
    def norms(self, updated: bool) -> list[Piece]:
        """Pieces for `read_back`: [grad norms..., weight norms..., update norms...] (updates NaN when no step was taken)."""
        if not self.params:
            return []
        if not updated:
            weights = torch._foreach_norm(self.before, dtype=torch.float32)
            return [torch.stack((*self.grad_norms, *weights)), [math.nan] * len(self.params)]
        updates = torch._foreach_sub(self.params, self.before)
        return [torch.stack((*self.grad_norms, *torch._foreach_norm((*self.before, *updates), dtype=torch.float32)))]


def _on_host(p: nn.Parameter) -> bool:
    """Whether numpy can read this parameter and its gradient in place: dense float32/float64 on the CPU."""
    g = p.grad
    return p.device.type == "cpu" and p.dtype in _HOST_DTYPES and g.layout == torch.strided and g.dtype == p.dtype and g.device.type == "cpu"


_HOST_DTYPES = (torch.float32, torch.float64)


class _HostSnapshot:
    """`_Snapshot` on the CPU: numpy calls on views of the weights and gradients, the copy into buffers kept across steps.

    On the CPU a foreach call is a loop of per-tensor torch calls, each costing more
    than its arithmetic on a small model; a numpy call on a view costs a fraction of
    one, and a buffer reused every probed step saves an allocation per weight.
    """

    def __init__(self, names: list[str], params: list[nn.Parameter], grad_norms: list[float], before: list[np.ndarray]) -> None:
        self.names, self.params, self.grad_norms, self.before = names, params, grad_norms, before

    @classmethod
    @QUIET
    def take(cls, named: list[tuple[str, nn.Parameter]], copies: dict[int, np.ndarray]) -> _HostSnapshot:
        before = []
        for _, p in named:
            w = p.detach().numpy()
            copy = copies.get(id(p))
            if copy is None or copy.shape != w.shape or copy.dtype != w.dtype:
                copy = copies[id(p)] = np.empty_like(w)
            np.copyto(copy, w)
            before.append(copy)
        grad_norms = [_host_norm(p.grad.detach().numpy()) for _, p in named]
        return cls([n for n, _ in named], [p for _, p in named], grad_norms, before)

    @QUIET
    def norms(self, updated: bool) -> list[Piece]:
        """As `_Snapshot.norms`, as host floats."""
        weights = [_host_norm(b) for b in self.before]
        if not updated:
            return [self.grad_norms + weights + [math.nan] * len(self.before)]
        # The weights are read again: an optimiser may have given a parameter new storage.
        updates = [_host_norm(np.subtract(p.detach().numpy(), b, out=b)) for p, b in zip(self.params, self.before)]
        return [self.grad_norms + weights + updates]


def _host_norm(a: np.ndarray) -> float:
    """The L2 norm of an array; the sum of squares in float64 when float32's overflows (or a value is not finite)."""
    v = a.reshape(-1)
    squares = float(np.dot(v, v))
    if math.isfinite(squares):
        return math.sqrt(squares)
    v = v.astype(np.float64)
    return math.sqrt(float(np.dot(v, v)))


def watch(
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    preset: str | None = None,
    every: int | Schedule | None = None,
    sink: Callable[[Record], None] | None = None,
    bins: int = 20,
) -> Watch:
    """Watch a network's layers while it trains; use it as `with watch(model, optimizer) as w:`.

    Args:
        model: the network; leave it out when passing the watch to `fit` as a
            callback (it attaches to the model and optimiser `fit` trains).
        optimizer: its optimiser; the step hooks count steps, measure gradient
            norms and update ratios. Without one, call `w.end_step()` yourself
            (or let the `with` block end) to close a step.
        preset: 'off', 'light' (default) or 'full' (every step); see `PROBE_PRESETS`.
        every: instead of a preset, probe every `every` steps or when `every(step)` is true.
        sink: called with each finished record (e.g. a JSON-lines writer); by
            default records accumulate in `w.records`.
        bins: histogram bins per layer.

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        >>> with watch(net) as w:
        ...     _ = net(torch.randn(32, 8))
        >>> sorted(w.records[0]["layers"])
        ['0', '1']
    """
    return Watch(model, optimizer, schedule=make_schedule(preset, every), sink=sink, bins=bins)
