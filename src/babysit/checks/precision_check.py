"""The mixed-precision check: gradients that float16 rounds to zero where float32 keeps them (`watch.precision`).

It runs when the training will use half precision: `CheckSettings(precision="fp16")`
(with `loss_scale`, the GradScaler's scale; 1 without one) or a recipe with
`train.precision = "bf16"`; otherwise it is skipped.
"""

from __future__ import annotations

import torch.nn.functional as F

from babysit.checks.base import CHECKS, CheckContext, CheckResult
from babysit.diagnose.findings import Finding
from babysit.watch.precision import gradient_underflow

# A weight tensor that loses this share of its gradient entries to underflow is reported; half of them is an error:
# most of the layer then learns nothing on most steps.
LOST_WARN, LOST_ERROR = 0.01, 0.5


@CHECKS.register("precision")
def precision(ctx: CheckContext) -> CheckResult:
    """Gradients lost to float16 underflow: one batch's gradients in float32 and in half precision."""
    wanted = ctx.settings.precision or (ctx.recipe.precision if ctx.recipe.precision != "fp32" else None)
    if wanted is None:
        return CheckResult("precision", "training in float32 (set the check's precision='fp16' or train.precision='bf16' to check half precision)",
                           skipped=True)  # fmt: skip
    x, y = ctx.batch("train")
    found = gradient_underflow(ctx.copy_model(), x, y, precision=wanted, loss_scale=ctx.settings.loss_scale, loss_fn=ctx.loss_fn or F.cross_entropy)
    worst = found["worst"]
    if worst is None:
        return CheckResult("precision", "no weight tensor received a gradient", found, skipped=True)
    lost = found["params"][worst]["lost"]
    summary = f"{wanted} at loss scale {ctx.settings.loss_scale:g}: {lost:.1%} of {worst}'s gradient entries lost to underflow (the most of any weight)"
    if lost < LOST_WARN:
        return CheckResult("precision", summary, found)
    finding = Finding(
        "grad_underflow",
        "error" if lost >= LOST_ERROR else "warning",
        f"{lost:.0%} of the gradient entries of {worst} are zero in {wanted} but not in float32 (underflow, loss scale {ctx.settings.loss_scale:g})",
        evidence={"param": worst, "lost": lost, "precision": wanted, "loss_scale": ctx.settings.loss_scale,
                  "lost_by_param": {n: v["lost"] for n, v in found["params"].items()}},  # fmt: skip
        lecture_rule="float16's smallest value is 6e-8: a gradient below it rounds to zero; loss scaling (Micikevicius et al., 2018) moves gradients into its range",
    )
    return CheckResult("precision", summary, found, [finding])
