"""Inside a recurrent layer (nn.RNN, nn.GRU, nn.LSTM): its states, their growth through time, its gates.

A recurrent layer is one fused module: its time steps and gates run inside one call, where
no hook reaches. What a probe reads from the outside (the layer's input, initial state and
output), and what it makes of it:

- the output sequence h_t (a tuple's first element; a PackedSequence's `.data`), over every
  sample and time step, with the hidden features as units: mean, std, histogram, and the
  kind of its state (`stats.recurrent_kind`): a ReLU RNN's units are dead when <= 0 at every
  step of every sample, as a ReLU's;
- `saturated_fraction`: the share of the cell's sigmoid and tanh outputs in their flat tails
  (sigmoid outside [0.01, 0.99], |tanh| > 0.99, docs/lectures.md §1), where the gradient
  through them is about 0. A tanh RNN's h_t = tanh(.) is that output. For a one-layer GRU or
  LSTM they are its gates and candidate, recomputed exactly from the layer's input and its own
  output sequence (`gate_preactivations`): an LSTM whose weights are too large saturates its
  gates while its state h = o * tanh(c) stays mostly inside ±0.99 (recurrent weights 50x the
  default on digits rows: 51% of the gate values saturated, 0.4% of h). A stacked GRU or LSTM
  (num_layers > 1) hides its inner layers' inputs, so its output state |h| > 0.99 stands in;
- `first_step_std`, `last_step_std`, `time_steps` for an unbounded state (ReLU RNN, LSTM with
  a projection): the std of the forward direction's state after the first step and after the
  last. A recurrence unrolled over T steps is a net T layers deep, and a state that grows by
  orders of magnitude from the first step to the last is the lectures' exploding activations
  (§3), in time instead of depth. A tanh-bounded state cannot explode: it saturates.

Not measured: an LSTM's cell state c. c_t = f * c_{t-1} + i * g with f, i in (0, 1) and
|g| < 1, so |c_T| < |c_0| + T: it grows at most linearly with the sequence, never
exponentially, and a large |c| acts through tanh(c) in h and the gates around it, which are
measured.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from babysit.watch.stats import SIGMOID_SATURATED, TANH_SATURATED

# |pre-activation| beyond which sigma(x) leaves [0.01, 0.99] (ln 99 = 4.595) and |tanh(x)| > 0.99 (atanh 0.99 = 2.647).
SIGMOID_TAIL = math.log((1 - SIGMOID_SATURATED) / SIGMOID_SATURATED)
TANH_TAIL = math.atanh(TANH_SATURATED)


@dataclass(slots=True)
class Sequence:
    """A recurrent layer's call, laid out time-major: rows of step 0 for every sample, then step 1, ...

    Args:
        h: (R, D * H_out) output states, R = the sum of `batch_sizes`.
        x: (R, input_size) inputs, or None when not needed.
        batch_sizes: (T,) samples still running at each step (all N for a padded batch), on the CPU.
        h0: (D, B, H_out) the last layer's initial state, rows in the order of step 0's rows, or None (zeros).
        last: the forward direction's state after each sample's last step.
    """

    h: Tensor
    x: Tensor | None
    batch_sizes: Tensor
    h0: Tensor | None
    last: Tensor


def states(output: Any) -> Tensor | None:
    """The output states of every sample and step as (rows, D * H_out), in the layer's own order (no copy when contiguous)."""
    out = output[0] if isinstance(output, tuple) else output
    if isinstance(out, PackedSequence):
        out = out.data
    if not isinstance(out, Tensor) or not out.is_floating_point():
        return None
    return out.reshape(-1, out.shape[-1]) if out.ndim != 2 else out


def sequence(module: nn.RNNBase, args: tuple, kwargs: dict, output: Any, with_input: bool) -> Sequence | None:
    """The call's states (and inputs when `with_input`) in time-major rows; None for an output not understood."""
    if not isinstance(output, tuple) or len(output) < 2:
        return None
    out, h_n = output[0], output[1]
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # an LSTM's (h_n, c_n)
    inp = args[0] if args else kwargs.get("input")
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    hx = hx[0] if isinstance(hx, tuple) else hx
    directions = 2 if module.bidirectional else 1
    if not isinstance(h_n, Tensor):
        return None
    last = h_n[-directions]  # the last layer's forward direction
    if isinstance(out, PackedSequence):
        x = inp.data if with_input and isinstance(inp, PackedSequence) else None
        h0 = None
        if hx is not None:
            h0 = hx[-directions:]
            if out.sorted_indices is not None:  # torch runs the samples sorted by length, and so do the rows
                h0 = h0.index_select(1, out.sorted_indices)
        return Sequence(out.data, x, out.batch_sizes, h0, last)
    if not isinstance(out, Tensor):
        return None
    if out.ndim == 2:  # an unbatched sequence (T, D * H_out): one sample
        h, x = out, inp if with_input else None
        h0 = hx[-directions:].unsqueeze(1) if hx is not None else None
        steps, samples = out.shape[0], 1
    else:
        first = module.batch_first
        h = (out.transpose(0, 1) if first else out).reshape(-1, out.shape[-1])
        x = ((inp.transpose(0, 1) if first else inp).reshape(-1, inp.shape[-1])) if with_input else None
        h0 = hx[-directions:] if hx is not None else None
        steps, samples = out.shape[1] if first else out.shape[0], out.shape[0] if first else out.shape[1]
    return Sequence(h, x, _uniform(steps, samples), h0, last)


