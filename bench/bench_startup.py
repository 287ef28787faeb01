"""What switching babysit on costs before training starts: `import babysit` against `import torch`,
and the fixed cost of `bs.record` plus the diagnosis on a tiny hand-written loop.

Goals (issue 22, "cheap to switch on"):
- `import babysit` takes at most 1.2x the CPU time of `import torch`: each is a fresh
  interpreter (`python -c "import ..."`), timed by the CPU time (user + system) the
  child used, the two alternating so a burst of load elsewhere hits both alike;
  the median of `--repeats` runs of each. The babysit interpreter also times its own
  `import torch` and what `import babysit` adds after it (in-process CPU time), a
  ratio without the start-up and shut-down that both kinds of interpreter pay; the
  goal holds for both ratios.
- the loop of README's "Your own loop, two added lines" (a 2-layer MLP on random
  data, 3 epochs of 8 batches, `run.log_step` and `run.log_epoch`) recorded with
  `bs.record` and followed by `run.findings` costs at most 0.2 CPU-seconds more than
  the same loop without babysit. Each measurement is a fresh interpreter that imports
  torch and babysit (not counted), runs the plain loop once to warm torch up, then
  times the plain loop, the recorded loop with its diagnosis, and the plain loop
  again; the cost is the recorded loop minus the mean of the two plain ones. Anything
  babysit imports on first use (it loads its heavier parts lazily) is counted. The
  median of `--record-repeats` such interpreters.
- structural, on any machine: after `import babysit` none of matplotlib, optuna,
  sklearn, typer, mnist1d is loaded.

Prints one line per goal (and, beside them, what the whole tiny script pays, import
included) and exits 1 when a goal is missed.

    python bench/bench_startup.py                    # about a minute of CPU, two on a busy 2-core machine
    python bench/bench_startup.py --repeats 3 --record-repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile

IMPORT_GOAL = 1.2  # import babysit / import torch, CPU time
RECORD_GOAL = 0.2  # CPU-seconds of bs.record + run.findings over the plain loop
HEAVY = ("matplotlib", "optuna", "sklearn", "typer", "mnist1d")  # loaded only by what needs them

# The child that times the loops: README's own-loop example, with the epoch count and
# the final diagnosis of this benchmark. `{runs_dir}` is filled in by `record_cost`.
LOOP = """
import json, time
import torch
import torch.nn.functional as F
import babysit as bs

# One thread: the clock is the process's CPU time, and idle worker threads spinning
# between tiny kernels would count as work (it made the plain loop vary 3x).
torch.set_num_threads(1)
torch.manual_seed(0)
x, y = torch.randn(512, 20), torch.arange(512) % 4
xv, yv = torch.randn(128, 20), torch.arange(128) % 4


def setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def plain():
    model, opt = setup()
    for epoch in range(3):
        for xb, yb in zip(x.split(64), y.split(64)):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(); loss.backward(); opt.step()
            loss.item()  # what run.log_step reads
        with torch.no_grad():
            val_loss = F.cross_entropy(model(xv), yv).item()
        loss.item(), val_loss


def recorded():
    model, opt = setup()
    with bs.record(model, opt, runs_dir={runs_dir!r}) as run:
        for epoch in range(3):
            for xb, yb in zip(x.split(64), y.split(64)):
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(); loss.backward(); opt.step()
                run.log_step(loss)
            with torch.no_grad():
                val_loss = F.cross_entropy(model(xv), yv).item()
            run.log_epoch(train_loss=loss.item(), val_loss=val_loss)
    return run.findings


def cpu(fn):
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


plain()  # warm-up: torch's first kernels and autograd set-up belong to any loop
before, _ = cpu(plain)
ours, findings = cpu(recorded)
after, _ = cpu(plain)
print(json.dumps({{"plain": [before, after], "recorded": ours, "findings": [f.rule for f in findings]}}))
"""


# `import babysit`, with torch imported first and timed apart: the same interpreter then also
# says what babysit adds on top of torch, free of the start-up and shut-down both kinds pay
# (torch's shut-down alone is about 0.4 CPU-s, which dilutes the whole-interpreter ratio).
SPLIT = """
import json, time
start = time.process_time()
import torch
middle = time.process_time()
import babysit
print(json.dumps([middle - start, time.process_time() - middle]))
"""


def child(code: str) -> tuple[float, str]:
    """CPU seconds (user + system) of a fresh interpreter running `code`, and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), out


