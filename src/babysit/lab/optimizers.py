"""Lab `optimizers`: optimiser paths on 2-D surfaces, steps to converge, and L-BFGS (docs/lectures.md §8).

Three surfaces from the lecture's pictures: an ill-conditioned quadratic (SGD
zig-zags across the steep direction and crawls along the shallow one), a saddle
point (the gradient vanishes; momentum escapes faster), and a surface with a
local minimum (plain SGD settles in it; momentum can roll through).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from babysit.errors import ConfigError
from babysit.lab.result import EXPERIMENTS, LabResult, option_limits
from babysit.optim.optimizers import build_optimizer

Surface = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Problem:
    name: str
    f: Surface
    start: tuple[float, float]
    minimum: float  # lowest value of f; "converged" is f - minimum < tol
    box: tuple[float, float, float, float]  # xmin, xmax, ymin, ymax for the contour plot


def _quadratic(p: torch.Tensor) -> torch.Tensor:
    # Condition number 25: curvature 1 along x, 25 along y.
    return 0.5 * (p[0] ** 2 + 25.0 * p[1] ** 2)


def _saddle(p: torch.Tensor) -> torch.Tensor:
    # Saddle at the origin, minima at (0, ±1) with f = -0.25.
    return p[0] ** 2 + 0.25 * p[1] ** 4 - 0.5 * p[1] ** 2


def _local_minimum(p: torch.Tensor) -> torch.Tensor:
    # Global minimum near x = -1.036 (f ≈ -0.3054), a local one near x = +0.960 (f ≈ +0.294).
    return (p[0] ** 2 - 1.0) ** 2 + 0.3 * p[0] + p[1] ** 2


PROBLEMS = (
    _Problem("ill-conditioned quadratic", _quadratic, (-4.0, 1.0), 0.0, (-4.5, 1.5, -1.5, 1.5)),
    _Problem("saddle point", _saddle, (-1.5, 1e-3), -0.25, (-2.0, 2.0, -1.6, 1.6)),
    _Problem("local minimum", _local_minimum, (2.0, 0.5), -0.3054, (-2.0, 2.3, -1.0, 1.0)),
)

# Each optimiser at a rate that is stable on the quadratic's steep direction (lr < 2/25 for SGD).
SETTINGS = {
    "sgd": {"lr": 0.02},
    "momentum": {"lr": 0.02, "momentum": 0.9},
    "nesterov": {"lr": 0.02, "momentum": 0.9},
    "adagrad": {"lr": 0.5},
    "rmsprop": {"lr": 0.02},
    "adam": {"lr": 0.1},
}


def run_path(problem: _Problem, name: str, steps: int, tol: float, **settings: float) -> dict:
    """Optimise `problem.f` from its start; the path, the first step within `tol` of the minimum, the end value."""
    p = torch.tensor(problem.start, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(name, [p], **settings)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = problem.f(p)
        loss.backward()
        return loss

    path, reached = [p.detach().clone().numpy()], None
    for step in range(1, steps + 1):
        opt.step(closure)
        path.append(p.detach().clone().numpy())
        value = problem.f(p.detach()).item()
        if not math.isfinite(value):
            break
        if reached is None and value - problem.minimum < tol:
            reached = step
    return {"path": np.array(path), "reached": reached, "final": problem.f(p.detach()).item()}


def _slope_steps(name: str, steps: int) -> list[float]:
    """|Δx| per step of optimiser `name` (with its SETTINGS) on f(x) = x."""
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(name, [x], **SETTINGS[name])
    sizes = []
    for _ in range(steps):
        before = x.item()
        opt.zero_grad()
        x.sum().backward()
        opt.step()
        sizes.append(abs(x.item() - before))
    return sizes


def _contour(ax, problem: _Problem) -> None:
    x0, x1, y0, y1 = problem.box
    xs, ys = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
    zs = problem.f(torch.tensor(np.stack([xs, ys]))).numpy()
    ax.contour(xs, ys, zs, levels=30, colors="0.75", linewidths=0.6)
    ax.set(xlim=(x0, x1), ylim=(y0, y1), title=problem.name)


@EXPERIMENTS.register("optimizers")
@option_limits(tol=(1e-12, 1))
def optimizers_experiment(steps: int = 300, tol: float = 1e-3) -> LabResult:
    """Paths of sgd, momentum, nesterov, adagrad, rmsprop, adam on three 2-D surfaces; steps to converge; L-BFGS."""
    if steps < 100:
        raise ConfigError(f"option 'steps' must be at least 100 to show the step-size trends, got {steps}")
    result = LabResult(
        "optimizers",
        "Optimisers on 2-D surfaces",
        "CS231n lecture 7, optimisation: SGD zig-zags on ill-conditioned surfaces and stalls at saddle points; "
        "momentum builds velocity (and overshoots); Nesterov corrects the overshoot; AdaGrad's steps shrink forever "
        "while RMSProp keeps going; Adam combines momentum and RMSProp; L-BFGS converges in few full-batch steps.",
    )
    runs: dict[str, dict[str, dict]] = {}
    fig, axes = plt.subplots(1, len(PROBLEMS), figsize=(6 * len(PROBLEMS), 5))
    for ax, problem in zip(axes, PROBLEMS):
        _contour(ax, problem)
        runs[problem.name] = {}
        for i, (name, settings) in enumerate(SETTINGS.items()):
            r = run_path(problem, name, steps, tol, **settings)
            runs[problem.name][name] = r
            ax.plot(r["path"][:, 0], r["path"][:, 1], color=f"C{i}", lw=1.2, label=name)
        lb = run_path(problem, "lbfgs", 20, tol, lr=1.0)
        runs[problem.name]["lbfgs"] = lb
        ax.plot(lb["path"][:, 0], lb["path"][:, 1], "k--o", ms=3, lw=1, label="lbfgs")
        ax.plot(*problem.start, "k*", ms=12)
    axes[0].legend(fontsize=8, loc="lower right")
    result.figure("optimiser paths on three surfaces (star: start)", fig)
    names = [*SETTINGS, "lbfgs"]
    result.table(
        f"Steps to get within {tol:g} of the minimum (— = not within {steps} steps; L-BFGS: iterations, 20 at most)",
        ["surface", *names],
        [[pname, *[(r[n]["reached"] if r[n]["reached"] is not None else "—") for n in names]] for pname, r in runs.items()],
    )
    result.table(
        "Final loss",
        ["surface", *names],
        [[pname, *[r[n]["final"] for n in names]] for pname, r in runs.items()],
    )

    # On a constant slope f = x the gradient never shrinks, so any change in step size is the
    # optimiser's own: AdaGrad's cache grows as t (step ∝ 1/sqrt(t)), RMSProp's settles.
    scale = {name: _slope_steps(name, steps) for name in ("adagrad", "rmsprop")}
    result.table(
        "Step size on a constant slope f(x) = x (gradient always 1)",
        ["optimiser", "step 1", "step 10", "step 100", f"step {steps}"],
        [[n, s[0], s[9], s[99], s[-1]] for n, s in scale.items()],
    )

    quad = runs[PROBLEMS[0].name]
    def steps_or_inf(r: dict) -> float:
        return r["reached"] if r["reached"] is not None else math.inf

    result.claim(
        "momentum reaches the quadratic's minimum in fewer steps than SGD",
        steps_or_inf(quad["momentum"]) < steps_or_inf(quad["sgd"]),
        f"momentum {quad['momentum']['reached']} vs sgd {quad['sgd']['reached']} steps",
    )
    overshoot = {n: float(quad[n]["path"][:, 0].max()) for n in ("momentum", "nesterov")}
    result.claim(
        "momentum overshoots the minimum along the shallow axis; Nesterov's look-ahead overshoots less",
        overshoot["momentum"] > 0.1 and overshoot["nesterov"] < overshoot["momentum"],
        f"max x past the minimum: momentum {overshoot['momentum']:.3f}, nesterov {overshoot['nesterov']:.3f}",
    )
    ada, rms = scale["adagrad"], scale["rmsprop"]
    result.claim(
        "AdaGrad's effective step keeps shrinking while RMSProp's does not",
        # RMSProp's cache is a moving average of g² = 1, so its step settles at lr itself.
        ada[-1] < 0.3 * ada[9] and rms[-1] > 0.95 * SETTINGS["rmsprop"]["lr"],
        f"AdaGrad step {ada[9]:.3g} (step 10) -> {ada[-1]:.3g} (step {steps}); RMSProp settles at {rms[-1]:.3g} (lr {SETTINGS['rmsprop']['lr']})",
    )
    saddle = runs[PROBLEMS[1].name]
    result.claim(
        "at a saddle point momentum escapes in fewer steps than SGD",
        steps_or_inf(saddle["momentum"]) < steps_or_inf(saddle["sgd"]),
        f"momentum {saddle['momentum']['reached']} vs sgd {saddle['sgd']['reached']} steps",
    )
    local = runs[PROBLEMS[2].name]
    result.claim(
        "SGD settles in the local minimum; momentum rolls through to the lower one",
        local["sgd"]["final"] > 0 and local["momentum"]["final"] < 0,
        f"final loss: sgd {local['sgd']['final']:.3f}, momentum {local['momentum']['final']:.3f}",
    )
    result.claim(
        "full-batch L-BFGS solves the quadratic in a handful of iterations",
        quad["lbfgs"]["reached"] is not None and quad["lbfgs"]["reached"] <= 5,
        f"{quad['lbfgs']['reached']} iterations",
    )
    return result
