"""Checks that train a copy briefly: overfit a tiny subset, and beat an input-independent baseline.

Both run `fit` itself on a copy of the model, at the rate the range test
proposed (`ctx.train_lr()`), so they test the model and the data pipeline
rather than the configured learning rate.

- Overfit ≈20 samples with no regularization (LECTURE_DIGEST §5.4): training
  accuracy must reach 100% within the step budget; if it cannot, something in
  the model, the loss or the data is broken.
- Input-independent baseline: the same short training with every input set to
  zero must do clearly worse than with the real inputs; if it does not, the
  model ignores its inputs, or the labels do not match them (shuffled labels,
  a broken input pipeline).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from babysit.checks.base import CHECKS, CheckContext, CheckResult
from babysit.data.datasets import Split
from babysit.diagnose.findings import Finding
from babysit.train.trainer import fit

# The baseline margin must exceed this many binomial standard errors of the zero-input accuracy (and 5 points).
BASELINE_SIGMAS = 3.0
BASELINE_MIN_MARGIN = 0.05
# "The loss falls near 0" when overfitting the tiny subset: below this fraction of ln(C) (0.115 for 10 classes).
FITTED_LOSS = 0.05


class _StopWhen:
    """Stop `fit` after `steps` steps, or once an epoch reaches 100% training accuracy with a loss below `fitted_loss`."""

    def __init__(self, steps: int, fitted_loss: float | None = None) -> None:
        self.steps, self.fitted_loss = steps, fitted_loss

    def on_batch_end(self, state) -> None:
        if state.step >= self.steps:
            state.request_stop("stopped", "step budget used")

    def on_epoch_end(self, state) -> None:
        last = state.history.records[-1]
        if self.fitted_loss is not None and last["train_accuracy"] >= 1.0 and last["train_loss"] <= self.fitted_loss:
            state.request_stop("stopped", "tiny subset fitted")


@CHECKS.register("overfit_tiny")
def overfit_tiny(ctx: CheckContext) -> CheckResult:
    """Overfit ≈20 training samples without regularization: 100% training accuracy."""
    s = ctx.settings
    x, y = ctx.batch("train", s.overfit_samples)
    tiny = Split(x, y)
    data = replace(ctx.data, train=tiny, val=tiny, test=tiny)
    # No regularization of any kind (dropout is stripped from the copy below).
    recipe = ctx.short_recipe(s.overfit_steps, len(y), batch_size=len(y), weight_decay=0.0, l1=0.0, max_norm=None)
    fitted_loss = FITTED_LOSS * math.log(ctx.data.num_classes)
    stop = _StopWhen(s.overfit_steps, fitted_loss)
    result = fit(ctx.copy_model(dropout=False), data, recipe, callbacks=[stop], progress=False)
    accs = result.history.series("train_accuracy")
    best, final_loss = max(accs), result.history.records[-1]["train_loss"]
    steps = len(accs)
    evidence = {
        "samples": len(y), "steps": steps, "budget": s.overfit_steps, "train_accuracy": best,
        "final_loss": final_loss, "fitted_loss": fitted_loss, "lr": recipe.lr,
    }
    summary = f"{best:.0%} of {len(y)} samples after {steps} steps (lr {recipe.lr:.2g}), loss {final_loss:.3g}"
    if best >= 1.0 and final_loss <= fitted_loss:
        return CheckResult("overfit_tiny", summary, evidence)
    if best >= 1.0:
        problem = f"100% training accuracy but the loss is still {final_loss:.3g} after {steps} steps (near 0 means < {fitted_loss:.2g})"
    else:
        problem = f"{best:.0%} training accuracy after {steps} steps at lr {recipe.lr:.2g}"
    finding = Finding(
        "overfit_failed",
        "warning" if best >= 0.9 else "error",
        f"cannot overfit {len(y)} samples: {problem}",
        evidence=evidence,
        lecture_rule="LECTURE_DIGEST §5.4: on ≈20 samples without regularization, training accuracy must reach 100% and the loss fall near 0",
        fix="check that the labels match the inputs, the model's output has one score per class, and gradients reach every layer",
    )
    return CheckResult("overfit_tiny", summary, evidence, [finding])


@CHECKS.register("input_baseline")
def input_baseline(ctx: CheckContext) -> CheckResult:
    """Training on real inputs beats the same training on all-zero inputs."""
    s = ctx.settings
    recipe = ctx.short_recipe(s.baseline_steps, len(ctx.data.train))
    n_val = min(len(ctx.data.val), 1000)
    val = Split(*ctx.batch("val", n_val))
    real = replace(ctx.data, val=val, test=val)
    zeroed = real.map(torch.zeros_like)
    accuracy = {}
    for name, data in (("real", real), ("zeroed", zeroed)):
        result = fit(ctx.copy_model(), data, recipe, callbacks=[_StopWhen(s.baseline_steps)], progress=False)
        accuracy[name] = result.test_accuracy
    margin = accuracy["real"] - accuracy["zeroed"]
    p0 = min(max(accuracy["zeroed"], 1.0 / ctx.data.num_classes), 1 - 1e-3)
    needed = max(BASELINE_MIN_MARGIN, BASELINE_SIGMAS * math.sqrt(p0 * (1 - p0) / n_val))
    evidence = {"val_accuracy_real": accuracy["real"], "val_accuracy_zeroed": accuracy["zeroed"], "margin": margin, "needed": needed, "val_samples": n_val, "steps": s.baseline_steps}
    summary = f"val accuracy {accuracy['real']:.1%} with inputs vs {accuracy['zeroed']:.1%} with zeros (margin {margin:+.1%}, need {needed:.1%})"
    if margin >= needed:
        return CheckResult("input_baseline", summary, evidence)
    finding = Finding(
        "input_independent",
        "error",
        f"the model does no better with its inputs ({accuracy['real']:.1%}) than with all-zero inputs ({accuracy['zeroed']:.1%})",
        evidence=evidence,
        lecture_rule="beyond the lectures (an input-independent baseline): a model that learns must use its inputs; if zeros do as well, labels or inputs are broken",
        fix="check that labels stay aligned with their inputs (no shuffling of one without the other) and that the inputs reach the model",
    )
    return CheckResult("input_baseline", summary, evidence, [finding])
