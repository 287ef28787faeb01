"""Checks that train a copy briefly: overfit a tiny subset, and beat an input-independent baseline.

Both run `fit` itself on a copy of the model, at the rate the range test
proposed (`ctx.train_lr()`), so they test the model and the data pipeline
rather than the configured learning rate.

- Overfit ≈20 samples with no regularization (docs/lectures.md §5): training
  accuracy must reach 100% within the step budget; if it cannot, something in
  the model, the loss or the data is broken.
- Input-independent baseline: the same short training with every input set to
  zero must do clearly worse than with the real inputs; if it does not, the
  model ignores its inputs, or the labels do not match them (shuffled labels,
  a broken input pipeline). "Clearly" is judged with the two-proportion
  standard error (`diagnose.significance`): a validation split too small to
  tell gives an info saying how many samples would, never an error.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from babysit.checks.base import CHECKS, CheckContext, CheckResult
from babysit.data.datasets import Split
from babysit.diagnose import significance
from babysit.diagnose.findings import Finding
from babysit.status import STOPPED
from babysit.train.trainer import fit

# Share of the zero-input model's headroom (1 - its accuracy) the real inputs must win.
BASELINE_GAIN = 0.1
RULE_BASELINE = (
    "docs/lectures.md §5 (an input-independent baseline, beyond the lectures): a model that learns must use its inputs; "
    "if zeros do as well, labels or inputs are broken"
)
# "The loss falls near 0" when overfitting the tiny subset: below this fraction of ln(C) (0.115 for 10 classes).
FITTED_LOSS = 0.05


class _StopWhen:
    """Stop `fit` after `steps` steps, or once an epoch reaches 100% training accuracy with a loss below `fitted_loss`."""

    def __init__(self, steps: int, fitted_loss: float | None = None) -> None:
        self.steps, self.fitted_loss = steps, fitted_loss

    def on_batch_end(self, state) -> None:
        if state.step >= self.steps:
            state.request_stop(STOPPED, "step budget used")

    def on_epoch_end(self, state) -> None:
        last = state.history.records[-1]
        if self.fitted_loss is not None and last["train_accuracy"] >= 1.0 and last["train_loss"] <= self.fitted_loss:
            state.request_stop(STOPPED, "tiny subset fitted")


@CHECKS.register("overfit_tiny")
def overfit_tiny(ctx: CheckContext) -> CheckResult:
    """Overfit ≈20 training samples without regularization: 100% training accuracy."""
    s = ctx.settings
    x, y = ctx.batch("train", s.overfit_samples)
    tiny = Split(x, y)
    data = replace(ctx.data, train=tiny, val=tiny, test=tiny)
    # No regularization of any kind (dropout is stripped from the copy below). Label smoothing
    # goes too: its target keeps the loss above the target's entropy (0.50 for eps 0.1, 10 classes).
    recipe = ctx.short_recipe(
        s.overfit_steps, len(y), batch_size=len(y), weight_decay=0.0, l1=0.0, max_norm=None, label_smoothing=0.0
    )
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
    severity = "warning" if best >= 0.9 else "error"
    rule = "docs/lectures.md §5: on ≈20 samples without regularization, training accuracy must reach 100% and the loss fall near 0"
    narrow = bottleneck(ctx.model)
    if narrow is not None and narrow[1] < ctx.data.num_classes:
        evidence["bottleneck"] = {"layer": narrow[0], "width": narrow[1], "classes": ctx.data.num_classes}
        finding = Finding(
            "capacity_too_small",
            severity,
            f"cannot overfit {len(y)} samples with a bottleneck of {narrow[1]} unit(s) in layer {narrow[0]} for "
            f"{ctx.data.num_classes} classes: {problem}",
            evidence=evidence,
            lecture_rule=rule + "; §7: a model that cannot fit the training data needs more capacity",
            fix=f"widen layer {narrow[0]} (at least as many units as classes; e.g. model.hidden = [64, 64]), or add layers",
        )
        return CheckResult("overfit_tiny", summary, evidence, [finding])
    finding = Finding(
        "overfit_failed",
        severity,
        f"cannot overfit {len(y)} samples: {problem}",
        evidence=evidence,
        lecture_rule=rule,
    )
    return CheckResult("overfit_tiny", summary, evidence, [finding])


def bottleneck(model: nn.Module) -> tuple[str, int] | None:
    """The narrowest hidden affine layer (Linear units or Conv channels, the output layer excluded) as (name, width); None without one."""
    affine = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    hidden = [(n, m.out_features if isinstance(m, nn.Linear) else m.out_channels) for n, m in affine[:-1]]
    return min(hidden, key=lambda h: h[1]) if hidden else None


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
    # A model fed zeros predicts one constant class; the best constant class scores the validation
    # majority share, so that is the reference (a zero-input run that happened to learn a rare
    # class, 4% on shuffled digits, would flatter a model that learnt nothing).
    majority = float(torch.bincount(val.y.cpu(), minlength=ctx.data.num_classes).max()) / n_val
    reference = max(accuracy["zeroed"], majority)
    margin = accuracy["real"] - reference
    # The model must win a share of the headroom the reference leaves (9 points of 90 on 10 balanced
    # classes; half a point of 5 on a 95%-majority set), judged with the standard error.
    needed = BASELINE_GAIN * (1.0 - reference)
    se = significance.proportion_se(accuracy["real"], n_val, reference, n_val)
    verdict = significance.verdict(margin, se, needed)
    evidence = {
        "val_accuracy_real": accuracy["real"], "val_accuracy_zeroed": accuracy["zeroed"], "majority_share": majority, "margin": margin, "needed": needed,
        "standard_error": se, "verdict": verdict, "val_samples": n_val, "steps": s.baseline_steps,
    }
    summary = (
        f"val accuracy {accuracy['real']:.1%} with inputs vs {reference:.1%} without (zeros {accuracy['zeroed']:.1%}, majority {majority:.1%}) "
        f"(margin {margin:+.1%} ± {se:.1%}, need {needed:.1%}): {verdict}"
    )
    if verdict == "pass":
        return CheckResult("input_baseline", summary, evidence)
    if verdict == "inconclusive":
        settle = significance.samples_to_settle(margin, se, n_val, needed)
        evidence["samples_to_settle"] = settle
        finding = Finding(
            "input_baseline_inconclusive",
            "info",
            f"{n_val} validation samples cannot tell whether the model uses its inputs: margin over all-zero inputs "
            f"{margin:+.1%} ± {se:.1%} (need {needed:.1%}); about {settle} samples would settle it",
            evidence=evidence,
            phase="data",
            lecture_rule=RULE_BASELINE,
            fix=f"use a validation split of at least {settle} samples, or rerun `babysit check` with more data",
        )
        return CheckResult("input_baseline", summary, evidence, [finding])
    finding = Finding(
        "input_independent",
        "error",
        f"the model does no better with its inputs ({accuracy['real']:.1%}) than without them ({reference:.1%}: all-zero inputs or the majority class); "
        f"margin {margin:+.1%} ± {se:.1%}, need {needed:.1%}",
        evidence=evidence,
        lecture_rule=RULE_BASELINE,
    )
    return CheckResult("input_baseline", summary, evidence, [finding])