@functools.lru_cache(maxsize=32)
def _uniform(steps: int, samples: int) -> Tensor:
    return torch.full((steps,), samples, dtype=torch.int64)


def first_step(seq: Sequence, hidden: int) -> Tensor:
    """The forward direction's state after the first step, for every sample."""
    return seq.h[: int(seq.batch_sizes[0]), :hidden]


def previous_rows(batch_sizes: Tensor, reverse: bool) -> Tensor:
    """For each time-major row, the row of the state it was computed from, in cat([h0, h]).

    Row r of step t and sample b (b < batch_sizes[t]; samples sorted by decreasing length, as
    torch packs them) follows row r - batch_sizes[t - 1] (step t - 1, the same sample), or h0's
    row b at t = 0. Running backwards, it follows step t + 1 of the same sample when that sample
    has one (b < batch_sizes[t + 1]), else h0's row b. Indices count h0's batch_sizes[0] rows first.
    """
    return _previous_rows(tuple(batch_sizes.tolist()), reverse)


@functools.lru_cache(maxsize=32)
def _previous_rows(batch_sizes: tuple[int, ...], reverse: bool) -> Tensor:
    sizes = torch.tensor(batch_sizes, dtype=torch.int64)
    start = torch.cumsum(sizes, 0) - sizes
    step = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    row = torch.arange(int(sizes.sum()))
    sample = row - start[step]
    head = int(sizes[0])
    if not reverse:
        before = sizes[(step - 1).clamp_min(0)]
        return torch.where(step > 0, head + row - before, sample)
    after = torch.cat([sizes[1:], torch.zeros(1, dtype=torch.int64)])[step]
    return torch.where(sample < after, head + row + sizes[step], sample)


@torch.no_grad()
def saturated_gates(module: nn.RNNBase, seq: Sequence) -> tuple[Tensor, int]:
    """How many of a one-layer GRU's or LSTM's gate and candidate values lie in their flat tails, and of how many.

    Recomputed from the layer's own weights, its input and its output states (torch's
    equations, https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html): an LSTM's
    i, f, o = sigma(.) and g = tanh(.) of W_ih x_t + b_ih + W_hh h_{t-1} + b_hh; a GRU's
    r, z = sigma(.) of the same sums and n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn)).
    A sigmoid is saturated beyond |pre-activation| > ln 99, a tanh beyond atanh(0.99).
    """
    out_size = seq.h.shape[1] // (2 if module.bidirectional else 1)
    hidden = module.hidden_size
    count = torch.zeros((), device=seq.h.device)
    total = 0
    for direction, suffix in enumerate(("", "_reverse")[: 2 if module.bidirectional else 1]):
        w_ih, w_hh = getattr(module, f"weight_ih_l0{suffix}"), getattr(module, f"weight_hh_l0{suffix}")
        h = seq.h[:, direction * out_size : (direction + 1) * out_size].to(w_hh.dtype)
        head = int(seq.batch_sizes[0])
        h0 = seq.h0[direction].to(w_hh.dtype) if seq.h0 is not None else h.new_zeros(head, out_size)
        before = torch.cat([h0, h]).index_select(0, previous_rows(seq.batch_sizes, reverse=direction == 1).to(h.device))
        gi = seq.x.to(w_ih.dtype) @ w_ih.T
        gh = before @ w_hh.T
        if module.bias:
            gi += getattr(module, f"bias_ih_l0{suffix}")
            gh += getattr(module, f"bias_hh_l0{suffix}")
        if module.mode == "LSTM":  # i, f, g, o
            pre = gi.add_(gh).abs_()
            count += (pre[:, : 2 * hidden] > SIGMOID_TAIL).sum() + (pre[:, 2 * hidden : 3 * hidden] > TANH_TAIL).sum()
            count += (pre[:, 3 * hidden :] > SIGMOID_TAIL).sum()
        else:  # GRU: r, z, n
            gates = gi[:, : 2 * hidden] + gh[:, : 2 * hidden]
            n = gi[:, 2 * hidden :] + torch.sigmoid(gates[:, :hidden]) * gh[:, 2 * hidden :]
            count += (gates.abs() > SIGMOID_TAIL).sum() + (n.abs() > TANH_TAIL).sum()
        total += gi.shape[0] * gi.shape[1]
    return count.float().reshape(1), total
