"""`babysit auto` at a fixed CPU budget, beside random search and Optuna's TPE at the same budget.

Three families, no hand tuning beyond the base config each names (the model
family and its fixed blocks), `--seeds` seeds each (default 3):

    mnist1d-convnet   `babysit auto --data mnist1d --model convnet`: the data's profile (config.PROFILES)
    mnist1d-mlp       a BN MLP 512-512
    digits            `babysit auto --data digits`: the family follows the data (a convnet)

For each: `auto(cfg, budget_s=B)`; then two baselines with the same B CPU-seconds
(`time.process_time`, like auto) and auto's default space (lr around the range
test's proposal, weight decay): a one-stage random or TPE search of about 20
trials, 60% of B, and the best trial retrained with what is left. Every row is the
final model's test accuracy; the CPU-minutes per auto stage are printed; the
MNIST-1D paper's table (Greydanus 2020) is printed beside.

    .venv/bin/python bench/bench_auto.py                      # 10 CPU-minutes x 3 methods x 3 families x 3 seeds: hours
    .venv/bin/python bench/bench_auto.py --budget 20s --seeds 1 --only digits   # a smoke run
    .venv/bin/python bench/bench_auto.py --budget 10m --seeds 1 --only mnist1d-convnet --methods auto
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
from rich.console import Console
from rich.table import Table

import babysit as bs
from babysit.build import load_data, run
from babysit.cli.demo import PAPER_ROW
from babysit.tune.defaults import default_space, lr_proposal
from babysit.tune.runner import trial_config
from babysit.workflows.auto import BudgetGuard, cpu_seconds, parse_budget

FAMILIES = {
    "mnist1d-convnet": {"data": {"name": "mnist1d"}, "model": {"name": "convnet"}},
    "mnist1d-mlp": {"data": {"name": "mnist1d"}, "model": {"name": "mlp", "hidden": [512, 512], "batchnorm": True}, "train": {"optimizer": "adam"}},
    "digits": {"data": {"name": "digits"}},
}
BASELINE_SHARE = 0.6  # of the budget to the baselines' search; the rest retrains the best
BASELINE_TRIALS = 20
METHODS = ("auto", "random", "tpe")


def baseline(strategy: str, cfg: bs.RunConfig, budget: float, seed: int, root: Path) -> float:
    """A one-stage `strategy` search over auto's default space, then the best retrained, in `budget` CPU-seconds; test accuracy."""
    start = cpu_seconds()
    data = load_data(cfg.data)
    space = default_space(cfg, proposal=lr_proposal(cfg, data)).space
    t0 = cpu_seconds()
    run(trial_config(cfg, {}, 1), progress=False, data=data)
    per_epoch = max(cpu_seconds() - t0, 1e-3)
    epochs = max(1, int(BASELINE_SHARE * budget / per_epoch / BASELINE_TRIALS))
    settings = bs.tune.TuneSettings(strategy=strategy, trials=BASELINE_TRIALS, epochs=epochs, seed=seed)
    result = bs.search(cfg, space, settings, root=root, progress=False, data=data)
    if result.best is None:
        return float("nan")
    left = budget - (cpu_seconds() - start)
    final = trial_config(cfg, result.best.values, max(epochs, int(left / per_epoch)))
    return run(final, callbacks=[BudgetGuard(start + budget)], progress=False, data=data).result.test_accuracy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="10m", help="CPU time per method and run (default 10m)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=list(FAMILIES), help="families to run (default all)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="auto and/or the baselines (default all)")
    args = parser.parse_args()
    budget = parse_budget(args.budget)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(stderr=True)
    accs: dict[tuple[str, str], list[float]] = {}
    stages = Table(title=f"babysit auto: CPU-minutes per stage (budget {budget / 60:.2f} CPU-min)")
    for col in ("family", "seed", "preflight", "lr_range", "calibrate", "search", "reevaluate", "final", "report", "total", "test acc"):
        stages.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as root:
        for family in args.only or list(FAMILIES):
            for seed in range(args.seeds):
                raw = FAMILIES[family]
                cfg = bs.build_config({**raw, "train": {**raw.get("train", {}), "seed": seed}})
                wall = time.perf_counter()
                if "auto" in args.methods:
                    console.print(f"{family} seed {seed}: auto ...")
                    done = bs.auto(cfg, budget_s=budget, out_dir=Path(root) / f"{family}-{seed}", seed=seed, progress=False)
                    accs.setdefault((family, "auto"), []).append(done.test_accuracy)
                    m = {k: v / 60 for k, v in done.stages.items()}
                    stages.add_row(family, str(seed), *(f"{m.get(k, 0):.2f}" for k in ("preflight", "lr_range", "calibrate", "search", "reevaluate", "final", "report")),
                                   f"{done.cpu_minutes:.2f}", f"{done.test_accuracy:.4f}")  # fmt: skip
                    console.print(f"  auto plan: {done.plan}")
                for strategy in [m for m in args.methods if m != "auto"]:
                    console.print(f"{family} seed {seed}: {strategy} ...")
                    accs.setdefault((family, strategy), []).append(baseline(strategy, cfg, budget, seed, Path(root) / f"{family}-{seed}-{strategy}"))
                console.print(f"  {time.perf_counter() - wall:.0f}s wall")
    out = Console(width=160)
    out.print(stages)
    table = Table(title=f"test accuracy at {budget / 60:.2f} CPU-minutes per run, mean ± sd over {args.seeds} seed(s)")
    table.add_column("family")
    for method in args.methods:
        table.add_column(method if method == "auto" else f"{method} + retrain", justify="right")
    for family in args.only or list(FAMILIES):
        cells = []
        for method in args.methods:
            xs = accs[(family, method)]
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            cells.append(f"{statistics.mean(xs):.4f} ± {sd:.4f}")
        table.add_row(family, *cells)
    out.print(table)
    paper = Table(title="MNIST-1D paper (Greydanus 2020)")
    paper.add_column("model")
    paper.add_column("test accuracy", justify="right")
    for name, acc in PAPER_ROW.items():
        paper.add_row(name, f"{acc:.0%}")
    out.print(paper)
    return 0


if __name__ == "__main__":
    sys.exit(main())
