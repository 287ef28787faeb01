"""Which modules a probe measures, and what it reads from each one's output.

`bs.watch` (during training) and the preflight initialisation check both pick their
layers with `probed_layers` and measure them with `measure_layer` / `describe_layer`,
so they see the same layers and count the same way.

Contract: `probed_layers(model) -> [ProbedLayer]` in module order; a forward hook
installed with `hook(layer, fn)` calls `fn(layer, args, kwargs, output)`;
`measure_layer(layer, args, kwargs, output, bins)` reduces the output to a `Measured`
(None when there is nothing to measure), whose `read_back` values `describe_layer`
turns into the layer's dict of docs/run-record.md.

Inside fused modules:
- recurrent layers (nn.RNN, nn.GRU, nn.LSTM return a tuple): their states, their growth
  through time and their gates (`watch.recurrent`);
- nn.MultiheadAttention returns (attention output, weights): its attention output is measured;
- a transformer layer (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer) calls its
  attention, feed-forward Linear layers and norms as modules in training mode, so each is
  measured; its activation is a function (F.relu by default), which no hook sees, so its
  first feed-forward Linear (linear1) is measured as the ReLU's input ('pre_relu'): a unit
  (one of dim_feedforward features) whose input is <= 0 at every position of every sample
  outputs 0 with a zero gradient there, the lectures' dead ReLU, exactly. Units of a
  transformer's feed-forward are its last dimension (a (N, T, F) output has F units).
  In evaluation mode the layer takes a fused fast path that calls none of its submodules
  (while no hook is attached); probes measure training passes only, so this loses nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from babysit.watch import recurrent
from babysit.watch.stats import Piece, describe, is_activation, layer_kind, measure, piece_size

TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
_FUNCTIONAL_RELU = (F.relu, torch.relu)


@dataclass(frozen=True, slots=True)
class ProbedLayer:
    """A module a probe measures.

    Args:
        name: its qualified name (the class name for the root module).
        module: the module.
        kind: how its output is measured (`stats.layer_kind`, or 'pre_relu').
        units_last: its units are the output's last dimension (a transformer's feed-forward), not dim 1.
        activation: it is a nonlinearity (`is_activation`): its output is one of the activations the lectures plot.
    """

    name: str
    module: nn.Module
    kind: str
    units_last: bool = False
    activation: bool = False

    @property
    def recurrent(self) -> bool:
        return isinstance(self.module, nn.RNNBase)


def probed_layers(model: nn.Module) -> list[ProbedLayer]:
    """Every module of `model` a probe measures, in module order."""
    relu_inputs: set[int] = set()  # a transformer's linear1 when its activation is F.relu
    units_last: set[int] = set()  # a transformer's feed-forward layers
    for m in model.modules():
        if isinstance(m, TRANSFORMER_LAYERS):
            activation = getattr(m, "activation", None)
            units_last |= {id(m.linear1), id(m.linear2)} | ({id(activation)} if isinstance(activation, nn.Module) else set())
            if any(activation is f for f in _FUNCTIONAL_RELU):
                relu_inputs.add(id(m.linear1))
    found = []
    for name, m in model.named_modules():
        activation = is_activation(m)
        kind = "pre_relu" if id(m) in relu_inputs else (layer_kind(m) or ("plain" if activation else None))
        if kind is not None:
            found.append(ProbedLayer(name or type(m).__name__, m, kind, id(m) in units_last, activation))
    return found


def hook(layer: ProbedLayer, fn: Callable[[ProbedLayer, tuple, dict, Any], None]) -> RemovableHandle:
    """A forward hook on `layer.module` calling `fn(layer, args, kwargs, output)`; remove it with `.remove()`.

    Only a recurrent layer needs its keyword arguments (an initial state passed as `hx=`);
    the others get an empty dict, which keeps torch's cheaper hook call.
    """
    if layer.recurrent:
        return layer.module.register_forward_hook(lambda m, args, kwargs, out: fn(layer, args, kwargs, out), with_kwargs=True)
    return layer.module.register_forward_hook(functools.partial(_without_kwargs, fn, layer))


def _without_kwargs(fn: Callable[[ProbedLayer, tuple, dict, Any], None], layer: ProbedLayer, module: nn.Module, args: tuple, output: Any) -> None:
    fn(layer, args, _NO_KWARGS, output)


_NO_KWARGS: dict = {}


@dataclass(slots=True)
class Measured:
    """One layer output reduced by `measure_layer`: its `measure` pieces, plus a recurrent layer's extra values."""

    type_name: str
    kind: str
    numel: int
    pieces: tuple[Piece, ...]
    extra: dict[str, Any] | None = None  # a recurrent layer's: which values follow the pieces (see describe_layer)
    half: str | None = None  # "float16" or "bfloat16" for a half-precision output (autocast): its non-finite count follows the pieces
    activation: bool = False  # the layer is a nonlinearity (`is_activation`)

    @property
    def size(self) -> int:
        """How many values `read_back` makes of the pieces."""
        return sum(piece_size(p) for p in self.pieces)


