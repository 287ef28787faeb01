"""Batched data augmentation on the batch's device: random on training batches, fixed views at test (docs/lectures.md §9).

"Add randomness in training, average it out at test": flips, random crops and
colour jitter make new training images from old ones. Every transform here acts
on a whole batch at once, (N, C, L) signals or (N, C, H, W) images, with random
numbers drawn on the batch's device (no per-sample Python, no host round trip).

Contract: `AUGMENTATIONS.get(name)(**options)` returns `transform(x) -> x` of the
same shape; `with_augmentation(data, names)` attaches their composition to a
`Dataset`, and `fit` applies it to training batches only. Batches arrive
preprocessed, so crops pad with 0, the training mean after zero-centring.

At test, the randomness is averaged out: `fixed_views(names, padding, dims)` lists
fixed versions of the flips and crops (the lectures' "random crops in training,
fixed crops averaged at test"), and `fit` averages the test set's predicted
probabilities over them (`data.test_augment`, on by default). Validation stays
one view: it is evaluated every epoch, where several views would multiply its cost.
Jitter and affine draw from a continuum and have no fixed views.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from babysit.data.datasets import Dataset
from babysit.errors import ConfigError, did_you_mean
from babysit.registry import Registry, accepted_options

AUGMENTATIONS: Registry = Registry("augmentation")

Transform = Callable[[Tensor], Tensor]
# Test-time views of one transform at most: the lectures' ten crops (the centre, four corners and their mirrors).
MAX_VIEWS = 10


def _per_sample(x: Tensor, values: Tensor) -> Tensor:
    """(N,) values shaped to broadcast over (N, C, *spatial)."""
    return values.reshape(len(x), *[1] * (x.ndim - 1))


def _uniform(x: Tensor, low: float, high: float) -> Tensor:
    return _per_sample(x, torch.empty(len(x), device=x.device, dtype=x.dtype).uniform_(low, high))


@AUGMENTATIONS.register("flip")
def flip(p: float = 0.5) -> Transform:
    """Mirror each image left-right with probability 1/2 (the last axis)."""

    def transform(x: Tensor) -> Tensor:
        mask = torch.rand(len(x), device=x.device) < p
        return torch.where(_per_sample(x, mask), x.flip(-1), x)

    return transform


@AUGMENTATIONS.register("crop")
def crop(padding: int = 4) -> Transform:
    """Zero-pad each side by `padding` pixels, then cut a random window of the original size."""
    if padding < 0:
        raise ConfigError(f"data.crop_padding must be >= 0, got {padding}")

    def transform(x: Tensor) -> Tensor:
        if padding == 0:
            return x
        n, spatial = len(x), x.shape[2:]
        padded = F.pad(x, [padding] * 2 * len(spatial))
        # One random offset per sample and axis; gather every window with one advanced index.
        starts = torch.randint(0, 2 * padding + 1, (n, len(spatial)), device=x.device)
        rows = torch.arange(n, device=x.device)
        if len(spatial) == 1:
            cols = starts[:, 0:1] + torch.arange(spatial[0], device=x.device)  # (N, L)
            return padded[rows[:, None], :, cols].permute(0, 2, 1)  # (N, L, C) -> (N, C, L)
        ys = starts[:, 0:1] + torch.arange(spatial[0], device=x.device)  # (N, H)
        xs = starts[:, 1:2] + torch.arange(spatial[1], device=x.device)  # (N, W)
        out = padded[rows[:, None, None], :, ys[:, :, None], xs[:, None, :]]  # (N, H, W, C)
        return out.permute(0, 3, 1, 2)

    return transform


# The fixed views are module-level functions bound with functools.partial, not closures: a Dataset carrying them
# is pickled into each worker of a multi-process search (tune's caviar mode starts them with spawn).
def _shift(x: Tensor, offsets: tuple[int, ...], padding: int) -> Tensor:
    """A crop's fixed window: zero-pad by `padding`, cut the window moved by `offsets` (one per spatial axis) from the centre."""
    spatial = x.shape[2:]
    padded = F.pad(x, [padding] * 2 * len(spatial))
    index = tuple(slice(padding + o, padding + o + size) for o, size in zip(offsets, spatial, strict=True))
    return padded[(..., *index)]


def _identity(x: Tensor) -> Tensor:
    return x


def _mirror(x: Tensor) -> Tensor:
    return x.flip(-1)


def _chain(x: Tensor, chain: tuple[Transform, ...]) -> Tensor:
    for transform in chain:
        x = transform(x)
    return x


def crop_offsets(padding: int, dims: int) -> list[tuple[int, ...]]:
    """The window offsets a crop is averaged over at test: every one the training draws from while there are at most
    `MAX_VIEWS` (all 7 shifts of a signal padded by 3, all 9 of an image padded by 1: the exact mean over the
    training distribution), else evenly spaced shifts of a signal, or an image's centre and four corners (the lectures)."""
    if padding == 0:
        return [(0,) * dims]
    every = list(itertools.product(range(-padding, padding + 1), repeat=dims))
    if len(every) <= MAX_VIEWS:
        return every
    if dims == 1:
        spaced = torch.linspace(-padding, padding, MAX_VIEWS - 1).round().int().tolist()  # an odd count: the centre is one
        return [(o,) for o in sorted(set(spaced))]
    return [(0,) * dims, *itertools.product((-padding, padding), repeat=dims)]


