"""Built-in networks assembled from named blocks, for the demo, the tests and the lab.

Contract: a builder in `MODELS` is `builder(input_shape, num_classes, **options) ->
nn.Module` mapping (N, *input_shape) to (N, num_classes) scores. Any user
`nn.Module` works everywhere a built-in one does; these exist so that a network
from the lectures' blocks is one line or one config key away.

Block order follows the lectures: affine -> batch norm -> activation -> dropout
(docs/lectures.md §4: BN after FC/conv, before the nonlinearity; the affine
layer's bias is then redundant and dropped). With `activation="maxout"` the
affine layer outputs `pieces` x width values and Maxout keeps the max of each
group, so a hidden size is always the number of units after the activation.

`dropout` is the probability of dropping a unit (torch's convention); the
lectures' keep probability is p = 1 - dropout, and `dropout_kind` picks inverted
(default) or vanilla dropout from `DROPOUTS`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from babysit.errors import ConfigError
from babysit.nn.activations import ACTIVATIONS, make_activation, pieces_of
from babysit.nn.init import apply_init
from babysit.nn.regularize import DROPOUTS, DropConnect, DropPath, FractionalMaxPool
from babysit.nn.script import build_from_script
from babysit.registry import Registry, accepted_options, check_options

MODELS: Registry = Registry("model")


def _check_options(activation: str, dropout: float, dropout_kind: str) -> None:
    ACTIVATIONS.get(activation)  # fail early with a suggestion on a typo
    DROPOUTS.get(dropout_kind)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout is the probability of dropping a unit and must be in [0, 1), got {dropout}")


def _block(affine, width: int, norm, activation: nn.Module, dropout: nn.Module | None) -> list[nn.Module]:
    """[affine(pieces*width), (norm), activation, (dropout)]: `affine(n)` and `norm(n)` build layers of n outputs."""
    n = width * pieces_of(activation)
    layers = [affine(n)]
    if norm is not None:
        layers.append(norm(n))
    layers.append(activation)
    if dropout is not None:
        layers.append(dropout)
    return layers


def _maybe_dropconnect(layer: nn.Module, drop: float) -> nn.Module:
    return DropConnect(layer, drop) if drop > 0 else layer


def _head(features: nn.Module, input_shape: Sequence[int], num_classes: int, pool: str, dims: int) -> list[nn.Module]:
    """Global average pooling ("gap") or flattening ("flatten") of `features`' output, then a linear layer to the classes."""
    if pool not in POOLS:
        raise ConfigError(f"model.pool must be one of {', '.join(POOLS)}, got {pool!r}")
    was = features.training
    features.eval()
    with torch.no_grad():  # the feature map's shape, whatever the strides and poolings did
        shape = features(torch.zeros(1, *input_shape)).shape[1:]
    features.train(was)
    if pool == "gap":
        return [(nn.AdaptiveAvgPool1d if dims == 1 else nn.AdaptiveAvgPool2d)(1), nn.Flatten(), nn.Linear(shape[0], num_classes)]
    return [nn.Flatten(), nn.Linear(shape.numel(), num_classes)]


POOLS = ("flatten", "gap")
DOWNSAMPLES = ("stride", "fmp")


@MODELS.register("mlp")
def mlp(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    hidden: Sequence[int] = (100, 100),
    activation: str = "relu",
    init: str = "he",
    bias: float = 0.0,
    batchnorm: bool = False,
    dropout: float = 0.0,
    slope: float = 0.01,
    alpha: float = 1.0,
    pieces: int = 2,
    init_std: float | None = None,
    dropout_kind: str = "inverted",
    dropconnect: float = 0.0,
) -> nn.Sequential:
    """Fully connected net: flatten, then [linear, (bn), activation, (dropout)] per hidden layer, then a linear head.

    Args:
        hidden: units per hidden layer.
        activation: a name from `ACTIVATIONS`; `slope` (leaky_relu), `alpha` (elu)
            and `pieces` (maxout) go to the activations that take them.
        init, bias, init_std: weight scheme from `INITS`, bias constant, std for small/normal.
        batchnorm: batch norm after each hidden affine layer.
        dropout, dropout_kind: drop probability (keep p = 1 - dropout) and "inverted"/"vanilla".
        dropconnect: probability of dropping each weight of the hidden layers (`DropConnect`), 0 for none.
    """
    _check_options(activation, dropout, dropout_kind)
    act = {"slope": slope, "alpha": alpha, "pieces": pieces}
    width = 1
    for d in input_shape:
        width *= int(d)
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += _block(
            lambda n, w=width: _maybe_dropconnect(nn.Linear(w, n, bias=not batchnorm), dropconnect),
            h,
            nn.BatchNorm1d if batchnorm else None,
            make_activation(activation, **accepted_options(ACTIVATIONS.get(activation), act)),
            DROPOUTS.get(dropout_kind)(1.0 - dropout) if dropout > 0 else None,
        )
        width = h
    layers.append(nn.Linear(width, num_classes))
    return apply_init(nn.Sequential(*layers), init, bias, init_std)