def import_times(repeats: int) -> dict[str, list[float]]:
    """CPU seconds of `repeats` fresh interpreters of each kind, alternating which goes first.

    Returns, one value per repeat: "torch" (`import torch`), "babysit" (`import babysit`),
    and from inside the babysit interpreter "torch_inside" (its `import torch`) and
    "babysit_inside" (what `import babysit` then adds).
    """
    times: dict[str, list[float]] = {"torch": [], "babysit": [], "torch_inside": [], "babysit_inside": []}
    for i in range(repeats):
        # Alternate which goes first, so neither always follows the other's page-cache warm-up.
        for kind in ("torch", "babysit") if i % 2 == 0 else ("babysit", "torch"):
            seconds, out = child("import torch" if kind == "torch" else SPLIT)
            times[kind].append(seconds)
            if kind == "babysit":
                inside = json.loads(out.strip().splitlines()[-1])
                times["torch_inside"].append(inside[0])
                times["babysit_inside"].append(inside[1])
    return times


def loaded(code: str, modules: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of `modules` a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return out.splitlines()[-1].split() if out.strip() else []


def record_cost(runs_dir: str) -> dict[str, float | list[str]]:
    """One fresh interpreter's plain loop and recorded loop (CPU seconds) and the cost of recording it."""
    out = subprocess.run([sys.executable, "-c", LOOP.format(runs_dir=runs_dir)], check=True, capture_output=True, text=True).stdout
    timed = json.loads(out.strip().splitlines()[-1])
    plain = statistics.fmean(timed["plain"])
    return {"plain": plain, "recorded": timed["recorded"], "cost": timed["recorded"] - plain, "findings": timed["findings"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="fresh interpreters per import (default 11)")
    parser.add_argument("--record-repeats", type=int, default=5, help="fresh interpreters timing the loops (default 5)")
    args = parser.parse_args()
    missed = 0

    heavy = loaded("import babysit")
    missed += bool(heavy)
    print(f"bench_startup: after `import babysit`: {', '.join(heavy) or 'none'} of {', '.join(HEAVY)} loaded ({'MISSES' if heavy else 'meets'} the goal: none)")

    times = import_times(args.repeats)
    t, b = statistics.median(times["torch"]), statistics.median(times["babysit"])
    t_in, b_in = statistics.median(times["torch_inside"]), statistics.median(times["babysit_inside"])
    ratio, ratio_in = b / t, (t_in + b_in) / t_in
    met = max(ratio, ratio_in) <= IMPORT_GOAL
    missed += not met
    print(
        f"bench_startup: import babysit {b:.2f} CPU-s vs import torch {t:.2f} CPU-s = {ratio:.2f}x (whole interpreters); "
        f"inside one, import babysit adds {b_in:.2f} CPU-s to import torch's {t_in:.2f} = {ratio_in:.2f}x "
        f"(medians of {args.repeats}; {'meets' if met else 'MISSES'} the goal of {IMPORT_GOAL:g}x)"
    )

    with tempfile.TemporaryDirectory() as runs_dir:
        runs = [record_cost(runs_dir) for _ in range(args.record_repeats)]
    cost = statistics.median(r["cost"] for r in runs)
    plain = statistics.median(r["plain"] for r in runs)
    missed += cost > RECORD_GOAL
    print(
        f"bench_startup: bs.record + run.findings on a tiny loop costs {cost:+.3f} CPU-s over the plain loop's {plain:.3f} "
        f"(median of {args.record_repeats}; {'meets' if cost <= RECORD_GOAL else 'MISSES'} the goal of {RECORD_GOAL:g} CPU-s)"
    )
    # Not a goal, what a user sees: a tiny script with the two added lines, run start to end.
    print(f"bench_startup: in all, the tiny script with babysit takes {b_in + cost:+.2f} CPU-s over the same script without it (import included)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
