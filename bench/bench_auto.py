"""`babysit auto` at a fixed CPU budget, beside random search and Optuna's TPE at the same budget.

Three families, no hand tuning beyond the base config each names (the model
family and its fixed blocks), `--seeds` seeds each (default 3):

    mnist1d-convnet   `babysit auto --data mnist1d --model convnet`: the data's profile (config.PROFILES)
    mnist1d-mlp       a BN MLP 512-512 with the convnet profile's fixed blocks (±3 shift, AdamW,
                      one-cycle, label smoothing 0.1, EMA) and dropout 0.2: what `--model mlp`
                      now gets from its profile (config.PROFILES), named here in full; auto
                      searches the rates (and dropout when the budget buys enough trials)
    digits            `babysit auto --data digits`: the family follows the data (a convnet, with its profile)

For each: `auto(cfg, budget_s=B)`; then two baselines with the same B CPU-seconds
(`time.process_time`, like auto) and auto's default space (lr around the range
test's proposal, weight decay): a one-stage random or TPE search of about 20
trials, 60% of B, and the best trial retrained with what is left. Every row is the
final model's test accuracy; the CPU-minutes per auto stage are printed; the
MNIST-1D paper's table (Greydanus 2020) is printed beside.

    .venv/bin/python bench/bench_auto.py --jobs 2             # 10 CPU-minutes x 3 methods x 3 families x 3 seeds: 4.5 CPU-hours
    .venv/bin/python bench/bench_auto.py --budget 20s --seeds 1 --only digits   # a smoke run
    .venv/bin/python bench/bench_auto.py --budget 10m --seeds 1 --only mnist1d-convnet --methods auto
    .venv/bin/python bench/bench_auto.py --jobs 2 --results runs/bench_auto.jsonl   # resumable: reruns only what is missing
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import optuna
import torch
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
    "mnist1d-mlp": {
        "data": {"name": "mnist1d", "augment": ["crop"], "crop_padding": 3},
        "model": {"name": "mlp", "hidden": [512, 512], "batchnorm": True, "dropout": 0.2},
        "train": {"optimizer": "adamw", "schedule": "onecycle", "label_smoothing": 0.1, "averaging": "ema"},
    },
    "digits": {"data": {"name": "digits"}},
}
BASELINE_SHARE = 0.6  # of the budget to the baselines' search; the rest retrains the best
BASELINE_TRIALS = 20
METHODS = ("auto", "random", "tpe")
STAGES = ("preflight", "lr_range", "calibrate", "search", "reevaluate", "final", "report")


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


def one(family: str, seed: int, method: str, budget: float, root: str) -> dict[str, Any]:
    """One row of the bench: `method` on `family` with `seed`, in a worker of its own (one torch thread)."""
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    raw = FAMILIES[family]
    cfg = bs.build_config({**raw, "train": {**raw.get("train", {}), "seed": seed}})
    wall = time.perf_counter()
    row: dict[str, Any] = {"family": family, "seed": seed, "method": method, "budget_s": budget}
    if method == "auto":
        done = bs.auto(cfg, budget_s=budget, out_dir=Path(root) / f"{family}-{seed}", seed=seed, progress=False)
        row.update(test_accuracy=done.test_accuracy, stages=done.stages, cpu_minutes=done.cpu_minutes, plan=done.plan)
    else:
        row["test_accuracy"] = baseline(method, cfg, budget, seed, Path(root) / f"{family}-{seed}-{method}")
    row["wall_s"] = time.perf_counter() - wall
    return row


def load_rows(path: Path | None, budget: float) -> list[dict[str, Any]]:
    """Rows already in the results file at this budget (a rerun adds only what is missing)."""
    if path is None or not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("budget_s") == budget]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="10m", help="CPU time per method and run (default 10m)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=list(FAMILIES), help="families to run (default all)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="auto and/or the baselines (default all)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process and one torch thread each (default 1)")
    parser.add_argument("--results", type=Path, help="a JSON-lines file: each finished run is appended; runs already in it are not rerun")
    args = parser.parse_args()
    budget = parse_budget(args.budget)
    families = args.only or list(FAMILIES)
    console = Console(stderr=True)
    rows = load_rows(args.results, budget)
    have = {(r["family"], r["seed"], r["method"]) for r in rows}
    # auto first: it is the row the acceptance asks for; the baselines follow as time allows
    tasks = [(f, s, m) for m in args.methods for f in families for s in range(args.seeds) if (f, s, m) not in have]
    console.print(f"{len(tasks)} run(s) of {budget / 60:.2f} CPU-min on {args.jobs} worker(s); {len(have)} already in {args.results}")
    with tempfile.TemporaryDirectory() as root, ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(one, f, s, m, budget, root): (f, s, m) for f, s, m in tasks}
        for future in as_completed(futures):
            row = future.result()
            rows.append(row)
            console.print(f"{row['family']} seed {row['seed']} {row['method']}: test {row['test_accuracy']:.4f} in {row['wall_s']:.0f}s wall")
            if args.results is not None:
                with args.results.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    print_tables(rows, families, args.methods, budget)
    return 0


def print_tables(rows: list[dict[str, Any]], families: list[str], methods: list[str], budget: float) -> None:
    """The per-stage CPU table of the auto runs, the accuracy table of every method, and the paper's."""
    out = Console(width=160)
    stages = Table(title=f"babysit auto: CPU-minutes per stage (budget {budget / 60:.2f} CPU-min)")
    for col in ("family", "seed", *STAGES, "total", "test acc"):
        stages.add_column(col, justify="right")
    for r in sorted((r for r in rows if r["method"] == "auto" and r["family"] in families), key=lambda r: (r["family"], r["seed"])):
        m = {k: v / 60 for k, v in r["stages"].items()}
        stages.add_row(r["family"], str(r["seed"]), *(f"{m.get(k, 0):.2f}" for k in STAGES), f"{r['cpu_minutes']:.2f}", f"{r['test_accuracy']:.4f}")
    out.print(stages)
    table = Table(title=f"test accuracy at {budget / 60:.2f} CPU-minutes per run, mean ± sd (n seeds)")
    table.add_column("family")
    for method in methods:
        table.add_column(method if method == "auto" else f"{method} + retrain", justify="right")
    for family in families:
        cells = []
        for method in methods:
            xs = [r["test_accuracy"] for r in rows if r["family"] == family and r["method"] == method]
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            cells.append(f"{statistics.mean(xs):.4f} ± {sd:.4f} ({len(xs)})" if xs else "not run")
        table.add_row(family, *cells)
    out.print(table)
    paper = Table(title="MNIST-1D paper (Greydanus 2020)")
    paper.add_column("model")
    paper.add_column("test accuracy", justify="right")
    for name, acc in PAPER_ROW.items():
        paper.add_row(name, f"{acc:.0%}")
    out.print(paper)


if __name__ == "__main__":
    sys.exit(main())
