"""The four architectures of the program-bug family, each with the model-level bugs as switches.

Every net is `head(features(x))`: `head` is the last `nn.Linear`, everything else
is the body (what the head-only, detached, frozen and no-grad bugs cut off).
`Switches` holds the model-level bugs; all off is the healthy net.

- `MLP`: flatten, Linear 64 + BatchNorm + ReLU + Dropout, Linear 64 + ReLU, head.
- `ConvNet`: two conv blocks (conv, BatchNorm, ReLU; the second keeps the
  channels), max pooling, global average pooling, head; Conv1d on MNIST-1D's
  (1, 40), Conv2d on digits' (1, 8, 8).
- `GRUNet`: a GRU over a sequence view of the input (MNIST-1D as 10 steps of 4
  values, digits as 8 rows x 8), the last hidden state to the head.
- `TransformerNet`: a linear patch embedding (MNIST-1D as 10 patches of 4,
  digits as 8 rows of 8) plus a learned positional embedding, a 2-layer
  `nn.TransformerEncoder`, mean over tokens, head.
  (The GRU reads MNIST-1D as patches too: as 40 steps x 1 it reached 10-34%
  validation accuracy in the benchmark's 12 epochs, as 10 patches 28-43%, seeds 0-3.)

The sequence nets take a `layout`: "batch_first" (the module is built with
`batch_first=True` and fed (N, T, F)) or "permute" (the module keeps torch's
default (T, N, F) and forward permutes). The layout bugs break exactly one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

ARCHS = ("mlp", "convnet", "gru", "transformer")
SEQUENCE = ("gru", "transformer")
WIDTH = 64


@dataclass(frozen=True)
class Switches:
    """Model-level bugs (all False / "" is the healthy net).

    Args:
        detach: the body's output is `.detach()`ed before the head.
        no_grad: the body runs under `torch.no_grad()` (code copied from an inference helper).
        skip: a layer defined in `__init__` is never called in forward (the convnet's
            second block, the transformer's encoder; the MLP's second layer, although
            the benchmark does not use it: one hidden layer learns these sets as well).
        softmax: the model ends with `nn.Softmax` (scores are probabilities).
        layout_bug: "view" (`x.view(T, N, F)` where `permute` was meant) or
            "batch_first" (a batch_first=False module fed (N, T, F)).
    """

    detach: bool = False
    no_grad: bool = False
    skip: bool = False
    softmax: bool = False
    layout_bug: str = ""


def sequence_shape(input_shape: tuple[int, ...], arch: str) -> tuple[int, int]:
    """(steps, features) of the sequence view a sequence net reads."""
    if len(input_shape) == 3:  # digits (1, 8, 8): 8 rows of 8 pixels
        return input_shape[1], input_shape[2]
    length = math.prod(input_shape)
    if length % 4 == 0:  # MNIST-1D (1, 40): 10 patches of 4
        return length // 4, 4
    return length, 1


class _Net(nn.Module):
    """The shared forward: features, then the model-level bugs around the head."""

    head: nn.Linear

    def __init__(self, switches: Switches) -> None:
        super().__init__()
        self.switches = switches

    def features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if self.switches.no_grad:
            with torch.no_grad():  # BUG: the body never gets a gradient
                h = self.features(x)
        else:
            h = self.features(x)
        if self.switches.detach:
            h = h.detach()  # BUG: the body gets no gradient
        scores = self.head(h)
        if self.switches.softmax:
            scores = self.out(scores)  # BUG: probabilities reach the cross-entropy
        return scores

    def _softmax_out(self) -> None:
        if self.switches.softmax:
            self.out = nn.Softmax(dim=1)


class MLP(_Net):
    def __init__(self, input_shape: tuple[int, ...], classes: int, switches: Switches = Switches(), dropout: float = 0.3) -> None:
        super().__init__(switches)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(math.prod(input_shape), WIDTH)
        self.bn1, self.act1 = nn.BatchNorm1d(WIDTH), nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.fc2, self.act2 = nn.Linear(WIDTH, WIDTH), nn.ReLU()
        self.head = nn.Linear(WIDTH, classes)
        self._softmax_out()

    def features(self, x: Tensor) -> Tensor:
        h = self.drop(self.act1(self.bn1(self.fc1(self.flatten(x)))))
        if not self.switches.skip:  # BUG when skipped: fc2 is defined and never called
            h = self.act2(self.fc2(h))
        return h


class ConvNet(_Net):
    def __init__(self, input_shape: tuple[int, ...], classes: int, switches: Switches = Switches(), channels: int = 32) -> None:
        super().__init__(switches)
        two_d = len(input_shape) == 3
        conv, norm, self.pool = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d(2)) if two_d else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d(2))
        self.conv1, self.bn1, self.act1 = conv(input_shape[0], channels, 3, padding=1), norm(channels), nn.ReLU()
        self.conv2, self.bn2, self.act2 = conv(channels, channels, 3, padding=1), norm(channels), nn.ReLU()
        self.head = nn.Linear(channels, classes)
        self._softmax_out()

    def features(self, x: Tensor) -> Tensor:
        h = self.pool(self.act1(self.bn1(self.conv1(x))))
        if not self.switches.skip:  # BUG when skipped: conv2 and bn2 are defined and never called
            h = self.pool(self.act2(self.bn2(self.conv2(h))))
        return h.flatten(2).mean(2)


class _Sequence(_Net):
    """What the two sequence nets share: the (N, T, F) view and the layout."""

    def __init__(self, input_shape: tuple[int, ...], arch: str, layout: str, switches: Switches) -> None:
        super().__init__(switches)
        if layout not in ("batch_first", "permute"):
            raise ValueError(f"layout must be 'batch_first' or 'permute', got {layout!r}")
        self.steps, self.feats = sequence_shape(input_shape, arch)
        self.layout = layout
        # The module's own layout: the missing-batch_first bug builds it with torch's default.
        self.module_batch_first = layout == "batch_first" and switches.layout_bug != "batch_first"

    def sequence(self, x: Tensor) -> Tensor:
        """(N, *input_shape) -> (N, T, F), or (T, N, F) for a module built without batch_first."""
        n = x.shape[0]
        seq = x.reshape(n, self.steps, self.feats)
        if self.module_batch_first or self.switches.layout_bug == "batch_first":
            return seq  # the batch_first bug feeds (N, T, F) to a (T, N, F) module
        if self.switches.layout_bug == "view":
            return seq.view(self.steps, n, self.feats)  # BUG: permute was meant; examples are mixed
        return seq.permute(1, 0, 2)

    def time_axis(self) -> int:
        """The axis the module's output keeps time on, as the author of forward believes it."""
        return 1 if self.layout == "batch_first" else 0