@MODELS.register("convnet")
def convnet(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    channels: Sequence[int] = (32, 32, 32),
    kernel_size: int = 3,
    activation: str = "relu",
    init: str = "he",
    bias: float = 0.0,
    batchnorm: bool = False,
    dropout: float = 0.0,
    slope: float = 0.01,
    alpha: float = 1.0,
    pieces: int = 2,
    init_std: float | None = None,
    dropout_kind: str = "inverted",
    depth: int = 1,
    pool: str = "flatten",
    downsample: str = "stride",
) -> nn.Sequential:
    """Small convnet for (C, L) or (C, H, W) inputs: stages of [conv, (bn), activation, (dropout)] blocks, then a linear head.

    Options as in `mlp`; `channels` are the output channels per stage and
    dropout drops whole channels (torch's Dropout1d/2d, or vanilla per channel).

    Args:
        depth: conv blocks per stage: the first halves the size, the other depth - 1 keep it (stride 1),
            the VGG pattern of more layers at each resolution.
        pool: "flatten" feeds the whole last map to the head; "gap" averages it over positions first
            (global average pooling: fewer parameters, shift-invariant).
        downsample: "stride" (stride-2 convs) or "fmp" (stride-1 conv then fractional max pooling by
            sqrt(2), random regions in training, averaged at test; Graham 2014).
    """
    _check_options(activation, dropout, dropout_kind)
    if depth < 1:
        raise ConfigError(f"model.depth is the number of conv layers per stage and must be at least 1, got {depth}")
    if downsample not in DOWNSAMPLES:
        raise ConfigError(f"model.downsample must be one of {', '.join(DOWNSAMPLES)}, got {downsample!r}")
    if len(input_shape) not in (2, 3):
        raise ConfigError(
            f"convnet needs inputs shaped (channels, length) or (channels, height, width), got {tuple(input_shape)}; "
            "use model.name = 'mlp' for flat features"
        )
    dims = len(input_shape) - 1
    conv, bn = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    act = {"slope": slope, "alpha": alpha, "pieces": pieces}
    c_in = int(input_shape[0])
    layers: list[nn.Module] = []
    for c_out in channels:
        for layer in range(depth):
            # Stride 2 halves each spatial size (padding k//2): out = floor((s - 1) / 2) + 1.
            stride = 2 if layer == 0 and downsample == "stride" else 1
            layers += _block(
                lambda n, c=c_in, st=stride: conv(c, n, kernel_size, stride=st, padding=kernel_size // 2, bias=not batchnorm),
                c_out,
                bn if batchnorm else None,
                make_activation(activation, **accepted_options(ACTIVATIONS.get(activation), act)),
                DROPOUTS.get(dropout_kind)(1.0 - dropout, spatial=dims) if dropout > 0 else None,
            )
            if layer == 0 and downsample == "fmp":
                layers.append(FractionalMaxPool())
            c_in = c_out
    features = nn.Sequential(*layers)
    return apply_init(nn.Sequential(*layers, *_head(features, input_shape, num_classes, pool, dims)), init, bias, init_std)


class ResidualBlock(nn.Module):
    """x -> act(x' + drop_path(norm(conv(act(norm(conv(x))))))), x' = x or a 1x1 projection when the shape changes (He 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dims: int, norm: str, kernel_size: int, activation: nn.Module, drop_path: float) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        pad = kernel_size // 2
        self.branch = nn.Sequential(
            conv(c_in, c_out, kernel_size, stride=stride, padding=pad, bias=False),
            _norm(norm, c_out, dims),
            activation,
            conv(c_out, c_out, kernel_size, padding=pad, bias=False),
            _norm(norm, c_out, dims),
        )
        shortcut = stride != 1 or c_in != c_out
        self.shortcut = nn.Sequential(conv(c_in, c_out, 1, stride=stride, bias=False), _norm(norm, c_out, dims)) if shortcut else nn.Identity()
        self.drop_path = DropPath(drop_path)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.shortcut(x) + self.drop_path(self.branch(x)))


NORMS = ("bn", "ln")


def _norm(kind: str, channels: int, dims: int) -> nn.Module:
    # "ln": LayerNorm over (C, *spatial) of each sample, which is GroupNorm with one group.
    if kind == "bn":
        return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(channels)
    return nn.GroupNorm(1, channels)


@MODELS.register("resnet")
def resnet(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    channels: Sequence[int] = (32, 64, 128),
    depth: int = 1,
    kernel_size: int = 3,
    activation: str = "relu",
    init: str = "he",
    norm: str = "bn",
    drop_path: float = 0.0,
) -> nn.Sequential:
    """Small residual net for (C, L) or (C, H, W) inputs: a conv stem, `depth` residual blocks per stage, global average pooling, a linear head.

    Args:
        channels: output channels per stage; every stage after the first starts with stride 2.
        depth: residual blocks per stage.
        norm: "bn" (batch norm) or "ln" (layer norm: no batch statistics, same in training and test).
        drop_path: stochastic depth: the probability of skipping each residual branch for a sample in
            training, rising linearly from 0 at the first block to this value at the last (Huang 2016).
    """
    ACTIVATIONS.get(activation)
    if len(input_shape) not in (2, 3):
        raise ConfigError(f"resnet needs inputs shaped (channels, length) or (channels, height, width), got {tuple(input_shape)}; use model.name = 'mlp'")
    if norm not in NORMS:
        raise ConfigError(f"model.norm must be one of {', '.join(NORMS)} (batch or layer norm), got {norm!r}")
    if depth < 1 or not 0.0 <= drop_path < 1.0:
        raise ConfigError(f"resnet needs model.depth >= 1 and model.drop_path in [0, 1), got {depth} and {drop_path}")
    dims = len(input_shape) - 1
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    c_in = int(input_shape[0])
    layers: list[nn.Module] = [conv(c_in, channels[0], kernel_size, padding=kernel_size // 2, bias=False), _norm(norm, channels[0], dims), make_activation(activation)]
    c_in, n_blocks, k = channels[0], len(channels) * depth, 0
    for stage, c_out in enumerate(channels):
        for b in range(depth):
            stride = 2 if stage > 0 and b == 0 else 1
            rate = drop_path * k / max(1, n_blocks - 1)
            layers.append(ResidualBlock(c_in, c_out, stride, dims, norm, kernel_size, make_activation(activation), rate))
            c_in, k = c_out, k + 1
    features = nn.Sequential(*layers)
    return apply_init(nn.Sequential(*layers, *_head(features, input_shape, num_classes, "gap", dims)), init, 0.0, None)


@MODELS.register("script")
def script(input_shape: Sequence[int], num_classes: int, *, script: str | None = None) -> nn.Module:
    """Your own network: build_model(input_shape, num_classes) from the Python file model.script (see nn/script.py)."""
    if not script:
        raise ConfigError("model 'script' needs model.script = 'path/to/net.py', a file defining build_model(input_shape, num_classes)")
    return build_from_script(script, tuple(input_shape), num_classes)


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **options) -> nn.Module:
    """Build a registered model; an option it does not take is a ConfigError with a did-you-mean."""
    builder = MODELS.get(name)
    return builder(input_shape, num_classes, **check_options(builder, options, f"model '{name}'", skip=("input_shape", "num_classes")))
