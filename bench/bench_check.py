"""How long `babysit check` takes on the MNIST-1D convnet (goal: under a minute on a CPU).

Baseline, measured in the same run (after a warm-up epoch): one training epoch
of the same model and recipe. The ratio says how many epochs of training the
whole preflight costs. On a CPU shared with other jobs, torch's default of one
thread per core can slow everything down many times; OMP_NUM_THREADS=1 avoids it.

    .venv/bin/python bench/bench_check.py
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import babysit as bs
from babysit.cli.demo import DEMO_CONFIG
from babysit.build import load_data, model_from_config

GOAL_SECONDS = 60.0


def main() -> int:
    cfg = bs.build_config(DEMO_CONFIG)
    data = load_data(cfg.data)

    one_epoch = replace(cfg.train, epochs=1)
    bs.fit(model_from_config(cfg.model, data, seed=0), data, one_epoch, progress=False)  # warm-up: imports, allocator
    start = time.perf_counter()
    bs.fit(model_from_config(cfg.model, data, seed=0), data, one_epoch, progress=False)
    epoch = time.perf_counter() - start

    start = time.perf_counter()
    report = bs.check(model_from_config(cfg.model, data, seed=0), data, cfg.train, progress=False)
    checks = time.perf_counter() - start

    slowest = sorted(report.results, key=lambda r: -r.seconds)[:3]
    print(f"one training epoch (baseline): {epoch:.2f}s")
    print(f"babysit check, all {len(report.results)} checks: {checks:.2f}s = {checks / epoch:.1f}x one epoch; status {report.status}")
    print("slowest: " + ", ".join(f"{r.name} {r.seconds:.2f}s" for r in slowest))
    print(f"goal: under {GOAL_SECONDS:.0f}s -> {'met' if checks < GOAL_SECONDS else 'MISSED'}")
    return 0 if checks < GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
