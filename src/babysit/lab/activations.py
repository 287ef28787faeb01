"""Lab `activations`: each activation and its derivative, and where its gradient dies (docs/lectures.md §1)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from babysit.lab.result import EXPERIMENTS, LabResult
from babysit.nn.activations import ACTIVATIONS

# A unit whose local gradient is below this passes on less than 1% of the upstream
# gradient: for the lectures' argument ("saturated units kill gradients") it is dead.
DEAD_GRAD = 0.01


def _elementwise(name: str) -> torch.nn.Module | None:
    """The activation as an elementwise module, or None for those that are not (maxout mixes units)."""
    module = ACTIVATIONS.get(name)()
    probe = torch.randn(4, 6)
    try:
        out = module(probe)
    except (RuntimeError, ValueError):
        return None
    return module if out.shape == probe.shape else None


def _value_and_grad(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = module(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), grad


@EXPERIMENTS.register("activations")
def activations_experiment(samples: int = 100_000, seed: int = 0) -> LabResult:
    """Each activation and its derivative over [-10, 10]; the fraction of dead gradient on N(0,1) input."""
    result = LabResult(
        "activations",
        "Activation functions and their gradients",
        "CS231n lecture 6, activation functions: sigmoid and tanh saturate and kill gradients, "
        "ReLU does not saturate for x > 0 but is zero for x < 0, Leaky ReLU / ELU never die.",
    )
    grid = torch.linspace(-10, 10, 2001)
    z = torch.randn(samples, generator=torch.Generator().manual_seed(seed))
    names = [n for n in ACTIVATIONS.names() if _elementwise(n) is not None]
    skipped = [n for n in ACTIVATIONS.names() if n not in names]

    fig, axes = plt.subplots(2, len(names), figsize=(3 * len(names), 5.5), sharex=True, squeeze=False)
    rows, stats = [], {}
    for i, name in enumerate(names):
        torch.manual_seed(seed)
        module = _elementwise(name)
        y, g = _value_and_grad(module, grid)
        _, gz = _value_and_grad(module, z)
        zero = (gz == 0).float().mean().item()
        dead = (gz.abs() < DEAD_GRAD).float().mean().item()
        stats[name] = {"zero": zero, "dead": dead, "max_grad": g.abs().max().item(), "mean_out": module(z).mean().item()}
        rows.append([name, zero, dead, stats[name]["max_grad"], stats[name]["mean_out"]])
        top, bottom = axes[0, i], axes[1, i]
        top.plot(grid, y, color="C0")
        top.set_title(name)
        bottom.plot(grid, g, color="C1")
        for ax in (top, bottom):
            ax.axvspan(-3, 3, color="0.9", zorder=0)  # where N(0,1) inputs live
            if (g.abs() < DEAD_GRAD).any():
                ax.fill_between(grid, *ax.get_ylim(), where=(g.abs() < DEAD_GRAD), color="C3", alpha=0.12, step="mid")
        bottom.set_xlabel("x")
    axes[0, 0].set_ylabel("f(x)")
    axes[1, 0].set_ylabel("f'(x)")
    fig.suptitle(f"activations (top) and derivatives (bottom); red: |f'| < {DEAD_GRAD} (saturated/dead), grey: |x| < 3")
    result.figure("activations and derivatives with saturation regions", fig)
    result.table(
        f"Gradient on standard-normal input ({samples:,} samples)",
        ["activation", "fraction f'=0", f"fraction |f'|<{DEAD_GRAD}", "max |f'|", "mean output"],
        rows,
    )
    if skipped:
        result.table("Not elementwise (mix several inputs), not plotted", ["activation"], [[n] for n in skipped])

    if "relu" in stats:
        r = stats["relu"]["zero"]
        result.claim("ReLU has zero gradient for about half of N(0,1) inputs", 0.45 < r < 0.55, f"{r:.3f}")
    if "sigmoid" in stats:
        s = stats["sigmoid"]
        result.claim("sigmoid's gradient is at most 0.25, so every layer shrinks the gradient", s["max_grad"] <= 0.2501, f"max σ' = {s['max_grad']:.4f}")
        result.claim("sigmoid outputs are not zero-centred", s["mean_out"] > 0.4, f"mean σ(z) = {s['mean_out']:.3f}")
        sat = (grid.abs() > 5).float()
        _, gs = _value_and_grad(_elementwise("sigmoid"), grid)
        far = gs[sat.bool()].abs().max().item()
        result.claim("sigmoid saturates: for |x| > 5 its gradient is below 0.01", far < 0.01, f"max σ'(|x|>5) = {far:.4f}")
    if "tanh" in stats:
        t = stats["tanh"]
        result.claim("tanh is zero-centred", abs(t["mean_out"]) < 0.01, f"mean tanh(z) = {t['mean_out']:.4f}")
    for name in ("leaky_relu", "elu", "prelu"):
        if name in stats:
            result.claim(f"{name} never has a zero gradient (it cannot die)", stats[name]["zero"] == 0.0, f"fraction f'=0: {stats[name]['zero']:.3f}")
    return result
