"""Learning-rate range test: an exponential sweep that proposes a number, not a plot to read.

Smith (2017), "Cyclical learning rates": train for a few hundred steps while the
learning rate grows exponentially from 1e-7, record the loss, stop once it
diverges. The lectures' version (docs/lectures.md §5.5): 1e-6 barely moves the
loss (too low), 1e6 gives NaN (too high); the working range lies between.

The proposal must survive noise and early spikes (the complaint users make of
LR finders), so it reads a centred running median (kills isolated spikes)
followed by a centred running mean (averages noise), with no lag:

    depth   = smoothed loss at the start - its minimum (before divergence)
    l_start = the first rate where the loss has fallen 10% of the depth
    l_min   = the rate at the minimum
    lr      = the first rate where the loss is within 10% of the depth of its
              minimum: where it enters the bottom of the valley, the largest
              rate at which it was still falling steadily
    range   = [l_start, l_min], where to search (coarse-to-fine, §6)

Why not Smith's l_min / 10 or the steepest slope: on MNIST-1D (convnet, MLP;
Adam, SGD, momentum; with and without batch norm) the best rate of a log grid
sat between l_min / 6 and 3 x l_min, so l_min / 10 was too timid by up to 30x,
and the steepest slope of a 100-step sweep jumped by decades between seeds.
The bottom entry tracked the best rate within about 3x (see tests/checks).

When the loss falls less than 10% before diverging (no clear valley: e.g. an
RMSProp net whose loss drops only a few percent, then explodes), the test falls
back, in order, and says how confident it is (`confidence`):

    1. valley rule on the sweep                              "high"
    2. a second sweep, twice as long with half the batch     (less noise per decade)
       whose valley rule finds a descent                     "medium"
    3. the steepest descent of the smoothed loss against log10(lr), before its
       minimum (torch-lr-finder's and fastai's rule) on the sweep that fell most:
       "medium" if it fell at least 3%, else "low"
    4. nothing fell at all: Smith's l_min / 10                "none" (the model, labels
       or inputs are broken, and the other checks say which; the configured rate is kept)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from babysit.checks.base import CHECKS, CheckContext, CheckResult
from babysit.diagnose.findings import Finding
from babysit.optim.optimizers import FULL_BATCH
from babysit.status import STOPPED
from babysit.train.trainer import fit

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Stop when the running loss exceeds this multiple of its minimum (or is not finite).
DIVERGE_FACTOR = 4.0
# The loss must fall at least this fraction of its starting value for the valley rule.
MIN_DESCENT = 0.1
# The steepest-slope fallback is "medium" confidence from this descent on, "low" below it.
MEDIUM_DESCENT = 0.03
# Configured rate below l_start / TOO_LOW_ERROR: the loss will barely move.
TOO_LOW_WARN, TOO_LOW_ERROR = 3.0, 30.0
# Configured rate above l_min * TOO_HIGH: past the bottom of the valley, into divergence.
TOO_HIGH_WARN, TOO_HIGH_ERROR = 3.0, 10.0
RULE_LR = "docs/lectures.md §5.5/§7: too low a learning rate leaves the loss flat; too high makes it explode"


@dataclass
class Sweep:
    """The recorded range test: learning rates, raw batch losses and where it diverged."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    diverged_at: float | None = None

    def __repr__(self) -> str:
        return f"Sweep(steps={len(self.lrs)}, lr {self.lrs[0]:.1e}..{self.lrs[-1]:.1e}, diverged_at={self.diverged_at})" if self.lrs else "Sweep(empty)"


class _SweepCallback:
    """Records each batch loss, multiplies the learning rate by `factor`, stops on divergence or after `steps`."""

    def __init__(self, sweep: Sweep, factor: float, steps: int) -> None:
        self.sweep, self.factor, self.steps = sweep, factor, steps
        self.ema, self.best = None, math.inf

    def on_batch_end(self, state) -> None:
        loss = float(state.loss)
        self.sweep.lrs.append(state.optimizer.param_groups[0]["lr"])
        self.sweep.losses.append(loss)
        # A bias-free EMA (beta 0.7) for the online stop only; the proposal uses the centred smoothing.
        self.ema = loss if self.ema is None else 0.7 * self.ema + 0.3 * loss
        self.best = min(self.best, self.ema)
        if not math.isfinite(loss) or (state.step > 5 and self.ema > DIVERGE_FACTOR * self.best):
            self.sweep.diverged_at = self.sweep.lrs[-1]
            state.request_stop(STOPPED, "range test diverged")
        elif state.step >= self.steps:
            state.request_stop(STOPPED, "range test done")
        for group in state.optimizer.param_groups:
            group["lr"] *= self.factor


def smooth(values: list[float], window: int) -> list[float]:
    """Centred running median then centred running mean over `window` points (shrinking at the ends)."""
    if not values:
        return []
    t = torch.tensor(values, dtype=torch.float64)
    half = window // 2
    n = len(values)
    med = torch.stack([t[max(0, i - half) : i + half + 1].median() for i in range(n)])
    return [float(med[max(0, i - half) : i + half + 1].mean()) for i in range(n)]


