"""Hand-written networks of the diagnosis benchmark: what a user brings, not babysit's built-in models.

- `sequential`: a plain `nn.Sequential` MLP (torch's default init), optionally with dropout;
- `ResidualMLP`: a small pre-norm residual network (LayerNorm or BatchNorm), as people write them;
- `AlwaysDropout`: a custom dropout that forgets to check `self.training` (the eval-mode fault);
- `LogNet` (NaN scores from finite inputs) and `wrong_backward` (a custom ReLU with a wrong backward pass).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _width(input_shape: tuple[int, ...]) -> int:
    return math.prod(int(d) for d in input_shape)


def sequential(input_shape: tuple[int, ...], num_classes: int, width: int = 64, dropout: float = 0.0) -> nn.Sequential:
    """Flatten, two hidden Linear+ReLU layers of `width` units (dropout after each when > 0), a Linear head."""
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(_width(input_shape), width), nn.ReLU(), *drop,
        nn.Linear(width, width), nn.ReLU(), *drop,
        nn.Linear(width, num_classes),
    )  # fmt: skip


class ResidualBlock(nn.Module):
    """x + W2 relu(W1 norm(x)) (pre-norm), with optional dropout inside the branch."""

    def __init__(self, width: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width) if norm == "ln" else nn.BatchNorm1d(width)
        self.fc1, self.act, self.fc2 = nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(self.drop(self.act(self.fc1(self.norm(x)))))


class ResidualMLP(nn.Module):
    """Flatten, Linear stem + ReLU, two residual blocks, a final norm + ReLU, a Linear head."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 64, norm: str = "ln", dropout: float = 0.0) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.stem, self.stem_act = nn.Linear(_width(input_shape), width), nn.ReLU()
        self.blocks = nn.Sequential(ResidualBlock(width, norm, dropout), ResidualBlock(width, norm, dropout))
        self.norm = nn.LayerNorm(width) if norm == "ln" else nn.BatchNorm1d(width)
        self.act = nn.ReLU()
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(self.stem_act(self.stem(self.flatten(x))))
        return self.head(self.act(self.norm(h)))


class AlwaysDropout(nn.Module):
    """Dropout that ignores `self.training`: still active when the model is evaluated (a classic custom-layer bug)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        keep = (torch.rand_like(x) >= self.p).to(x.dtype)
        return x * keep / (1 - self.p)


class LogNet(nn.Module):
    """Flatten, a Linear layer whose output goes through `log` (NaN wherever it is negative), a Linear head."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc, self.head = nn.Linear(_width(input_shape), width), nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.log(self.fc(self.flatten(x))))


class _ScaledReLUGrad(torch.autograd.Function):
    """ReLU whose hand-written backward returns a tenth of the true gradient (a custom layer's bug)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (x > 0) * 0.1


class WrongBackwardReLU(nn.Module):
    """A custom ReLU module with a wrong backward pass."""

    def forward(self, x: Tensor) -> Tensor:
        return _ScaledReLUGrad.apply(x)


def wrong_backward(input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> nn.Sequential:
    """`sequential` with its ReLUs replaced by `WrongBackwardReLU`."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(_width(input_shape), width), WrongBackwardReLU(),
        nn.Linear(width, width), WrongBackwardReLU(),
        nn.Linear(width, num_classes),
    )  # fmt: skip
