"""`babysit auto` at a fixed CPU budget, beside the recipe trained for the whole budget, random search and TPE.

Families, no hand tuning beyond the base config each names, `--seeds` seeds each (default 3):

    mnist1d-convnet   `babysit auto --data mnist1d --model convnet`: the data's profile (config.PROFILES)
    mnist1d-mlp       `--data mnist1d --model mlp` with the profile's blocks named in full
    digits            `babysit auto --data digits`: the family follows the data (a convnet, with its profile)

and data sets auto was never tuned on, each written as a user would bring it (an .npz file,
`--data FILE.npz`; an MLP on a table, `--model convnet` on signals and images), split once,
before any run, into a tuning half (rules may be calibrated on it) and a reporting half
(the acceptance is read on it; its numbers were not looked at while changing auto):

    tuning     breast-cancer, iris (tables), mnist1d-noisy, digits-4x4
    reporting  wine, digits-table (tables), mnist1d-small, digits-16x16

Methods, each with the same B CPU-seconds (`time.process_time`, like auto; one torch thread):
    auto      `auto(cfg, budget_s=B)`
    recipe    the base config (the profile, or the family's defaults with one cosine decay when it has
              no schedule, as auto gives it) trained for the whole budget, no checks and no search:
              the plain loop a user writes; its epochs from a 3-epoch measurement of its own cost
    random, tpe   a one-stage search of about 20 trials over auto's default space in 60% of B, and
              the best trial retrained with what is left
Tables get a standardised logistic regression (scikit-learn) beside them. Every row is a final
model's test accuracy: on a family with flips or crops, averaged over their fixed views as `fit`
tests, for every method alike (auto's and the recipe's rows also keep the one-view accuracy).
Auto's rows also record the share of the budget spent, whether its final run finished its
schedule, its deviations, and the error-level findings on its final model.

    .venv/bin/python bench/bench_auto.py --budget 1m --jobs 2 --results runs/bench_auto.jsonl
    .venv/bin/python bench/bench_auto.py --budget 20s --seeds 1 --only wine   # a smoke run
    .venv/bin/python bench/bench_auto.py --budget 2.5m --only mnist1d-convnet --methods auto recipe --results runs/bench_auto.jsonl
    .venv/bin/python bench/bench_auto.py --half reporting --budget 1m --jobs 2 --results runs/bench_auto.jsonl   # resumable
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from rich.console import Console
from rich.table import Table

import babysit as bs
from babysit.build import load_data, run
from babysit.cli.demo import PAPER_ROW
from babysit.diagnose.rules import diagnose
from babysit.train.record import load_run
from babysit.tune.defaults import default_space, lr_proposal
from babysit.tune.runner import trial_config
from babysit.workflows.auto import BudgetGuard, cpu_seconds, parse_budget
from babysit.workflows.baselines import is_tabular, logistic_regression
from babysit.workflows.budget import EpochMeter

FAMILIES: dict[str, dict[str, Any]] = {
    "mnist1d-convnet": {"data": {"name": "mnist1d"}, "model": {"name": "convnet"}},
    "mnist1d-mlp": {
        "data": {"name": "mnist1d", "augment": ["crop"], "crop_padding": 3},
        "model": {"name": "mlp", "hidden": [512, 512], "batchnorm": True, "dropout": 0.2},
        "train": {"optimizer": "adamw", "schedule": "onecycle", "label_smoothing": 0.1, "averaging": "ema"},
    },
    "digits": {"data": {"name": "digits"}},
}
# The unseen sets: name -> (half, model family). Split once, before any run; breast-cancer was the
# set issue 24 was written about, so it is in the tuning half.
UNSEEN: dict[str, tuple[str, str]] = {
    "breast-cancer": ("tuning", "mlp"),
    "iris": ("tuning", "mlp"),
    "mnist1d-noisy": ("tuning", "convnet"),
    "digits-4x4": ("tuning", "convnet"),
    "wine": ("reporting", "mlp"),
    "digits-table": ("reporting", "mlp"),
    "mnist1d-small": ("reporting", "convnet"),
    "digits-16x16": ("reporting", "convnet"),
}
BASELINE_SHARE = 0.6  # of the budget to the baselines' search; the rest retrains the best
BASELINE_TRIALS = 20
RECIPE_PROBE_EPOCHS = 3  # the recipe measures its own epoch on this many epochs before its run
METHODS = ("auto", "recipe", "random", "tpe")
STAGES = ("lr_range", "preflight", "calibrate", "search", "reevaluate", "final", "report")


def _mnist1d(**changes: Any) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    for key, value in changes.items():
        setattr(args, key, value)
    d = make_dataset(args)
    return {"x": d["x"][:, None, :].astype(np.float32), "y": d["y"], "x_test": d["x_test"][:, None, :].astype(np.float32), "y_test": d["y_test"]}


def _digits(size: int | None) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images, dtype=torch.float32)[:, None]
    y = load_digits().target
    if size is None:
        return {"x": images.flatten(1).numpy(), "y": y}  # the 64 pixels as a table's columns
    return {"x": torch.nn.functional.interpolate(images, size=(size, size), mode="area" if size < 8 else "bilinear").numpy(), "y": y}


def _table(name: str) -> dict[str, np.ndarray]:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    return {"x": bunch.data.astype(np.float32), "y": bunch.target}


BUILDERS = {
    "breast-cancer": lambda: _table("breast_cancer"),
    "iris": lambda: _table("iris"),
    "wine": lambda: _table("wine"),
    "digits-table": lambda: _digits(None),
    "digits-4x4": lambda: _digits(4),
    "digits-16x16": lambda: _digits(16),
    "mnist1d-noisy": lambda: _mnist1d(seed=1, iid_noise_scale=0.1, corr_noise_scale=0.5),
    "mnist1d-small": lambda: _mnist1d(seed=2, num_samples=2000),
}


def base_config(family: str, seed: int, root: Path) -> bs.RunConfig:
    """The config a user would write for `family`: a built-in's, or `--data FILE.npz --model M` on the set saved as a user would save it."""
    if family in FAMILIES:
        raw = FAMILIES[family]
        return bs.build_config({**raw, "train": {**raw.get("train", {}), "seed": seed}})
    path = root / f"{family}.npz"
    if not path.exists():
        state = np.random.get_state()  # mnist1d's generator seeds numpy's global RNG
        np.savez(path, **BUILDERS[family]())
        np.random.set_state(state)
    return bs.build_config({"data": {"name": "arrays", "path": str(path)}, "model": {"name": UNSEEN[family][1]}, "train": {"seed": seed}})


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


