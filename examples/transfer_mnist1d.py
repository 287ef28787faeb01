"""Transfer learning without downloads (docs/lectures.md §10).

Pre-train a convnet on MNIST-1D digits 0-4, then learn digits 5-9 from only
200 training signals in three ways: freeze the body and train a new head,
fine-tune every layer with a 10x lower learning rate for the body, or train
from scratch. Both transfers beat training from scratch.

    python examples/transfer_mnist1d.py
"""

from __future__ import annotations

from dataclasses import replace

import babysit as bs


def main(seed: int = 0, target_size: int = 200) -> dict[str, float]:
    """Test accuracy on digits 5-9 for each strategy."""
    data = bs.prepare(bs.load_dataset("mnist1d"))
    source = bs.data.select_classes(data, range(5))
    target = bs.data.select_classes(data, range(5, 10), train_size=target_size)

    def convnet(num_classes: int):
        return bs.blocks.convnet(data.input_shape, num_classes, channels=(32, 32, 32), kernel_size=5, batchnorm=True)

    bs.train.seed_everything(seed)
    pretrained = convnet(source.num_classes)
    pre = bs.fit(pretrained, source, bs.Recipe(lr=1e-2, epochs=15, seed=seed), progress=False)
    print(f"pre-trained on digits 0-4: test accuracy {pre.test_accuracy:.1%}")

    results = {}
    recipe = bs.Recipe(lr=1e-2, epochs=20, batch_size=20, seed=seed)
    for strategy, body_lr_factor in (("freeze all but the head", 0.0), ("fine-tune all, body lr x0.1", 0.1)):
        bs.train.seed_everything(seed)
        model = bs.blocks.replace_head(pretrained, target.num_classes)
        results[strategy] = bs.fit(model, target, replace(recipe, body_lr_factor=body_lr_factor), progress=False).test_accuracy
    bs.train.seed_everything(seed)
    results["from scratch"] = bs.fit(convnet(target.num_classes), target, recipe, progress=False).test_accuracy

    print(f"digits 5-9 from {len(target.train)} training signals:")
    for strategy, accuracy in results.items():
        print(f"  {strategy:<28} test accuracy {accuracy:.1%}")
    return results


if __name__ == "__main__":
    main()
