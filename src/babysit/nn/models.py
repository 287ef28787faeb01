"""Built-in networks assembled from named blocks, for the demo, the tests and the lab.

Contract: a builder in `MODELS` is `builder(input_shape, num_classes, **options) ->
nn.Module` mapping (N, *input_shape) to (N, num_classes) scores. Any user
`nn.Module` works everywhere a built-in one does; these exist so that a network
from the lectures' blocks is one line or one config key away.

Block order follows the lectures: affine -> batch norm -> activation -> dropout
(LECTURE_DIGEST §4: BN after FC/conv, before the nonlinearity; the affine
layer's bias is then redundant and dropped). With `activation="maxout"` the
affine layer outputs `pieces` x width values and Maxout keeps the max of each
group, so a hidden size is always the number of units after the activation.

`dropout` is the probability of dropping a unit (torch's convention); the
lectures' keep probability is p = 1 - dropout, and `dropout_kind` picks inverted
(default) or vanilla dropout from `DROPOUTS`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from babysit.errors import ConfigError
from babysit.nn.activations import ACTIVATIONS, make_activation, pieces_of
from babysit.nn.init import apply_init
from babysit.nn.regularize import DROPOUTS
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
) -> nn.Sequential:
    """Fully connected net: flatten, then [linear, (bn), activation, (dropout)] per hidden layer, then a linear head.

    Args:
        hidden: units per hidden layer.
        activation: a name from `ACTIVATIONS`; `slope` (leaky_relu), `alpha` (elu)
            and `pieces` (maxout) go to the activations that take them.
        init, bias, init_std: weight scheme from `INITS`, bias constant, std for small/normal.
        batchnorm: batch norm after each hidden affine layer.
        dropout, dropout_kind: drop probability (keep p = 1 - dropout) and "inverted"/"vanilla".
    """
    _check_options(activation, dropout, dropout_kind)
    act = {"slope": slope, "alpha": alpha, "pieces": pieces}
    width = 1
    for d in input_shape:
        width *= int(d)
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += _block(
            lambda n, w=width: nn.Linear(w, n, bias=not batchnorm),
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
) -> nn.Sequential:
    """Small convnet for (C, L) or (C, H, W) inputs: stride-2 [conv, (bn), activation, (dropout)] blocks, then a linear head.

    Options as in `mlp`; `channels` are the output channels per block and
    dropout drops whole channels (torch's Dropout1d/2d, or vanilla per channel).
    """
    _check_options(activation, dropout, dropout_kind)
    if len(input_shape) not in (2, 3):
        raise ConfigError(
            f"convnet needs inputs shaped (channels, length) or (channels, height, width), got {tuple(input_shape)}; "
            "use model.name = 'mlp' for flat features"
        )
    dims = len(input_shape) - 1
    conv, bn = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    act = {"slope": slope, "alpha": alpha, "pieces": pieces}
    spatial = [int(s) for s in input_shape[1:]]
    c_in = int(input_shape[0])
    layers: list[nn.Module] = []
    for c_out in channels:
        # Stride 2 halves each spatial size (padding k//2): out = floor((s - 1) / 2) + 1.
        layers += _block(
            lambda n, c=c_in: conv(c, n, kernel_size, stride=2, padding=kernel_size // 2, bias=not batchnorm),
            c_out,
            bn if batchnorm else None,
            make_activation(activation, **accepted_options(ACTIVATIONS.get(activation), act)),
            DROPOUTS.get(dropout_kind)(1.0 - dropout, spatial=dims) if dropout > 0 else None,
        )
        spatial = [(s - 1) // 2 + 1 for s in spatial]
        c_in = c_out
    features = c_in
    for s in spatial:
        features *= s
    layers += [nn.Flatten(), nn.Linear(features, num_classes)]
    return apply_init(nn.Sequential(*layers), init, bias, init_std)


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