def measure_layer(layer: ProbedLayer, args: tuple, kwargs: dict, output: Any, bins: int) -> Measured | None:
    """Reduce one layer's output (`stats.measure`); None when it holds no floating-point tensor."""
    if layer.recurrent:
        return _measure_recurrent(layer, args, kwargs, output, bins)
    y = output[0] if type(output) is tuple and output else output  # nn.MultiheadAttention: (attention output, weights)
    if not isinstance(y, Tensor) or not y.is_floating_point():
        return None
    if layer.units_last and y.ndim > 2:
        y = y.reshape(-1, y.shape[-1])
    pieces = measure(y, layer.kind, bins)
    half = HALF.get(y.dtype)
    if half is None:
        return Measured(type(layer.module).__name__, layer.kind, y.numel(), pieces, activation=layer.activation)
    return Measured(type(layer.module).__name__, layer.kind, y.numel(), (*pieces, nonfinite_count(y, pieces)), half=half, activation=layer.activation)


# Half-precision outputs (what autocast makes of Linear, Conv, matmul): float16 overflows past 65504, where float32
# and bfloat16 go to 3.4e38, so its non-finite values are counted (`diagnose.precision_rules` names the layer).
HALF = {torch.float16: "float16", torch.bfloat16: "bfloat16"}


def nonfinite_count(y: Tensor, pieces: tuple[Piece, ...]) -> Piece:
    """How many values of a layer output are inf or NaN, as a `read_back` piece of one value.

    On the CPU the moments `measure` already took say whether there is any (a finite sum
    and sum of squares hold none), so the count costs a pass only when there is; on an
    accelerator it is one more reduction on the device, read back with the others.
    """
    if y.device.type != "cpu":
        return (~torch.isfinite(y.detach().reshape(-1))).sum(0, keepdim=True).float()
    moments = pieces[0]
    if math.isfinite(moments[0]) and math.isfinite(moments[1]):
        return [0.0]
    return [float((~torch.isfinite(y.detach())).sum())]


def describe_layer(measured: Measured, values: list[float], bins: int) -> dict[str, Any]:
    """The layer's JSON-ready statistics (docs/run-record.md) from `read_back` of its pieces."""
    extra = measured.extra
    size = len(values) - (len(extra["names"]) if extra else 0) - (1 if measured.half else 0)
    out = {"type": measured.type_name, **describe(values[:size], measured.kind, measured.numel, bins)}
    if measured.activation:
        out["activation"] = True  # what the diagnosis and the report's activation plots pick, whatever the class is called
    if measured.half:
        out["dtype"] = measured.half
        out["nonfinite_fraction"] = values[size] / max(measured.numel, 1)
    if extra:
        found = dict(zip(extra["names"], values[size:]))
        if "saturated" in found:  # a one-layer GRU's or LSTM's gates replace its state's |h| > 0.99
            out["saturated_fraction"] = found["saturated"] / extra["gate_values"] if extra["gate_values"] else float("nan")
        if "first_step_std" in found:
            out.update(first_step_std=found["first_step_std"], last_step_std=found["last_step_std"], time_steps=extra["time_steps"])
    return out


def _measure_recurrent(layer: ProbedLayer, args: tuple, kwargs: dict, output: Any, bins: int) -> Measured | None:
    module: nn.RNNBase = layer.module  # type: ignore[assignment]
    h = recurrent.states(output)
    if h is None:
        return None
    pieces = measure(h, layer.kind, bins)
    gated = module.mode in ("LSTM", "GRU") and module.num_layers == 1
    unbounded = layer.kind != "tanh"
    if not (gated or unbounded):
        return Measured(type(module).__name__, layer.kind, h.numel(), pieces)
    seq = recurrent.sequence(module, args, kwargs, output, with_input=gated)
    if seq is None or (gated and seq.x is None):
        return Measured(type(module).__name__, layer.kind, h.numel(), pieces)
    names: list[str] = []
    extra: list[Tensor] = []
    info: dict[str, Any] = {"names": names}
    if gated:
        count, total = recurrent.saturated_gates(module, seq)
        names.append("saturated")
        extra.append(count)
        info["gate_values"] = total
    if unbounded:
        hidden = h.shape[1] // (2 if module.bidirectional else 1)
        first, last = recurrent.first_step(seq, hidden).detach().float(), seq.last.detach().float()
        names += ["first_step_std", "last_step_std"]
        extra += [first.std(unbiased=False).reshape(1), last.std(unbiased=False).reshape(1)]
        info["time_steps"] = len(seq.batch_sizes)
    return Measured(type(module).__name__, layer.kind, h.numel(), (*pieces, torch.cat(extra).float()), info)