def fixed_views(names: Sequence[str], padding: int, dims: int) -> tuple[Transform, ...]:
    """The fixed views of augmentation `names` that test-time averaging uses: every combination of a flip's two
    and a crop's `crop_offsets` (in `names`' order); () when `names` has neither (nothing to average)."""
    per_name = []
    for name in names:
        if name == "flip":
            per_name.append([_identity, _mirror])
        elif name == "crop" and padding > 0:
            per_name.append([partial(_shift, offsets=o, padding=padding) for o in crop_offsets(padding, dims)])
    return tuple(partial(_chain, chain=chain) for chain in itertools.product(*per_name)) if per_name else ()


def _gray(x: Tensor) -> Tensor:
    """(N, 1, *spatial) luminance: ITU-R 601 weights for RGB, the channel mean otherwise."""
    if x.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
        return (x * weights.reshape(1, 3, *[1] * (x.ndim - 2))).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


@AUGMENTATIONS.register("jitter")
def jitter(strength: float = 0.4) -> Transform:
    """Colour jitter: brightness, contrast and saturation each scaled by a random factor in [1-s, 1+s]."""
    if not 0.0 <= strength < 1.0:
        raise ConfigError(f"data.jitter must be in [0, 1), got {strength}")

    def transform(x: Tensor) -> Tensor:
        lo, hi = 1.0 - strength, 1.0 + strength
        x = x * _uniform(x, lo, hi)  # brightness: blend with black
        mean = _gray(x).mean(dim=tuple(range(1, x.ndim)), keepdim=True)
        x = (x - mean) * _uniform(x, lo, hi) + mean  # contrast: blend with the image's mean grey
        gray = _gray(x)
        return (x - gray) * _uniform(x, lo, hi) + gray  # saturation: blend with the grey image

    return transform


@AUGMENTATIONS.register("affine")
def affine(degrees: float = 10.0, stretch: float = 0.1) -> Transform:
    """Random small rotation (±degrees) and stretch/shear (±stretch) of each image; signals are only stretched."""
    if degrees < 0 or not 0 <= stretch < 1:
        raise ConfigError(f"affine augmentation needs degrees >= 0 and stretch in [0, 1), got {degrees}, {stretch}")

    def transform(x: Tensor) -> Tensor:
        n, kw = len(x), {"device": x.device, "dtype": x.dtype}
        # A random matrix near the identity stretches and shears: I + U(-s, s) per entry.
        matrix = torch.eye(2, **kw) + torch.empty(n, 2, 2, **kw).uniform_(-stretch, stretch)
        if x.ndim == 3:  # a signal (N, C, L) is a one-row image: stretch along its axis only
            matrix[:, 0, 1] = matrix[:, 1, 0] = 0
            matrix[:, 1, 1] = 1
        else:
            angle = torch.empty(n, **kw).uniform_(-degrees, degrees) * (torch.pi / 180)
            cos, sin = torch.cos(angle), torch.sin(angle)
            matrix = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1) @ matrix
        theta = torch.cat([matrix, torch.zeros(n, 2, 1, **kw)], dim=2)
        image = x.unsqueeze(2) if x.ndim == 3 else x
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        # Outside the image is 0, the training mean after zero-centring (as for crop's padding).
        out = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.squeeze(2) if x.ndim == 3 else out

    return transform


class Augment:
    """Named batch transforms applied in order: `Augment(["flip", "crop"], padding=4)(x)`.

    Args:
        names: entries of `AUGMENTATIONS`.
        **options: their options (padding for crop, strength for jitter); each takes its own,
            and one that no chosen transform takes is a ConfigError.
    """

    def __init__(self, names: Sequence[str], **options: Any) -> None:
        self.names = tuple(names)
        self.options: dict[str, Any] = {}  # only the options some chosen transform uses
        self._transforms = []
        for name in self.names:
            factory = AUGMENTATIONS.get(name)
            used = accepted_options(factory, options)
            self.options.update(used)
            self._transforms.append(factory(**used))
        unused = [k for k in options if k not in self.options]
        if unused:
            taken = sorted({p for n in self.names for p in inspect.signature(AUGMENTATIONS.get(n)).parameters})
            raise ConfigError(
                f"augmentation {', '.join(self.names)} has no option '{unused[0]}'{did_you_mean(unused[0], taken)}; "
                f"{'it takes ' + ', '.join(taken) if taken else 'it takes no options'}"
            )

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its names and options in the process that unpickles it (its transforms are closures).
        return (_rebuild, (self.names, self.options))

    def __call__(self, x: Tensor) -> Tensor:
        if x.ndim not in (3, 4):
            raise ConfigError(f"augmentation needs (N, C, L) or (N, C, H, W) batches, got shape {tuple(x.shape)}")
        for transform in self._transforms:
            x = transform(x)
        return x

    def __repr__(self) -> str:
        return f"Augment({list(self.names)}, {self.options})"


def _rebuild(names: tuple[str, ...], options: dict[str, Any]) -> Augment:
    return Augment(names, **options)


def with_augmentation(data: Dataset, names: Sequence[str], *, average_at_test: bool = True, **options: Any) -> Dataset:
    """A copy of `data` whose training batches `fit` augments with `names` (none: no augmentation), and whose test
    predictions it averages over their fixed views (`fixed_views`) unless `average_at_test` is False.

    Example:
        >>> data = with_augmentation(prepare(load_dataset("digits")), ["flip", "crop"], padding=1)
    """
    if not names:
        return replace(data, augment=None, test_views=())
    if len(data.input_shape) not in (2, 3):
        raise ConfigError(
            f"data.augment works on images or signals shaped (C, H, W) or (C, L); '{data.name}' inputs are "
            f"{data.input_shape}; remove data.augment"
        )
    augment = Augment(names, **options)
    padding = augment.options.get("padding", inspect.signature(crop).parameters["padding"].default)
    views = fixed_views(names, padding, len(data.input_shape) - 1) if average_at_test else ()
    return replace(data, augment=augment, test_views=views)
