"""What watching costs: a plain PyTorch loop against babysit's `fit` with probes off, light and full,
and against the same plain loop recorded with `bs.record` (light probes, `run.log_epoch` per epoch).

Goals (issues 4, 12, 13, 22): `fit` with probes 'off' costs <= 2% over the plain loop,
the default preset ('light') <= 5%, 'full' (every step) <= 50%; your own loop
recorded with `bs.record` (light probes) <= 5%; and the program observer alone
(`bs.record(..., probes="off")`: the invariants of `watch.program`, which `fit` and
every recorded loop run besides the probes) <= 2%. Issue 25: with live TensorBoard events
(`LiveTensorBoard`: probe scalars and histograms, epoch metrics, the diagnosis at each
epoch end) the light and full goals still hold; and 'light' under bf16 autocast costs
<= 5% over the plain loop under the same autocast. All are ratios against the plain
loop measured in this same run, on the same model, data, batch size and optimiser:

- MNIST-1D: the built-in convnet on the built-in data (36 steps per epoch);
- CIFAR-sized: a 3-block convnet on random 3x32x32 tensors (timing needs no real images;
  800 of them per epoch, so that a race has about ten short epochs to pair).

The plain loop is what a user would write: shuffle, forward, loss, backward,
Adam step, the epoch's training loss and accuracy, a validation pass per epoch
and one test pass at the end (the same work `fit` does).

Robust on a busy shared machine. On a shared VM the CPU slows down for a few hundred
milliseconds at a time (80 ms epochs of the plain loop took 110-150 ms; neighbours'
load, invisible from inside), and two runs made seconds apart differ by as much. Two
threads taking turns epoch by epoch did not cancel it either (a plain loop against
itself read 0.99x-1.10x that way; 0.98x-1.00x in one thread). So:
- each variant runs epoch by epoch *interleaved with a plain loop in the same thread*:
  the plain loop's epochs run inside `fit`'s `on_epoch_end` (or, for your own loop,
  the two loops take turns), P V P V ... P, each epoch timed apart;
- each epoch of the variant is compared with the mean of the plain epochs just before
  and after it, a fraction of a second apart, so a burst or a drift hits both sides;
- the ratio is the interquartile mean (the mean of the middle half) of these per-epoch
  ratios over every round (`--repeats` rounds of at least `--min-seconds` of plain-loop
  work each): a burst that hits one side of a pair moves a ratio into the tails that
  are dropped, not the verdict; and unlike a median it does not jump between the two
  kinds of epoch of 'light' (with a probed step or without). Beside it, in brackets,
  the lowest and highest value of a single round, which shows the spread. Being per
  epoch, the ratio leaves out what `fit` spends once per run (its set-up, and 'light's
  extra probes in its first 64 steps): they do not grow with the run;
- the clock is the thread's CPU time with one torch thread (on CUDA: wall time,
  synchronised at each turn).

The last column is what a probed step costs over an unprobed one inside a single run
that probes every other step (`in_run`); every probed step there follows an unprobed
one, so it shows the probes' own work, not a goal.

    python bench/bench_probes.py                 # both models, about four minutes on 2 CPU cores
    python bench/bench_probes.py --min-seconds 0.5 --repeats 1   # a quick look
    python bench/bench_probes.py --models mnist1d --variants full "full + live TB" --clock process   # two columns, background threads counted
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import statistics
import tempfile
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

import babysit as bs
from babysit.data.datasets import Dataset, Split
from babysit.report.tensorboard import LiveTensorBoard

GOALS = {"off": 1.02, "light": 1.05, "full": 1.50, "own loop": 1.05, "program only": 1.02,
         "light + live TB": 1.05, "full + live TB": 1.50, "light, bf16": 1.05}  # fmt: skip
COLUMNS = {"own loop": "own loop (light)", "program only": "program only (own loop)", "light, bf16": "light, bf16 (vs plain bf16)"}  # column titles
# The variants that are a recorded own loop, and their probe preset.
OWN_LOOP = {"own loop": "light", "program only": "off"}
# `fit` variants beyond a bare preset: (preset, live TensorBoard events, precision). The bf16 one is measured
# against the plain loop under bf16 autocast too: the ratio is the probes' cost on half-precision outputs.
FIT = {"off": ("off", False, "fp32"), "light": ("light", False, "fp32"), "full": ("full", False, "fp32"),
       "light + live TB": ("light", True, "fp32"), "full + live TB": ("full", True, "fp32"), "light, bf16": ("light", False, "bf16")}  # fmt: skip


def mnist1d() -> tuple[Dataset, torch.nn.Module]:
    data = bs.prepare(bs.load_dataset("mnist1d"))
    bs.train.seed_everything(0)
    return data, bs.blocks.convnet(data.input_shape, data.num_classes, channels=(32, 32, 32), kernel_size=5)


def cifar_sized(n_train: int = 800, n_val: int = 200) -> tuple[Dataset, torch.nn.Module]:
    g = torch.Generator().manual_seed(0)
    split = lambda n: Split(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    data = Dataset("random-cifar", split(n_train), split(n_val), split(n_val), 10, (3, 32, 32), tuple("0123456789"))
    bs.train.seed_everything(0)
    return data, bs.blocks.convnet(data.input_shape, data.num_classes, channels=(32, 64, 128), kernel_size=3)


MODELS = {"mnist1d": ("MNIST-1D convnet", mnist1d), "cifar": ("CIFAR-sized convnet", cifar_sized)}


def plain_epochs(
    model: torch.nn.Module, data: Dataset, epochs: int, batch_size: int, device: torch.device, runs_dir: str | None = None, probes: str = "light",
    precision: str = "fp32",
) -> Iterator[None]:
    """The hand-written PyTorch loop babysit is measured against, one epoch per `next()`; with `runs_dir`, recorded by `bs.record` (`probes`);
    with precision "bf16", its forward passes under bf16 autocast (as `fit`'s).

    The test pass follows the last epoch, in the same turn.
    """
    model.to(device)
    x, y = data.train.x.to(device), data.train.y.to(device)
    xv, yv = data.val.x.to(device), data.val.y.to(device)
    xt, yt = data.test.x.to(device), data.test.y.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    with bs.record(model, opt, runs_dir=runs_dir, probes=probes) if runs_dir else contextlib.nullcontext() as run:
        for epoch in range(epochs):
            with torch.enable_grad():  # also when `fit` runs it from a callback
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    train_loss, train_accuracy = _train_epoch(model, opt, x, y, g, batch_size, device)
            model.eval()
            with torch.no_grad():
                scores = model(xv)
                val_loss, val_accuracy = F.cross_entropy(scores, yv).item(), (scores.argmax(1) == yv).float().mean().item()
            if run is not None:  # the one line a user adds per epoch
                run.log_epoch(train_loss=train_loss, train_accuracy=train_accuracy, val_loss=val_loss, val_accuracy=val_accuracy)
            if epoch == epochs - 1:
                with torch.no_grad():  # the test pass at the end, as `fit` does
                    (model(xt).argmax(1) == yt).float().mean().item()
            yield


def _train_epoch(model, opt, x, y, g, batch_size: int, device: torch.device) -> tuple[float, float]:
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
    return loss_sum.item() / len(y), correct.item() / len(y)


class _Clock:
    """Seconds of this thread's CPU time, or with `process` of all this process's threads (on CUDA: wall time after a synchronise).

    The process clock counts the work a variant hands to a background thread (live TensorBoard's
    writer, drained at each epoch end, so that it falls in the variant's own turn).
    """

    process = False  # set once by --clock

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time() if self.process else time.thread_time()


class _Beside:
    """A `fit` callback that runs one epoch of another loop after each of fit's epochs, timing the two apart."""

    def __init__(self, other: Iterator[None], clock: _Clock) -> None:
        self.other, self.clock = other, clock
        self.fit_turns: list[float] = []
        self.other_turns: list[float] = []
        self.mark = clock()

    def on_epoch_end(self, state) -> None:
        start = self.clock()
        self.fit_turns.append(start - self.mark)
        next(self.other, None)
        self.mark = self.clock()
        self.other_turns.append(self.mark - start)


def race(variant: str, data: Dataset, model: torch.nn.Module, epochs: int, args: argparse.Namespace, device: torch.device, runs_dir: str) -> tuple[list[float], list[float]]:
    """One variant's epochs interleaved with the plain loop's in this thread: P V P V ... V P. Returns the seconds of each turn (plain, variant).

    On the CPU the clock is this thread's CPU time: run it with one torch thread (`torch.set_num_threads(1)`).
    """
    clock = _Clock(device)
    preset, live, precision = FIT.get(variant, ("light", False, "fp32"))
    plain = plain_epochs(copy.deepcopy(model), data, epochs + 1, args.batch_size, device, precision=precision)
    first = _turn(plain, clock)
    if variant in OWN_LOOP:
        mine = plain_epochs(copy.deepcopy(model), data, epochs, args.batch_size, device, runs_dir=runs_dir, probes=OWN_LOOP[variant])
        plain_turns, own_turns = [first], []
        for _ in range(epochs):
            own_turns.append(_turn(mine, clock))
            plain_turns.append(_turn(plain, clock))
        return plain_turns, own_turns
    beside = _Beside(plain, clock)
    recipe = bs.Recipe(optimizer="adam", lr=1e-3, epochs=epochs, batch_size=args.batch_size, device=str(device), precision=precision)
    board = LiveTensorBoard(tempfile.mkdtemp(prefix="bench-live-tb-")) if live else None
    with bs.watch(preset=preset, sink=board.probe if board else None) as w:
        bs.fit(copy.deepcopy(model), data, recipe, callbacks=[w, *([board] if board else []), beside], progress=False)
    beside.fit_turns[-1] += clock() - beside.mark  # the test pass and fit's end after the last epoch
    return [first, *beside.other_turns], beside.fit_turns


def _turn(loop: Iterator[None], clock: _Clock) -> float:
    """Seconds of one epoch of `loop`."""
    start = clock()
    next(loop, None)
    return clock() - start


def interquartile_mean(values: list[float]) -> float:
    """The mean of the middle half of `values` (all of them when there are fewer than 4)."""
    ordered = sorted(values)
    cut = len(ordered) // 4
    return statistics.mean(ordered[cut : len(ordered) - cut])


def pair_ratios(plain: list[float], variant: list[float]) -> list[float]:
    """Each variant epoch over the mean of the plain epochs on either side of it."""
    return [v / ((plain[i] + plain[i + 1]) / 2) for i, v in enumerate(variant)]


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


def bench(data: Dataset, model: torch.nn.Module, args: argparse.Namespace, device: torch.device) -> dict:
    """Epochs per race, the plain loop's median epoch seconds, and per variant the pooled ratio and the range of per-round ones (`interquartile_mean`)."""
    runs_dir = tempfile.mkdtemp(prefix="bench-own-loop-")
    for variant in args.variants:  # warm-up: allocator, kernels, lazy imports of every path
        race(variant, data, model, 1, args, device, runs_dir)
    clock, plain = _Clock(device), plain_epochs(copy.deepcopy(model), data, args.epochs, args.batch_size, device)
    per_epoch = statistics.median(_turn(plain, clock) for _ in range(args.epochs))
    epochs = max(args.epochs, math.ceil(args.min_seconds / max(per_epoch, 1e-6)))
    ratios: dict[str, list[float]] = {k: [] for k in args.variants}
    rounds: dict[str, list[float]] = {k: [] for k in args.variants}
    plain_epochs_seen: list[float] = []
    for i in range(args.repeats):
        order = list(args.variants) if i % 2 == 0 else list(args.variants)[::-1]
        for variant in order:
            p, v = race(variant, data, model, epochs, args, device, runs_dir)
            r = pair_ratios(p, v)
            ratios[variant] += r
            rounds[variant].append(interquartile_mean(r))
            plain_epochs_seen += p
    return {
        "epochs": epochs,
        "plain": statistics.median(plain_epochs_seen),
        "ratios": {k: interquartile_mean(r) for k, r in ratios.items()},
        "spread": {k: (min(r), max(r)) for k, r in rounds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="at least this many epochs per race (raised to --min-seconds)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="least plain-loop CPU seconds per race")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    # One thread by default: on a shared CPU, OpenMP threads waiting on each other swamp the
    # difference being measured.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--variants", nargs="+", choices=list(GOALS), default=list(GOALS), metavar="VARIANT",
                        help=f"the columns to time (default: all): {', '.join(repr(k) for k in GOALS)}")
    parser.add_argument("--clock", choices=("thread", "process"), default="thread",
                        help="CPU time of the training thread (default), or of the whole process: with it, work a variant hands to a background thread counts")
    args = parser.parse_args()
    args.variants = list(dict.fromkeys(args.variants))
    torch.set_num_threads(args.threads)
    _Clock.process = args.clock == "process"
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    console = Console(stderr=True)
    clock = "wall" if device.type == "cuda" else "CPU"
    table = Table(
        title=f"probe overhead vs a plain PyTorch loop ({device}, {torch.get_num_threads()} threads; per-epoch ratio, interquartile mean over {args.repeats} rounds, "
        "in brackets the lowest and highest round)"
    )
    variants = [k for k in GOALS if k in args.variants]  # in the table's order
    for column in ("model", "epochs per race", f"plain epoch ({clock} s)", *(COLUMNS.get(k, k) for k in variants), "probed step, in-run"):
        table.add_column(column, justify="right")
    failures = []
    for key in args.models:
        name, build = MODELS[key]
        data, model = build()
        console.print(f"timing {name}: {len(variants)} variants x {args.repeats} rounds, each epoch interleaved with a plain loop's, at least {args.min_seconds:g} CPU-s of it per race ...")
        t = bench(data, model, args, device)
        step_ratio = in_run(data, model, args, device)
        ratios, spread = t["ratios"], t["spread"]
        failures += [f"{name} {k}: {r:.3f}x > {GOALS[k]:.2f}x" for k, r in ratios.items() if r > GOALS[k]]
        table.add_row(
            name, str(t["epochs"]), f"{t['plain']:.3f}", *(f"{ratios[k]:.3f}x ({spread[k][0]:.3f}-{spread[k][1]:.3f})" for k in variants), f"{step_ratio:.3f}x"
        )
    Console(width=max(Console().width, 150)).print(table)
    Console().print("goals: " + ", ".join(f"{k} <= {GOALS[k]:.2f}x" for k in variants) + " of the plain loop (bf16: of the plain loop in bf16)")
    Console().print("all goals met" if not failures else "missed: " + "; ".join(failures))


if __name__ == "__main__":
    main()
