"""Coarse-to-fine vs random vs grid vs Optuna TPE at 40 trials and the same epoch budget, judged by retrained test accuracy.

MNIST-1D, a two-layer ReLU MLP trained with SGD + momentum; the space is the
lectures' four: learning rate and weight decay on log scales, momentum as
1 - beta = 10^r, hidden width on a log scale. Each strategy gets 40 trials and
160 epochs in all:

    random, grid, tpe   40 trials x 4 epochs
    coarse_to_fine      20 trials x 2 epochs (wide), then 20 x 6 epochs (narrowed, best carried)

The judge is the chosen configuration's test accuracy after retraining it for
RETRAIN_EPOCHS epochs on three training seeds (mean), over at least five search
seeds (`--seeds`), reported as mean and standard deviation across search seeds.
The search's own best validation accuracy ("found") is printed too but is not a fair
measure: coarse-to-fine's last stage trains 6 epochs against the others' 4, so its
best trial is ahead for that reason alone, and a short trial's winner need not be
the best configuration for a long run.

    .venv/bin/python bench/bench_search.py                               # tens of minutes on 2 idle cores
    .venv/bin/python bench/bench_search.py --seeds 1 --retrain-epochs 1 --trials 8   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import optuna
from rich.console import Console
from rich.table import Table

import babysit as bs
from babysit.build import load_data, run
from babysit.tune.runner import trial_config

SEEDS = 5
RETRAIN_EPOCHS = 30
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
    "tpe": dict(strategy="tpe", trials=40, epochs=4),
    "coarse_to_fine": dict(strategy="coarse_to_fine", trials=40, stages=2, epochs=2, epoch_growth=3),
}


def epoch_budget(result: bs.tune.TuneResult) -> int:
    return sum(len(p.configs) * p.epochs for p in result.plans)


def retrain(base: bs.RunConfig, values: dict, data: bs.Dataset, epochs: int) -> tuple[float, float]:
    """Mean final validation and test accuracy of `values` trained `epochs` epochs with RETRAIN_SEEDS."""
    vals, tests = [], []
    for seed in RETRAIN_SEEDS:
        result = run(trial_config(base, {**values, "train.seed": seed}, epochs), progress=False, data=data).result
        vals.append(result.history.records[-1]["val_accuracy"])
        tests.append(result.test_accuracy)
    return sum(vals) / len(vals), sum(tests) / len(tests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=SEEDS, help="search seeds (default 5)")
    parser.add_argument("--retrain-epochs", type=int, default=RETRAIN_EPOCHS)
    parser.add_argument("--trials", type=int, default=40, help="trials per search (smoke runs: fewer)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(stderr=True)
    table = Table(title=f"best of {args.trials} trials on MNIST-1D MLP; retrained {args.retrain_epochs} epochs x {len(RETRAIN_SEEDS)} seeds")
    for col in ("seed", "strategy", "epochs used", "diverged", "found val acc", "retrained val acc", "retrained test acc", "lr", "wd", "momentum", "hidden", "seconds"):
        table.add_column(col, justify="right")
    tests: dict[str, list[float]] = {name: [] for name in STRATEGIES}
    with tempfile.TemporaryDirectory() as root:
        for seed in range(args.seeds):
            base = bs.build_config({**BASE, "train": {**BASE["train"], "seed": seed}})
            data = load_data(base.data)
            for name, kwargs in STRATEGIES.items():
                start = time.perf_counter()
                console.print(f"seed {seed}: {name} ...")
                settings = bs.tune.TuneSettings(seed=seed, **{**kwargs, "trials": args.trials})
                result = bs.search(base, SPACE, settings, root=root, progress=False, data=data)
                best = result.best
                val, test = retrain(base, best.values, data, args.retrain_epochs)
                tests[name].append(test)
                v = best.values
                table.add_row(
                    str(seed), name, str(epoch_budget(result)), str(sum(t.status == "diverged" for t in result.trials)),
                    f"{best.score:.3f}", f"{val:.3f}", f"{test:.3f}",
                    f"{v['train.lr']:.3g}", f"{v['train.weight_decay']:.2g}", f"{v['train.momentum']:.4f}", str(v["model.hidden"]),
                    f"{time.perf_counter() - start:.0f}",
                )  # fmt: skip
            table.add_section()
    Console(width=200).print(table)
    summary = Table(title=f"retrained test accuracy of the chosen config over {args.seeds} search seed(s)")
    for col in ("strategy", "mean", "sd (search seeds)", "min", "max"):
        summary.add_column(col, justify="right")
    for name, xs in sorted(tests.items(), key=lambda kv: -statistics.mean(kv[1])):
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        summary.add_row(name, f"{statistics.mean(xs):.4f}", f"{sd:.4f}", f"{min(xs):.4f}", f"{max(xs):.4f}")
    Console(width=200).print(summary)
    means = {k: statistics.mean(v) for k, v in tests.items()}
    spread = max((statistics.stdev(v) for v in tests.values()), default=0.0) if args.seeds > 1 else float("nan")
    gap = means["coarse_to_fine"] - max(means["tpe"], means["random"])
    print(f"coarse_to_fine - max(tpe, random) = {gap:+.4f}; largest seed spread (sd) {spread:.4f}: "
          + ("a real difference" if gap > spread else "within the seed spread"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