def run_sweep(ctx: CheckContext, steps: int | None = None, batch_size: int | None = None) -> Sweep:
    """Train a copy of the model for `steps` (default `settings.sweep_steps`) mini-batches with an exponentially growing rate."""
    s = ctx.settings
    steps = steps or s.sweep_steps
    factor = (s.sweep_end / s.sweep_start) ** (1.0 / max(1, steps - 1))
    recipe = ctx.short_recipe(steps, len(ctx.data.train), batch_size=batch_size, lr=s.sweep_start)
    sweep = Sweep()
    fit(ctx.copy_model(), ctx.data, recipe, callbacks=[_SweepCallback(sweep, factor, steps)], progress=False)
    return sweep


def steepest(sweep: Sweep, smoothed: list[float], i_min: int, skip: int = 0) -> int:
    """Index of the steepest fall of `smoothed` against log10(lr), after the first `skip` points and at or before the minimum `i_min`.

    The first half-window is skipped: there the centred smoothing shrinks and
    a little noise reads as a steep slope.
    """
    if i_min <= skip:
        return i_min
    x = [math.log10(lr) for lr in sweep.lrs[: i_min + 1]]
    # Central differences inside, one-sided at the ends (numpy.gradient's rule).
    slopes = [(smoothed[min(i + 1, i_min)] - smoothed[max(i - 1, 0)]) / (x[min(i + 1, i_min)] - x[max(i - 1, 0)]) for i in range(i_min + 1)]
    return min(range(skip, i_min + 1), key=slopes.__getitem__)