class GRUNet(_Sequence):
    def __init__(self, input_shape: tuple[int, ...], classes: int, switches: Switches = Switches(), layout: str = "batch_first") -> None:
        super().__init__(input_shape, "gru", layout, switches)
        self.gru = nn.GRU(self.feats, WIDTH, batch_first=self.module_batch_first)
        self.head = nn.Linear(WIDTH, classes)
        self._softmax_out()

    def features(self, x: Tensor) -> Tensor:
        out, _ = self.gru(self.sequence(x))
        return out[:, -1] if self.time_axis() == 1 else out[-1]


class TransformerNet(_Sequence):
    def __init__(self, input_shape: tuple[int, ...], classes: int, switches: Switches = Switches(), layout: str = "batch_first") -> None:
        super().__init__(input_shape, "transformer", layout, switches)
        d = 32
        self.embed = nn.Linear(self.feats, d)
        self.pos = nn.Parameter(torch.randn(self.steps, d) * 0.1)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=self.module_batch_first)
        # enable_nested_tensor=False: the nested-tensor fast path warns on every construction and only
        # serves padded batches at inference; it changes no number here.
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)
        self._softmax_out()

    def features(self, x: Tensor) -> Tensor:
        h = self.embed(self.sequence(x)) + (self.pos if self.time_axis() == 1 else self.pos.unsqueeze(1))
        if not self.switches.skip:  # BUG when skipped: self.encoder is defined and never called
            h = self.encoder(h)
        return h.mean(dim=self.time_axis())


def build(arch: str, input_shape: tuple[int, ...], classes: int, switches: Switches = Switches(), layout: str = "batch_first") -> _Net:
    """The architecture `arch` for data of `input_shape` with `classes` scores, with its model-level bugs."""
    if arch == "mlp":
        return MLP(input_shape, classes, switches)
    if arch == "convnet":
        return ConvNet(input_shape, classes, switches)
    if arch == "gru":
        return GRUNet(input_shape, classes, switches, layout)
    if arch == "transformer":
        return TransformerNet(input_shape, classes, switches, layout)
    raise ValueError(f"unknown architecture {arch!r}; one of {ARCHS}")
