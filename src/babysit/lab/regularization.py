"""Lab `regularization`: the train/val gap with and without each regulariser (docs/lectures.md §9).

An over-sized MLP on a slice of MNIST-1D overfits (100% train, ~45% val); L2,
dropout, DropConnect and data augmentation (random shifts: MNIST-1D's signals
are translated copies of ten templates) each narrow the gap between training and
validation accuracy; an ensemble of independently trained models beats its
members; EMA averaging of the weights smooths the validation curve.

The lectures' other "add noise in training, average it out at test" regularizers
are compared on the networks they belong to, each against the same network
without it: fractional max pooling (random pooling regions in training, averaged
over draws at test; Graham 2014) against stride-2 downsampling in a convnet, and
stochastic depth (each residual branch skipped at random in training, scaled at
test; Huang 2016) in a residual network. Fractional max pooling narrows the gap by
a wide margin; stochastic depth, which Huang et al. measured on networks of 110
layers and more, moves the gap of this 4-block network by less than seed noise,
so the lab shows its numbers and checks only that the test-time network works.

`--data digits` runs the same on the 8x8 digits with small random rotations and
stretches as augmentation; digits is easy enough that every gap there is within
a point or two, so the lecture's effects show best on MNIST-1D.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

import matplotlib.pyplot as plt

from babysit.data.augment import with_augmentation
from babysit.data.datasets import Split, load_dataset
from babysit.data.preprocess import prepare
from babysit.ensemble import Ensemble
from babysit.lab.result import EXPERIMENTS, LabResult, option_limits
from babysit.nn.models import convnet, mlp, resnet
from babysit.train.state import Recipe
from babysit.train.trainer import evaluate, fit, seed_everything


def _roughness(curve: list[float]) -> float:
    """Std of epoch-to-epoch changes over the second half: how much a converged validation curve jitters.

    The first half is left out: there the curve climbs, and a lagging average climbs in bigger steps.
    """
    tail = curve[len(curve) // 2 :]
    return statistics.pstdev(b - a for a, b in zip(tail, tail[1:]))


@EXPERIMENTS.register("regularization")
@option_limits(l2=(0, 10), dropout=(0, 0.95), dropconnect=(0, 0.95), drop_path=(0, 0.95))
def regularization_experiment(
    data: str = "mnist1d",
    train_size: int = 1000,
    width: int = 256,
    epochs: int = 40,
    l2: float = 1e-2,
    dropout: float = 0.5,
    dropconnect: float = 0.5,
    drop_path: float = 0.5,
    members: int = 3,
    seed: int = 0,
) -> LabResult:
    """Train/val gap on a data slice: an MLP with none, L2, dropout, augmentation, DropConnect, ensemble, EMA;
    a convnet with and without fractional max pooling; a residual net with and without stochastic depth."""
    result = LabResult(
        "regularization",
        "Regularization and the train/val gap",
        "CS231n lecture 7, regularization: L2, dropout (keep p = 0.5) and data augmentation reduce overfitting; "
        "so do the other regularizers that add noise in training and average it out at test (DropConnect, "
        "fractional max pooling, stochastic depth); ensembles of independent models add accuracy; Polyak averaging "
        "of the weights smooths evaluation.",
    )
    full = prepare(load_dataset(data, seed=seed))
    dataset = replace(full, train=Split(full.train.x[:train_size], full.train.y[:train_size]))
    if len(dataset.input_shape) == 3:
        augment, augment_label = with_augmentation(dataset, ["affine"], degrees=10, stretch=0.1), "augmentation (rotate ±10°, stretch ±10%)"
    else:
        augment, augment_label = with_augmentation(dataset, ["crop"], padding=4), "augmentation (random shift ±4)"
    base = Recipe(optimizer="adam", lr=1e-3, epochs=epochs, batch_size=50, seed=seed)
    setups = {
        "none": (dataset, base, {}),
        f"L2 (weight decay {l2:g})": (dataset, replace(base, weight_decay=l2), {}),
        f"dropout {dropout:g}": (dataset, base, {"dropout": dropout}),
        augment_label: (augment, base, {}),
        f"DropConnect {dropconnect:g}": (dataset, base, {"dropconnect": dropconnect}),
        "EMA weight averaging": (dataset, replace(base, averaging="ema", ema_decay=0.9), {}),
    }
    rows, curves, gaps = [], {}, {}
    for label, (dset, recipe, model_opts) in setups.items():
        seed_everything(seed)
        model = mlp(dset.input_shape, dset.num_classes, hidden=(width, width), **model_opts)
        res = fit(model, dset, recipe, progress=False)
        # Training accuracy in eval mode (dropout off), so the gap compares like with like.
        train_acc = evaluate(model, dset.train.x, dset.train.y)[1]
        val = res.history.series("val_accuracy")
        gaps[label] = train_acc - val[-1]
        curves[label] = val
        rows.append([label, train_acc, val[-1], gaps[label], res.test_accuracy, _roughness(val)])

    member_models, member_val = [], []
    for k in range(members):
        seed_everything(seed + 100 + k)
        model = mlp(dataset.input_shape, dataset.num_classes, hidden=(width, width))
        fit(model, dataset, replace(base, seed=seed + 100 + k), progress=False)
        member_models.append(model)
        member_val.append(evaluate(model, dataset.val.x, dataset.val.y)[1])
    ensemble = Ensemble(member_models)
    ens_train = evaluate(ensemble, dataset.train.x, dataset.train.y)[1]
    ens_val = evaluate(ensemble, dataset.val.x, dataset.val.y)[1]
    ens_test = evaluate(ensemble, dataset.test.x, dataset.test.y)[1]
    rows.append([f"ensemble of {members}", ens_train, ens_val, ens_train - ens_val, ens_test, float("nan")])
    result.table(
        f"MLP {width}x{width} on {len(dataset.train)} {data} training samples, {epochs} epochs of Adam",
        ["regulariser", "train accuracy", "val accuracy", "gap", "test accuracy", "val-curve roughness"],
        rows,
    )
    result.table("Ensemble members", ["member", "val accuracy"], [[f"seed {seed + 100 + k}", a] for k, a in enumerate(member_val)])

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = list(gaps) + [f"ensemble of {members}"]
    values = list(gaps.values()) + [ens_train - ens_val]
    a1.barh(labels, values, color=["C3"] + ["C0"] * (len(labels) - 1))
    a1.invert_yaxis()
    a1.set(xlabel="train accuracy - val accuracy", title="overfitting gap")
    for label in ("none", "EMA weight averaging"):
        a2.plot(range(1, epochs + 1), curves[label], label=label)
    a2.set(xlabel="epoch", ylabel="val accuracy", title="validation curve with and without weight averaging")
    a2.legend()
    result.figure("train/val gap per regulariser, and the averaged validation curve", fig)

    noise_rows = _noise_pairs(dataset, base, drop_path, seed)
    result.table(
        f"Noise in training, averaged at test, on {len(dataset.train)} {data} training samples, {epochs} epochs of Adam",
        ["network", "regulariser", "train accuracy", "val accuracy", "gap", "test accuracy"],
        noise_rows,
    )

    none_gap = gaps["none"]
    for label in [*list(gaps)[1:4], f"DropConnect {dropconnect:g}"]:
        result.claim(f"{label} narrows the train/val gap", gaps[label] < none_gap, f"gap {gaps[label]:.3f} vs {none_gap:.3f} without")
    aug_val, none_val = rows[3][2], rows[0][2]
    result.claim(f"{augment_label} also raises validation accuracy", aug_val > none_val, f"{aug_val:.3f} vs {none_val:.3f}")
    mean_member = statistics.fmean(member_val)
    result.claim(
        f"an ensemble of {members} beats the mean of its members",
        ens_val > mean_member,
        f"val accuracy {ens_val:.3f} vs members' mean {mean_member:.3f}",
    )
    rough_none, rough_ema = _roughness(curves["none"]), _roughness(curves["EMA weight averaging"])
    result.claim(
        "weight averaging gives a smoother validation curve",
        rough_ema < rough_none,
        f"roughness {rough_ema:.4f} vs {rough_none:.4f}",
    )
    fmp_plain, fmp, res_plain, res_sd = noise_rows
    result.claim(f"{fmp[1]} narrows the {fmp[0]}'s train/val gap", fmp[4] < fmp_plain[4], f"gap {fmp[4]:.3f} vs {fmp_plain[4]:.3f} without")
    # Stochastic depth is not claimed to narrow the gap here: Huang et al. (2016) report it on 110+ layer
    # networks, and on this 4-block one the gap moved by -0.02 to +0.05 over seeds 0-3 (with 10 blocks it
    # narrowed on 3 of 4 seeds): within seed noise. What holds is that the test-time network (each branch
    # scaled by its keep probability) is a working model.
    result.claim(
        f"with {res_sd[1]}, the {res_sd[0]} still learns (the test-time scaling matches training)",
        res_sd[3] > res_plain[3] - 0.1,
        f"val accuracy {res_sd[3]:.3f} vs {res_plain[3]:.3f} without; gap {res_sd[4]:.3f} vs {res_plain[4]:.3f} (not claimed to narrow at 4 blocks)",
    )
    return result


def _noise_pairs(dataset, recipe: Recipe, drop_path: float, seed: int) -> list[list]:
    """[network, regulariser, train acc, val acc, gap, test acc] for a convnet with stride-2 / FMP downsampling
    and a residual net without / with stochastic depth (pairs of rows, the plain one first)."""
    pairs = [
        ("convnet 32-32-32", "stride-2 downsampling", lambda: convnet(dataset.input_shape, dataset.num_classes, channels=(32, 32, 32))),
        ("convnet 32-32-32", "fractional max pooling", lambda: convnet(dataset.input_shape, dataset.num_classes, channels=(32, 32, 32), downsample="fmp")),
        ("resnet 32-64, 2 blocks per stage", "none", lambda: resnet(dataset.input_shape, dataset.num_classes, channels=(32, 64), depth=2)),
        ("resnet 32-64, 2 blocks per stage", f"stochastic depth {drop_path:g}", lambda: resnet(dataset.input_shape, dataset.num_classes, channels=(32, 64), depth=2, drop_path=drop_path)),
    ]
    rows = []
    for network, label, build in pairs:
        seed_everything(seed)
        model = build()
        res = fit(model, dataset, recipe, progress=False)
        train_acc = evaluate(model, dataset.train.x, dataset.train.y)[1]  # eval mode: the noise averaged out
        val_acc = res.history.records[-1]["val_accuracy"]
        rows.append([network, label, train_acc, val_acc, train_acc - val_acc, res.test_accuracy])
    return rows
