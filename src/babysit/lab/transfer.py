"""Lab `transfer`: freeze-and-retrain-the-head vs fine-tune-all vs from scratch on a small target set (docs/lectures.md §10)."""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt

from babysit.data.datasets import load_dataset, select_classes
from babysit.data.preprocess import prepare
from babysit.lab.result import EXPERIMENTS, LabResult
from babysit.nn.models import convnet
from babysit.train.state import Recipe
from babysit.train.trainer import fit, seed_everything
from babysit.transfer import replace_head


@EXPERIMENTS.register("transfer")
def transfer_experiment(target_size: int = 200, pretrain_epochs: int = 15, epochs: int = 20, seed: int = 0) -> LabResult:
    """Pre-train a convnet on MNIST-1D digits 0-4, transfer to a small set of digits 5-9 three ways."""
    result = LabResult(
        "transfer",
        "Transfer learning",
        "CS231n lecture 7, transfer learning: with a small target set similar to the pre-training data, "
        "freeze the network and retrain the last layer, or fine-tune all layers with a lower learning rate; "
        "both beat training from scratch.",
    )
    data = prepare(load_dataset("mnist1d", seed=seed))
    source = select_classes(data, range(5))
    target = select_classes(data, range(5, 10), train_size=target_size)

    def build(num_classes: int):
        return convnet(data.input_shape, num_classes, channels=(32, 32, 32), kernel_size=5, batchnorm=True)

    seed_everything(seed)
    pretrained = build(source.num_classes)
    pre = fit(pretrained, source, Recipe(lr=1e-2, epochs=pretrain_epochs, seed=seed), progress=False)
    recipe = Recipe(lr=1e-2, epochs=epochs, batch_size=20, seed=seed)
    strategies = {
        "freeze all but the head": 0.0,
        "fine-tune all, body lr x0.1": 0.1,
    }
    histories, test_acc = {}, {}
    for name, factor in strategies.items():
        seed_everything(seed)
        res = fit(replace_head(pretrained, target.num_classes), target, replace(recipe, body_lr_factor=factor), progress=False)
        histories[name], test_acc[name] = res.history, res.test_accuracy
    seed_everything(seed)
    scratch = fit(build(target.num_classes), target, recipe, progress=False)
    histories["from scratch"], test_acc["from scratch"] = scratch.history, scratch.test_accuracy

    result.table("Pre-training", ["task", "train samples", "test accuracy"], [["digits 0-4", len(source.train), pre.test_accuracy]])
    result.table(
        f"Digits 5-9 from {len(target.train)} training signals",
        ["strategy", "test accuracy", "best val accuracy"],
        [[n, test_acc[n], histories[n].best("val_accuracy")["val_accuracy"]] for n in histories],
    )
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, hist in histories.items():
        ax.plot(hist.series("epoch"), hist.series("val_accuracy"), marker="o", ms=3, label=name)
    ax.set(xlabel="epoch", ylabel="val accuracy (digits 5-9)", title="transfer vs from scratch on a small target set")
    ax.legend()
    result.figure("validation accuracy of each transfer strategy", fig)
    for name in strategies:
        result.claim(
            f"'{name}' beats training from scratch",
            test_acc[name] > test_acc["from scratch"],
            f"{test_acc[name]:.3f} vs {test_acc['from scratch']:.3f}",
        )
    return result
