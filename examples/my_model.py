"""A model script for `babysit doctor` (also `babysit train/check --model script --model.script=...`).

    babysit doctor examples/my_model.py --data digits

The contract: define build_model(input_shape, num_classes) returning an
nn.Module that maps (N, *input_shape) inputs to (N, num_classes) class scores.
babysit calls it with the data set's shapes, e.g. (1, 8, 8) and 10 for digits.
"""

from torch import nn


class ConvBlock(nn.Module):
    """conv -> batch norm -> ReLU, halving the spatial size (docs/lectures.md §4: BN before the nonlinearity)."""

    def __init__(self, c_in: int, c_out: int, dims: int) -> None:
        super().__init__()
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.conv = conv(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = norm(c_out)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


def build_model(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Two conv blocks and a linear head, for (C, L) signals or (C, H, W) images."""
    dims = len(input_shape) - 1
    pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
    return nn.Sequential(
        ConvBlock(input_shape[0], 32, dims),
        ConvBlock(32, 64, dims),
        pool,
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


if __name__ == "__main__":
    import torch

    print(build_model((1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape)  # torch.Size([2, 10])
