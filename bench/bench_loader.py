"""Benchmark: babysit's in-memory batch iterator against torch's DataLoader, measured in the same run.

Both walk one shuffled epoch of CIFAR-sized data (50,000 x 3x32x32 float32,
~600 MB) in mini-batches of 128: `babysit.batches` (one randperm, one gather per
batch on the tensors' device) and `DataLoader(TensorDataset(x, y), shuffle=True)`
(the usual baseline: per-sample indexing, then collate). Prints each epoch time
and the ratio; the goal (issue 3) is the iterator at least 4x faster.

    python bench/bench_loader.py [--n 50000] [--batch-size 128] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from rich.console import Console
from rich.progress import Progress
from torch.utils.data import DataLoader, TensorDataset

from babysit.data.loader import batches

GOAL = 4.0


def epoch_seconds(make_epoch) -> float:
    """Wall time of one full epoch."""
    start = time.perf_counter()
    seen = 0
    for _, yb in make_epoch():
        seen += len(yb)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both (default 1: like for like)")
    args = parser.parse_args()
    # One thread each by default: DataLoader (num_workers=0) walks samples in one Python
    # thread, and on a shared machine multi-threaded kernels mostly measure contention.
    torch.set_num_threads(args.threads)
    console = Console(stderr=True)

    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.n,), generator=g)
    console.print(
        f"data: {args.n} x 3x32x32 float32 ({x.numel() * 4 / 1e6:.0f} MB), batch {args.batch_size}, "
        f"{args.threads} thread(s), best of {args.repeats} interleaved epochs"
    )
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    shuffle = torch.Generator().manual_seed(0)
    runs = {"DataLoader(TensorDataset)": lambda: loader, "babysit.batches": lambda: batches(x, y, args.batch_size, generator=shuffle)}
    best = {name: float("inf") for name in runs}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("epochs", total=args.repeats * len(runs))
        for _ in range(args.repeats):  # interleaved, so a burst of load elsewhere hits both alike
            for name, make_epoch in runs.items():
                best[name] = min(best[name], epoch_seconds(make_epoch))
                progress.advance(task)
    for name, seconds in best.items():
        console.print(f"{name:<26} {seconds:.3f} s/epoch")
    baseline, ours = best["DataLoader(TensorDataset)"], best["babysit.batches"]

    ratio = baseline / ours
    verdict = "meets" if ratio >= GOAL else "BELOW"
    print(f"bench_loader: in-memory iterator is {ratio:.1f}x faster than DataLoader per epoch ({verdict} the goal of {GOAL:g}x)")
    # A report, not a test: timings on a shared machine vary, so the exit code does not depend on them.
    return 0


if __name__ == "__main__":
    sys.exit(main())
