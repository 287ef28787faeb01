"""Lab `batchnorm`: batch norm rescues a badly initialised deep net; its noise shrinks with batch size (docs/lectures.md §4)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from torch import nn

from babysit.data.datasets import load_dataset
from babysit.data.preprocess import prepare
from babysit.lab.result import EXPERIMENTS, LabResult, option_limits
from babysit.nn.init import apply_init
from babysit.nn.models import mlp
from babysit.train.state import Recipe
from babysit.train.trainer import fit, seed_everything


def _bn_output_noise(x: torch.Tensor, batch_size: int, draws: int, seed: int) -> float:
    """Std, over random batch compositions, of one fixed sample's batch-normalised features.

    In training mode BN normalises with the batch's own mean and variance, so the
    same sample comes out differently in different batches: that is the noise
    behind BN's mild regularising effect, and it shrinks as the batch grows.
    """
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm1d(x.shape[1], affine=False).train()
    outs = []
    others = x[1:]
    with torch.no_grad():
        for _ in range(draws):
            idx = torch.randperm(len(others), generator=g)[: batch_size - 1]
            batch = torch.cat([x[:1], others[idx]])
            outs.append(bn(batch)[0])
    return torch.stack(outs).std(0).mean().item()


@EXPERIMENTS.register("batchnorm")
@option_limits(init_std=(1e-8, 100), lr=(1e-8, 100))
def batchnorm_experiment(
    data: str = "digits",
    depth: int = 8,
    width: int = 100,
    init_std: float = 0.01,
    epochs: int = 8,
    lr: float = 0.05,
    seed: int = 0,
) -> LabResult:
    """A deep tanh MLP with 0.01·N(0,1) init trained with and without batch norm; BN noise against batch size."""
    result = LabResult(
        "batchnorm",
        "Batch normalization",
        "CS231n lecture 6, batch normalization: it makes a deep net far less sensitive to initialisation and "
        "adds mild noise (a regulariser) that weakens as the batch grows.",
    )
    dataset = prepare(load_dataset(data, seed=seed))
    curves, rows, final = {}, [], {}
    for bn in (False, True):
        seed_everything(seed)
        model = mlp(dataset.input_shape, dataset.num_classes, hidden=(width,) * depth, activation="tanh", batchnorm=bn)
        apply_init(model, "small", std=init_std)
        res = fit(model, dataset, Recipe(optimizer="momentum", lr=lr, momentum=0.9, epochs=epochs, seed=seed), progress=False)
        label = "with batch norm" if bn else "without batch norm"
        curves[label] = res.history
        final[bn] = res
        rows.append([label, res.history.series("train_loss")[0], res.history.series("train_loss")[-1], res.history.series("val_accuracy")[-1]])
    result.table(
        f"{depth}-layer tanh MLP, init {init_std}·N(0,1), SGD+momentum lr={lr}",
        ["network", "train loss epoch 1", "train loss last epoch", "final val accuracy"],
        rows,
    )
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, hist in curves.items():
        a1.plot(hist.series("epoch"), hist.series("train_loss"), marker="o", label=label)
        a2.plot(hist.series("epoch"), hist.series("val_accuracy"), marker="o", label=label)
    a1.axhline(math.log(dataset.num_classes), color="0.5", ls="--", label=f"ln({dataset.num_classes}) = chance")
    a1.set(xlabel="epoch", ylabel="train loss", title="loss")
    a2.set(xlabel="epoch", ylabel="val accuracy", title="validation accuracy")
    a1.legend()
    result.figure("bad init with and without batch norm", fig)

    x = dataset.train.x.flatten(1)
    # Up to a fifth of the split: larger batches overlap so much that sampling without replacement flattens the curve.
    sizes = [b for b in (4, 16, 64, 256) if b <= len(x) // 5]
    noise = [_bn_output_noise(x, b, draws=200, seed=seed) for b in sizes]
    result.table("Batch-norm noise: std of one sample's normalised features over 200 random batches", ["batch size", "noise std", "noise x sqrt(batch)"], [[b, n, n * math.sqrt(b)] for b, n in zip(sizes, noise)])
    fig2, ax = plt.subplots(figsize=(5, 4))
    ax.loglog(sizes, noise, marker="o", label="measured")
    ax.loglog(sizes, [noise[0] * math.sqrt(sizes[0] / b) for b in sizes], ls="--", color="0.5", label="∝ 1/sqrt(batch)")
    ax.set(xlabel="batch size", ylabel="noise std", title="batch-norm noise vs batch size")
    ax.legend()
    result.figure("batch-norm noise against batch size", fig2)

    plain, normed = final[False], final[True]
    chance = math.log(dataset.num_classes)
    stuck = plain.history.series("train_loss")[-1]
    result.claim("without batch norm the badly initialised deep net barely learns", stuck > 0.8 * chance, f"final train loss {stuck:.3f} vs ln(C) = {chance:.3f}")
    acc = normed.history.series("val_accuracy")[-1]
    result.claim("with batch norm the same net trains", acc > 0.8, f"final val accuracy {acc:.3f}")
    result.claim(
        "batch-norm noise shrinks as the batch grows",
        all(a > b for a, b in zip(noise, noise[1:])),
        " > ".join(f"{n:.3f}" for n in noise),
    )
    return result