def recipe(cfg: bs.RunConfig, budget: float) -> tuple[float, int, int, float | None]:
    """The base config trained for the whole budget, no checks and no search (the plain loop); test accuracy, epochs planned and
    trained, and the one-view test accuracy where the test predictions are averaged over the augmentation's fixed views.

    Like auto, a base without a schedule gets one cosine decay over the run (its length is the budget's).
    """
    start = cpu_seconds()
    if cfg.train.schedule == "none":
        cfg = trial_config(cfg, {"train.schedule": "cosine"}, cfg.train.epochs)
    data = load_data(cfg.data)
    meter, t0 = EpochMeter(), cpu_seconds()
    run(trial_config(cfg, {}, RECIPE_PROBE_EPOCHS), callbacks=[meter], progress=False, data=data)
    cost = meter.cost(cpu_seconds() - t0)
    assert cost is not None
    epochs = max(1, cost.epochs_for(budget - (cpu_seconds() - start)))
    done = run(trial_config(cfg, {}, epochs), callbacks=[BudgetGuard(start + budget)], progress=False, data=data).result
    return done.test_accuracy, epochs, done.epochs, done.test_accuracy_single


def one(family: str, seed: int, method: str, budget: float, root: str) -> dict[str, Any]:
    """One row of the bench: `method` on `family` with `seed`, in a worker of its own (one torch thread)."""
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = base_config(family, seed, Path(root))
    wall = time.perf_counter()
    row: dict[str, Any] = {"family": family, "seed": seed, "method": method, "budget_s": budget}
    try:
        _measure(row, cfg, family, seed, method, budget, root)
    except Exception as e:  # a method that fails on a set is a result too (it scores nothing), not the end of the bench
        row.update(test_accuracy=float("nan"), error=f"{type(e).__name__}: {e}")
    row["wall_s"] = time.perf_counter() - wall
    return row


def _measure(row: dict[str, Any], cfg: bs.RunConfig, family: str, seed: int, method: str, budget: float, root: str) -> None:
    """Run `method` and fill `row` with what it measured."""
    if method == "auto":
        out = Path(root) / f"{family}-{seed}-{budget:g}"
        done = bs.auto(cfg, budget_s=budget, out_dir=out, seed=seed, progress=False)
        final = load_run(sorted(glob.glob(str(out / "final*")))[-1])
        errors = [f.rule for f in diagnose(final) if f.severity == "error"]
        row.update(test_accuracy=done.test_accuracy, stages=done.stages, cpu_minutes=done.cpu_minutes, plan=done.plan, budget_spent=done.budget_spent,
                   deviations=done.deviations, truncated=done.plan["final_epochs_trained"] < done.plan["final_epochs_replanned"], errors=errors,
                   baselines=[b.to_dict() for b in done.baselines], incumbent=done.plan.get("incumbent"),
                   test_accuracy_single=(final.summary or {}).get("test_accuracy_single"))  # fmt: skip
    elif method == "recipe":
        row["test_accuracy"], row["epochs"], row["epochs_trained"], row["test_accuracy_single"] = recipe(cfg, budget)
    else:
        row["test_accuracy"] = baseline(method, cfg, budget, seed, Path(root) / f"{family}-{seed}-{method}-{budget:g}")


