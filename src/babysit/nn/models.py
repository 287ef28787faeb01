"""Built-in networks assembled from named blocks, for the demo, the tests and the lab.

Contract: a builder in `MODELS` is `builder(input_shape, num_classes, **options) ->
nn.Module` mapping (N, *input_shape) to (N, num_classes) scores. Any user
`nn.Module` works everywhere a built-in one does; these exist so that a network
from the lectures' blocks is one line or one config key away.

Block order follows the lectures: affine -> batch norm -> activation -> dropout
(LECTURE_DIGEST §4: BN after FC/conv, before the nonlinearity; the affine
layer's bias is then redundant and dropped).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from babysit.errors import ConfigError
from babysit.nn.activations import ACTIVATIONS
from babysit.nn.init import apply_init
from babysit.registry import Registry

MODELS: Registry = Registry("model")


def _check_options(activation: str, dropout: float) -> None:
    ACTIVATIONS.get(activation)  # fail early with a suggestion on a typo
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout is the probability of dropping a unit and must be in [0, 1), got {dropout}")


def _block(affine: nn.Module, norm: nn.Module | None, activation: str, dropout: nn.Module | None) -> list[nn.Module]:
    layers = [affine]
    if norm is not None:
        layers.append(norm)
    layers.append(ACTIVATIONS.get(activation)())
    if dropout is not None:
        layers.append(dropout)
    return layers


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
) -> nn.Sequential:
    """Fully connected net: flatten, then [linear, (bn), activation, (dropout)] per hidden layer, then a linear head."""
    _check_options(activation, dropout)
    width = 1
    for d in input_shape:
        width *= int(d)
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += _block(
            nn.Linear(width, h, bias=not batchnorm),
            nn.BatchNorm1d(h) if batchnorm else None,
            activation,
            nn.Dropout(dropout) if dropout > 0 else None,
        )
        width = h
    layers.append(nn.Linear(width, num_classes))
    return apply_init(nn.Sequential(*layers), init, bias)


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
) -> nn.Sequential:
    """Small convnet for (C, L) or (C, H, W) inputs: stride-2 [conv, (bn), activation] blocks, then a linear head."""
    _check_options(activation, dropout)
    if len(input_shape) not in (2, 3):
        raise ConfigError(
            f"convnet needs inputs shaped (channels, length) or (channels, height, width), got {tuple(input_shape)}; "
            "use model.name = 'mlp' for flat features"
        )
    conv, bn, drop = (
        (nn.Conv1d, nn.BatchNorm1d, nn.Dropout1d) if len(input_shape) == 2 else (nn.Conv2d, nn.BatchNorm2d, nn.Dropout2d)
    )
    spatial = [int(s) for s in input_shape[1:]]
    c_in = int(input_shape[0])
    layers: list[nn.Module] = []
    for c_out in channels:
        # Stride 2 halves each spatial size (padding k//2): out = floor((s - 1) / 2) + 1.
        layers += _block(
            conv(c_in, c_out, kernel_size, stride=2, padding=kernel_size // 2, bias=not batchnorm),
            bn(c_out) if batchnorm else None,
            activation,
            drop(dropout) if dropout > 0 else None,
        )
        spatial = [(s - 1) // 2 + 1 for s in spatial]
        c_in = c_out
    features = c_in
    for s in spatial:
        features *= s
    layers += [nn.Flatten(), nn.Linear(features, num_classes)]
    return apply_init(nn.Sequential(*layers), init, bias)


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **options) -> nn.Module:
    """Build a registered model; unknown options are a ConfigError naming the valid ones."""
    import inspect

    builder = MODELS.get(name)
    valid = [p for p in inspect.signature(builder).parameters if p not in ("input_shape", "num_classes")]
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise ConfigError(f"model '{name}' has no option(s) {unknown}; valid options: {', '.join(valid)}")
    return builder(input_shape, num_classes, **options)
