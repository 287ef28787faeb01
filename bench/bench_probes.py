"""What watching costs: a plain PyTorch loop against babysit's `fit` with probes off, light and full,
and against the same plain loop recorded with `bs.record` (light probes, `run.log_epoch` per epoch).

Goals (issues 4, 12, 13): `fit` with probes 'off' costs <= 2% over the plain loop,
the default preset ('light') <= 5%, 'full' (every step) <= 50%; your own loop
recorded with `bs.record` (light probes) <= 5%. All are ratios against the plain
loop measured in this same run, on the same model, data, batch size and optimiser:

- MNIST-1D: the built-in convnet on the built-in data (36 steps per epoch);
- CIFAR-sized: a 3-block convnet on random 3x32x32 tensors (timing needs no real images).

The plain loop is what a user would write: shuffle, forward, loss, backward,
Adam step, the epoch's training loss and accuracy, a validation pass per epoch
and one test pass at the end (the same work `fit` does).

Robust on a busy shared machine:
- the clock on the CPU is the process's CPU time (`time.process_time`) with one
  torch thread, which other processes disturb far less than wall time (on CUDA:
  wall time);
- each variant is compared with the plain loop run right beside it, in the order
  P V V P (V P P V in every other round), and its ratio is (V1 + V2) / (P1 + P2):
  a background load that drifts over the four runs cancels out, and no variant is
  compared with a plain run made under a different load;
- each run is at least `--min-seconds` (default 2) CPU-seconds of the plain loop:
  the epochs are raised until the plain loop, timed over `--epochs` epochs in the
  warm-up, takes that long, so fixed per-run costs and timer granularity stay
  below a percent;
- the ratio is the median over `--repeats` rounds (default 5), which drops the
  rounds where a burst hit one run. The ratio of the fastest runs is printed beside
  it, in brackets; it compares minima from different moments and is noisier.

On a shared 2-core VM (its neighbours invisible to it), even idle, one
variant's ratio moved by up to 5% between runs of the older, interleaved design;
on a busy day two identical plain runs back to back differed by up to 30%, and
'off' (which costs next to nothing) read 1.013x and 1.065x in two runs. The last
column is immune to that: a probed step's time over an unprobed one's inside a
single run that probes every other step (`in_run`); it is what a probed step
costs, not a goal.

    python bench/bench_probes.py                 # both models, about six minutes on 2 CPU cores
    python bench/bench_probes.py --min-seconds 0.5 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

import babysit as bs
from babysit.data.datasets import Dataset, Split

GOALS = {"off": 1.02, "light": 1.05, "full": 1.50, "own loop": 1.05}


def mnist1d() -> tuple[Dataset, torch.nn.Module]:
    data = bs.prepare(bs.load_dataset("mnist1d"))
    bs.train.seed_everything(0)
    return data, bs.blocks.convnet(data.input_shape, data.num_classes, channels=(32, 32, 32), kernel_size=5)


def cifar_sized(n_train: int = 2000, n_val: int = 500) -> tuple[Dataset, torch.nn.Module]:
    g = torch.Generator().manual_seed(0)
    split = lambda n: Split(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    data = Dataset("random-cifar", split(n_train), split(n_val), split(n_val), 10, (3, 32, 32), tuple("0123456789"))
    bs.train.seed_everything(0)
    return data, bs.blocks.convnet(data.input_shape, data.num_classes, channels=(32, 64, 128), kernel_size=3)


MODELS = {"mnist1d": ("MNIST-1D convnet", mnist1d), "cifar": ("CIFAR-sized convnet", cifar_sized)}


def plain_loop(
    model: torch.nn.Module, data: Dataset, epochs: int, batch_size: int, device: torch.device, runs_dir: str | None = None
) -> None:
    """The hand-written PyTorch loop babysit is measured against; with `runs_dir`, recorded by `bs.record`."""
    model.to(device)
    x, y = data.train.x.to(device), data.train.y.to(device)
    xv, yv = data.val.x.to(device), data.val.y.to(device)
    xt, yt = data.test.x.to(device), data.test.y.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    with bs.record(model, opt, runs_dir=runs_dir) if runs_dir else contextlib.nullcontext() as run:
        _epochs(model, opt, x, y, xv, yv, xt, yt, g, epochs, batch_size, device, run)


def _epochs(model, opt, x, y, xv, yv, xt, yt, g, epochs: int, batch_size: int, device: torch.device, run) -> None:
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=g).to(device)
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            scores = model(x[idx])
            loss = F.cross_entropy(scores, y[idx])
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (scores.detach().argmax(1) == y[idx]).sum()
        train_loss, train_accuracy = loss_sum.item() / len(y), correct.item() / len(y)
        model.eval()
        with torch.no_grad():
            scores = model(xv)
            val_loss, val_accuracy = F.cross_entropy(scores, yv).item(), (scores.argmax(1) == yv).float().mean().item()
        if run is not None:  # the one line a user adds per epoch
            run.log_epoch(train_loss=train_loss, train_accuracy=train_accuracy, val_loss=val_loss, val_accuracy=val_accuracy)
    with torch.no_grad():  # the test pass at the end, as `fit` does
        (model(xt).argmax(1) == yt).float().mean().item()


def babysit_fit(model: torch.nn.Module, data: Dataset, epochs: int, batch_size: int, device: torch.device, preset: str) -> None:
    recipe = bs.Recipe(optimizer="adam", lr=1e-3, epochs=epochs, batch_size=batch_size, device=str(device))
    with bs.watch(preset=preset) as w:
        bs.fit(model, data, recipe, callbacks=[w], progress=False)


class _StepClock:
    """A `fit` callback that times each training step (data, forward, backward, optimiser step, probes)."""

    def __init__(self, clock) -> None:
        self.clock, self.last, self.steps = clock, None, []

    def on_epoch_start(self, state) -> None:
        self.last = self.clock()  # the validation pass between epochs is not a step

    def on_batch_end(self, state) -> None:
        now = self.clock()
        self.steps.append(now - self.last)
        self.last = now


def in_run(data: Dataset, model: torch.nn.Module, args: argparse.Namespace, device: torch.device) -> float:
    """A probed step's time over an unprobed one's, inside one `fit` that probes every other step.

    Each probed step is timed beside the unprobed steps around it, milliseconds
    apart, so the machine's load and the run's memory layout (which move whole runs
    by several percent on a shared VM) cancel out. Every probed step follows an
    unprobed one, whose kernels leave the probes' code cold, as in a run that probes
    rarely; in `full` every step follows a probed one. Median over the steps.
    """
    clock = time.perf_counter if device.type == "cuda" else time.thread_time
    timer = _StepClock(clock)
    recipe = bs.Recipe(optimizer="adam", lr=1e-3, epochs=max(args.epochs, 10), batch_size=args.batch_size, device=str(device))
    with bs.watch(every=lambda step: step % 2 == 0) as w:
        bs.fit(copy.deepcopy(model), data, recipe, callbacks=[w, timer], progress=False)
    # fit counts steps from 1: the first one (index 0) is unprobed, the second probed, ...
    return statistics.median(timer.steps[1::2]) / statistics.median(timer.steps[0::2])


def bench(data: Dataset, model: torch.nn.Module, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Epochs per run, the plain loop's median seconds, each variant's median per-round ratio to it (and the ratio of minima)."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time

    def timed(fn, epochs: int) -> float:
        m = copy.deepcopy(model)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        fn(m, epochs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return clock() - start

    variants = {"plain": lambda m, e: plain_loop(m, data, e, args.batch_size, device)}
    for preset in ("off", "light", "full"):
        variants[preset] = lambda m, e, p=preset: babysit_fit(m, data, e, args.batch_size, device, p)
    runs_dir = tempfile.mkdtemp(prefix="bench-own-loop-")
    variants["own loop"] = lambda m, e: plain_loop(m, data, e, args.batch_size, device, runs_dir=runs_dir)
    for fn in variants.values():  # warm-up: allocator, kernels, lazy imports of every path
        timed(fn, 1)
    per_epoch = timed(variants["plain"], args.epochs) / args.epochs  # several epochs: the fixed costs do not inflate it
    epochs = max(args.epochs, math.ceil(args.min_seconds / max(per_epoch, 1e-6)))
    rounds = [_round(variants, timed, epochs, flip=i % 2 == 1) for i in range(args.repeats)]
    runs = {k: [t for _, times in rounds for t in times.get(k, [])] for k in variants}
    ratios = {k: statistics.median(r[k] for r, _ in rounds) for k in GOALS}
    by_minima = {k: min(runs[k]) / min(runs["plain"]) for k in GOALS}
    return {"epochs": epochs, "plain": statistics.median(runs["plain"]), "ratios": ratios, "by_minima": by_minima}


def _round(variants: dict, timed, epochs: int, flip: bool) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each variant against the plain loop run beside it, P V V P (V P P V when `flip`): (V1 + V2) / (P1 + P2).

    The four runs are back to back, so a background load that drifts linearly over
    them cancels out of the ratio, and no variant is compared with a plain run made
    while the load was different. Returns the ratios and every run's seconds.
    """
    ratios, times = {}, {}
    for key in variants:
        if key == "plain":
            continue
        total = {"plain": 0.0, key: 0.0}
        for k in (key, "plain", "plain", key) if flip else ("plain", key, key, "plain"):
            seconds = timed(variants[k], epochs)
            total[k] += seconds
            times.setdefault(k, []).append(seconds)
        ratios[key] = total[key] / total["plain"]
    return ratios, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="at least this many epochs per run (raised to --min-seconds)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="least plain-loop CPU seconds per run")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    # One thread by default: on a shared CPU, OpenMP threads waiting on each other swamp the
    # difference being measured.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    console = Console(stderr=True)
    clock = "wall" if device.type == "cuda" else "CPU"
    table = Table(title=f"probe overhead vs a plain PyTorch loop ({device}, {torch.get_num_threads()} threads, median ratio of {args.repeats} rounds; ratio of the fastest runs in brackets)")
    for column in ("model", "steps", f"plain ({clock} s, median)", "off", "light", "full", "own loop (light)", "probed step, in-run"):
        table.add_column(column, justify="right")
    failures = []
    for key in args.models:
        name, build = MODELS[key]
        data, model = build()
        console.print(f"timing {name}: 4 variants x {args.repeats} rounds of P V V P runs of at least {args.min_seconds:g} CPU-s ...")
        t = bench(data, model, args, device)
        step_ratio = in_run(data, model, args, device)
        steps = t["epochs"] * -(-len(data.train) // args.batch_size)
        ratios = t["ratios"]
        failures += [f"{name} {k}: {r:.3f}x > {GOALS[k]:.2f}x" for k, r in ratios.items() if r > GOALS[k]]
        table.add_row(
            name, str(steps), f"{t['plain']:.2f}", *(f"{ratios[k]:.3f}x ({t['by_minima'][k]:.3f}x)" for k in GOALS), f"{step_ratio:.3f}x"
        )
    Console().print(table)
    Console().print(
        f"goals: off <= {GOALS['off']:.2f}x, light <= {GOALS['light']:.2f}x, full <= {GOALS['full']:.2f}x, own loop <= {GOALS['own loop']:.2f}x of the plain loop"
    )
    Console().print("all goals met" if not failures else "missed: " + "; ".join(failures))


if __name__ == "__main__":
    main()