def suggest(sweep: Sweep, steps_per_decade: float) -> dict[str, Any]:
    """The proposal from a sweep: lr, search range, min-loss rate and the smoothed curve (see the module docstring)."""
    finite = [i for i, v in enumerate(sweep.losses) if math.isfinite(v)]
    end = finite[-1] + 1 if finite else 0
    window = max(3, int(steps_per_decade / 2) | 1)
    smoothed = smooth(sweep.losses[:end], window)
    out: dict[str, Any] = {"smoothed": smoothed, "lr": None, "range": None, "min_lr": None, "rule": None, "confidence": "none", "descent": 0.0}
    if len(smoothed) < window:
        return out
    i_min = min(range(len(smoothed)), key=smoothed.__getitem__)
    start = smoothed[0]
    depth = start - smoothed[i_min]
    out.update(min_lr=sweep.lrs[i_min], descent=depth / abs(start) if start else 0.0)
    if depth < MIN_DESCENT * abs(start):
        if depth > 0:  # some descent: the steepest-slope rule has something to read
            i = steepest(sweep, smoothed, i_min, skip=window // 2 + 1)
            high = sweep.lrs[i_min] if i_min > i else sweep.lrs[i] * 3
            out.update(
                lr=sweep.lrs[i], range=[sweep.lrs[i] / 3, high], rule="steepest",
                confidence="medium" if out["descent"] >= MEDIUM_DESCENT else "low",
            )  # fmt: skip
        return out
    i_start = next(i for i, v in enumerate(smoothed) if v <= start - 0.1 * depth)
    i_bottom = next(i for i, v in enumerate(smoothed) if v <= smoothed[i_min] + 0.1 * depth)
    out.update(lr=sweep.lrs[i_bottom], range=[sweep.lrs[i_start], sweep.lrs[i_min]], rule="valley", confidence="high")
    return out


def propose(ctx: CheckContext) -> tuple[Sweep, dict[str, Any]]:
    """Sweep and propose, with the fallbacks of the module docstring; the proposal always holds an `lr`."""
    s = ctx.settings
    decades = math.log10(s.sweep_end / s.sweep_start)
    sweep = run_sweep(ctx)
    proposal = suggest(sweep, s.sweep_steps / decades)
    if proposal["rule"] == "valley" or ctx.recipe.batch_size < 2:
        return sweep, proposal
    # Twice the steps and half the batch: more points per decade, each noisier but closer in lr.
    longer = run_sweep(ctx, steps=2 * s.sweep_steps, batch_size=max(1, ctx.recipe.batch_size // 2))
    retry = suggest(longer, 2 * s.sweep_steps / decades)
    if retry["rule"] == "valley":
        return longer, {**retry, "confidence": "medium"}
    best_sweep, best = max(((sweep, proposal), (longer, retry)), key=lambda p: p[1]["descent"])
    if best["lr"] is None and best["min_lr"] is not None:
        best = {**best, "lr": best["min_lr"] / 10, "range": [best["min_lr"] / 100, best["min_lr"]], "rule": "min/10", "confidence": "none"}
    return best_sweep, best


def _verdict(configured: float, proposal: dict[str, Any], sweep: Sweep) -> Finding | None:
    low, high = proposal["range"]
    evidence = {"configured": configured, "suggested": proposal["lr"], "range": proposal["range"], "diverged_at": sweep.diverged_at}
    too_high = configured / high
    if (sweep.diverged_at is not None and configured >= sweep.diverged_at) or too_high >= TOO_HIGH_WARN:
        severe = too_high >= TOO_HIGH_ERROR or (sweep.diverged_at is not None and configured >= sweep.diverged_at)
        return Finding(
            "lr_too_high",
            "error" if severe else "warning",
            f"learning rate {configured:g} is too high: the loss bottoms out at {high:.2g}"
            + (f" and diverges at {sweep.diverged_at:.2g}" if sweep.diverged_at else ""),
            evidence=evidence,
            lecture_rule=RULE_LR,
            fix=f"set train.lr = {proposal['lr']:.2g} (search {low:.2g} to {high:.2g})",
        )
    too_low = low / configured
    if too_low >= TOO_LOW_WARN:
        return Finding(
            "lr_too_low",
            "error" if too_low >= TOO_LOW_ERROR else "warning",
            f"learning rate {configured:g} is too low: the loss only starts to fall at {low:.2g} ({too_low:.0f}x higher)",
            evidence=evidence,
            lecture_rule=RULE_LR,
            fix=f"set train.lr = {proposal['lr']:.2g} (search {low:.2g} to {high:.2g})",
        )
    return None


@CHECKS.register("lr_range")
def lr_range(ctx: CheckContext) -> CheckResult:
    """Learning-rate range test: propose a rate and a search range; judge the configured rate."""
    s = ctx.settings
    if ctx.recipe.optimizer in FULL_BATCH:
        return CheckResult("lr_range", f"not for {ctx.recipe.optimizer}: a full-batch method with its own step-size search", skipped=True)
    sweep, proposal = propose(ctx)
    configured = float(ctx.recipe.lr)
    evidence = {
        "lrs": sweep.lrs,
        "losses": sweep.losses,
        "smoothed": proposal["smoothed"],
        "diverged_at": sweep.diverged_at,
        "min_lr": proposal["min_lr"],
        "suggested": proposal["lr"],
        "range": proposal["range"],
        "rule": proposal["rule"],
        "confidence": proposal["confidence"],
        "configured": configured,
        "optimizer": ctx.recipe.optimizer,
    }
    if proposal["confidence"] == "none":
        descent = proposal.get("descent", 0.0)
        finding = Finding(
            "lr_no_descent",
            "warning",
            f"the loss never fell more than {descent:.0%} while the learning rate swept {s.sweep_start:g} to {sweep.lrs[-1]:.2g}: "
            "no rate to trust (l_min / 10 is only a guess)",
            evidence=evidence,
            lecture_rule="docs/lectures.md §5.4: a network that is wired correctly can lower its loss on the training data",
            )
        return CheckResult("lr_range", f"no clear descent ({descent:.0%}); using the configured lr {configured:g}", evidence, [finding])
    ctx.lr = proposal["lr"]
    low, high = proposal["range"]
    summary = f"propose lr {proposal['lr']:.2g} (search {low:.2g}..{high:.2g}; {proposal['rule']} rule, {proposal['confidence']} confidence); configured {configured:g}"
    verdict = _verdict(configured, proposal, sweep)
    return CheckResult("lr_range", summary, evidence, [verdict] if verdict else [])


def plot_lr_range(evidence: dict[str, Any]) -> Figure:
    """The range test as a figure: raw and smoothed loss against the learning rate (log axis), the proposal and the range.

    Args:
        evidence: the `lr_range` check's evidence (lrs, losses, smoothed, suggested, range, configured, diverged_at).
    """
    # A bare Figure draws with the Agg canvas and touches no pyplot state (safe headless and in notebooks).
    from matplotlib.figure import Figure

    lrs, losses, smoothed = evidence["lrs"], evidence["losses"], evidence["smoothed"]
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.plot(lrs, losses, color="0.7", lw=1, label="batch loss")
    ax.plot(lrs[: len(smoothed)], smoothed, color="C0", lw=2, label="smoothed")
    if evidence.get("range"):
        ax.axvspan(*evidence["range"], color="C2", alpha=0.12, label="search range")
    if evidence.get("suggested"):
        ax.axvline(evidence["suggested"], color="C2", lw=2, label=f"proposed {evidence['suggested']:.2g}")
    ax.axvline(evidence["configured"], color="C3", ls="--", label=f"configured {evidence['configured']:g}")
    if evidence.get("diverged_at"):
        ax.axvline(evidence["diverged_at"], color="k", ls=":", label=f"diverged {evidence['diverged_at']:.2g}")
    finite = [v for v in smoothed if math.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, max(finite[0], min(finite)) * 1.6)
    ax.set_xscale("log")
    ax.set_xlabel(f"learning rate ({evidence.get('optimizer', '')})")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
