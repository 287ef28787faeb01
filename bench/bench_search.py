"""Coarse-to-fine vs random vs grid search at 40 trials and the same epoch budget (LECTURE_DIGEST §6).

MNIST-1D, a two-layer ReLU MLP trained with SGD + momentum; the space is the
lectures' four: learning rate and weight decay on log scales, momentum as
1 - beta = 10^r, hidden width on a log scale. Each strategy gets 40 trials and
160 epochs in all:

    random, grid      40 trials x 4 epochs
    coarse_to_fine    20 trials x 2 epochs (wide), then 20 x 6 epochs (narrowed, best carried)

Two measures, three seeds (search proposals, init and shuffling):
  - found: the validation accuracy of the best trial each search delivers (its exported
    config) for the same total epochs: the acceptance measure;
  - retrained: each best configuration retrained for 6 epochs with three other training
    seeds (mean), which compares the hyperparameters alone and exposes the winner's curse
    of picking the best of many noisy single runs.
Test accuracy (mean of the retrainings) is printed once and never used to choose.

    .venv/bin/python bench/bench_search.py            # 1-2 minutes on 2 idle CPU cores
"""

from __future__ import annotations

import sys
import tempfile
import time

import optuna
from rich.console import Console
from rich.table import Table

import babysit as bs
from babysit.build import load_data, run
from babysit.tune.runner import trial_config

SEEDS = (0, 1, 2)
RETRAIN_EPOCHS = 6
RETRAIN_SEEDS = (10, 11, 12)
BASE = {
    "data": {"name": "mnist1d"},
    "model": {"name": "mlp", "hidden": [100, 100], "activation": "relu", "init": "he"},
    "train": {"optimizer": "momentum", "batch_size": 100},
}
SPACE = {
    "train.lr": "log_uniform(1e-3, 3)",
    "train.weight_decay": "log_uniform(1e-6, 1e-1)",
    "train.momentum": "one_minus_log(0.5, 0.999)",
    "model.hidden": "int_uniform(16, 256, log=true)",
}
STRATEGIES = {
    "random": dict(strategy="random", trials=40, epochs=4),
    "grid": dict(strategy="grid", trials=40, epochs=4),
    "coarse_to_fine": dict(strategy="coarse_to_fine", trials=40, stages=2, epochs=2, epoch_growth=3),
}


def epoch_budget(result: bs.tune.TuneResult) -> int:
    return sum(len(p.configs) * p.epochs for p in result.plans)


def retrain(base: bs.RunConfig, values: dict, data: bs.Dataset) -> tuple[float, float]:
    """Mean final validation and test accuracy of `values` trained RETRAIN_EPOCHS epochs with RETRAIN_SEEDS."""
    vals, tests = [], []
    for seed in RETRAIN_SEEDS:
        result = run(trial_config(base, {**values, "train.seed": seed}, RETRAIN_EPOCHS), progress=False, data=data).result
        vals.append(result.history.records[-1]["val_accuracy"])
        tests.append(result.test_accuracy)
    return sum(vals) / len(vals), sum(tests) / len(tests)


def main() -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(stderr=True)
    table = Table(title=f"best of 40 trials on MNIST-1D MLP at 160 epochs; retrained {RETRAIN_EPOCHS} epochs x {len(RETRAIN_SEEDS)} seeds")
    for col in ("seed", "strategy", "epochs used", "diverged", "found val acc", "retrained val acc", "test acc", "lr", "wd", "momentum", "hidden", "seconds"):
        table.add_column(col, justify="right")
    found_wins, retrained_wins = [], []
    with tempfile.TemporaryDirectory() as root:
        for seed in SEEDS:
            base = bs.build_config({**BASE, "train": {**BASE["train"], "seed": seed}})
            data = load_data(base.data)
            found, retrained = {}, {}
            for name, kwargs in STRATEGIES.items():
                start = time.perf_counter()
                console.print(f"seed {seed}: {name} ...")
                result = bs.search(base, SPACE, bs.tune.TuneSettings(seed=seed, **kwargs), root=root, progress=False, data=data)
                best = result.best
                found[name] = best.score
                retrained[name], test = retrain(base, best.values, data)
                v = best.values
                table.add_row(
                    str(seed), name, str(epoch_budget(result)), str(sum(t.status == "diverged" for t in result.trials)),
                    f"{best.score:.3f}", f"{retrained[name]:.3f}", f"{test:.3f}",
                    f"{v['train.lr']:.3g}", f"{v['train.weight_decay']:.2g}", f"{v['train.momentum']:.4f}", str(v["model.hidden"]),
                    f"{time.perf_counter() - start:.0f}",
                )  # fmt: skip
            found_wins.append(found["coarse_to_fine"] >= max(found["random"], found["grid"]))
            retrained_wins.append(retrained["coarse_to_fine"] >= max(retrained["random"], retrained["grid"]))
            table.add_section()
    Console(width=200).print(table)
    for seed, f, r in zip(SEEDS, found_wins, retrained_wins):
        print(f"seed {seed}: coarse_to_fine >= max(random, grid): found {'yes' if f else 'NO'}, retrained {'yes' if r else 'NO'}")
    print(f"coarse_to_fine at least as good: found {sum(found_wins)}/{len(SEEDS)} seeds, retrained {sum(retrained_wins)}/{len(SEEDS)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