def logistic(family: str, root: str) -> float | None:
    """The standardised logistic regression's test accuracy on a table (None for signals and images)."""
    data = load_data(base_config(family, 0, Path(root)).data)
    return logistic_regression(data).test_accuracy if is_tabular(data) else None


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
    names = [*FAMILIES, *UNSEEN]
    parser.add_argument("--only", nargs="*", choices=names, help="families or data sets to run (default: --half's)")
    parser.add_argument("--half", choices=("builtin", "tuning", "reporting", "unseen"), default="builtin",
                        help="builtin: the three built-in families; tuning / reporting: that half of the unseen sets; unseen: both halves")  # fmt: skip
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="auto and/or the baselines (default all)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process and one torch thread each (default 1)")
    parser.add_argument("--results", type=Path, help="a JSON-lines file: each finished run is appended; runs already in it are not rerun")
    args = parser.parse_args()
    budget = parse_budget(args.budget)
    if args.only:
        families = args.only
    elif args.half == "builtin":
        families = list(FAMILIES)
    else:
        families = [f for f, (half, _) in UNSEEN.items() if args.half in (half, "unseen")]
    console = Console(stderr=True)
    rows = load_rows(args.results, budget)
    have = {(r["family"], r["seed"], r["method"]) for r in rows}
    # auto first: it is the row the acceptance asks for; the baselines follow as time allows
    tasks = [(f, s, m) for m in args.methods for f in families for s in range(args.seeds) if (f, s, m) not in have]
    console.print(f"{len(tasks)} run(s) of {budget / 60:.2f} CPU-min on {args.jobs} worker(s); {len(have)} already in {args.results}")
    with tempfile.TemporaryDirectory() as root:
        reference = {f: logistic(f, root) for f in families if f in UNSEEN}  # also writes each set's .npz before the workers read it
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(one, f, s, m, budget, root): (f, s, m) for f, s, m in tasks}
            for future in as_completed(futures):
                row = future.result()
                rows.append(row)
                console.print(f"{row['family']} seed {row['seed']} {row['method']}: test {row['test_accuracy']:.4f} in {row['wall_s']:.0f}s wall {row.get('error', '')}")
                if args.results is not None:
                    with args.results.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
    print_tables(rows, families, args.methods, budget, reference)
    return 0


def _cell(xs: list[float]) -> str:
    if not xs:
        return "not run"
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.4f} ({len(xs)})"


def print_tables(rows: list[dict[str, Any]], families: list[str], methods: list[str], budget: float, reference: dict[str, float | None]) -> None:
    """The accuracy table of every method (and the logistic regression on tables), auto's budget and findings, its stages, the paper's."""
    out = Console(width=200)
    minutes = f"{budget / 60:.2f} CPU-minutes"
    table = Table(title=f"test accuracy at {minutes} per run, mean ± sd (n seeds)")
    table.add_column("data set")
    table.add_column("half")
    for method in methods:
        table.add_column(method if method in ("auto", "recipe") else f"{method} + retrain", justify="right")
    table.add_column("logistic regression", justify="right")
    for family in families:
        cells = [_cell([r["test_accuracy"] for r in rows if r["family"] == family and r["method"] == method]) for method in methods]
        ref = reference.get(family)
        table.add_row(family, UNSEEN[family][0] if family in UNSEEN else "builtin", *cells, "-" if ref is None else f"{ref:.4f}")
    out.print(table)
    autos = sorted((r for r in rows if r["method"] == "auto" and r["family"] in families), key=lambda r: (r["family"], r["seed"]))
    if not autos:
        return
    health = Table(title=f"babysit auto at {minutes}: budget spent, final run, findings on the final model")
    for col in ("data set", "seed", "spent", "final epochs", "truncated", "search stopped at stage 1", "deviations", "error findings", "test acc"):
        health.add_column(col, justify="right")
    for r in autos:
        plan, inc = r.get("plan", {}), r.get("incumbent") or {}
        health.add_row(r["family"], str(r["seed"]), f"{r.get('budget_spent', float('nan')):.2f}", f"{plan.get('final_epochs_trained')}/{plan.get('final_epochs_replanned', plan.get('final_epochs'))}",
                       "yes" if r.get("truncated") else "no", "yes" if inc.get("holds") else "no", str(len(r.get("deviations", []))),
                       ", ".join(r.get("errors", [])) or "0", f"{r['test_accuracy']:.4f}")  # fmt: skip
    out.print(health)
    stages = Table(title=f"babysit auto: CPU-minutes per stage (budget {minutes})")
    for col in ("data set", "seed", *STAGES, "total"):
        stages.add_column(col, justify="right")
    for r in autos:
        m = {k: v / 60 for k, v in r["stages"].items()}
        stages.add_row(r["family"], str(r["seed"]), *(f"{m.get(k, 0):.2f}" for k in STAGES), f"{r['cpu_minutes']:.2f}")
    out.print(stages)
    if any(f.startswith("mnist1d") for f in families):
        paper = Table(title="MNIST-1D paper (Greydanus 2020)")
        paper.add_column("model")
        paper.add_column("test accuracy", justify="right")
        for name, acc in PAPER_ROW.items():
            paper.add_row(name, f"{acc:.0%}")
        out.print(paper)


if __name__ == "__main__":
    sys.exit(main())
