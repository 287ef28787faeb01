"""What an epoch costs late in a run that fits its training set, with subnormal floats flushed to zero and without.

A convnet that memorises 1,440 MNIST-1D signals drives its gradients and Adam's moments below
float32's smallest normal number late in its schedule; x86 arithmetic on such values is up to
100x slower. `fit` flushes them on the CPU (`train.trainer.flush_denormals`). Each mode trains
the same configuration (seed 0, one torch thread) and reports its mean CPU-seconds per epoch over
the first and the last eighth of the run; the goal is a late/early ratio near 1 with flushing,
where without it the ratio grows with the run's length. Both runs compute the same model
(test accuracy printed beside them).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_denormals.py --epochs 400
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_auto import BUILDERS  # noqa: E402  (the bench's MNIST-1D with 2,000 samples, as a user's .npz)

import babysit as bs  # noqa: E402
from babysit.build import run  # noqa: E402
from babysit.train import trainer  # noqa: E402

# The values auto's search picked for this set at 10 CPU-minutes (seed 2): a rate that fits the training set.
VALUES = {"lr": 0.0144, "weight_decay": 3.2e-4}


class _Clock:
    """CPU seconds at each epoch's end."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_epoch_end(self, state: Any) -> None:
        self.marks.append(time.process_time())


def measure(cfg: bs.RunConfig, flush: bool) -> tuple[float, float, float]:
    """(early, late) mean CPU-s per epoch and the test accuracy of one run, flushing subnormals or not."""
    clock = _Clock()
    if flush:
        done = run(cfg, progress=False, callbacks=[clock]).result
    else:
        keep = trainer.flush_denormals
        trainer.flush_denormals = lambda device: contextlib.nullcontext()  # the loop as it was before the flush
        try:
            done = run(cfg, progress=False, callbacks=[clock]).result
        finally:
            trainer.flush_denormals = keep
    gaps = np.diff(clock.marks)
    k = max(1, len(gaps) // 8)
    return float(gaps[:k].mean()), float(gaps[-k:].mean()), float(done.test_accuracy or float("nan"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "mnist1d-small.npz"
        np.savez(path, **BUILDERS["mnist1d-small"]())
        cfg = bs.build_config({"data": {"name": "arrays", "path": str(path)}, "model": {"name": "convnet"}, "train": {"seed": 0, **VALUES}})
        cfg = replace(cfg, train=replace(cfg.train, epochs=args.epochs, schedule="cosine"))
        print(f"MNIST-1D, 2,000 samples, convnet, {args.epochs} epochs, CPU-s per epoch (first / last eighth of the run):")
        for flush in (False, True):
            early, late, accuracy = measure(cfg, flush)
            print(f"  {'flushed' if flush else 'subnormals kept':16s} early {early:.4f}  late {late:.4f}  late/early {late / early:.2f}  test {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
