"""Loss sanity checks at initialisation, and evaluation-mode behaviour (docs/lectures.md §4, §5).

- initial loss: with small weights and no regularization the softmax loss is
  ln(C) (2.303 for 10 classes), since every class gets probability 1/C;
- regularization: adding the L2 penalty that `train.weight_decay` stands for
  must raise the loss, and at the configured strength should not swamp it;
- evaluation mode: batch norm must use its running statistics and dropout must
  be off when the model is evaluated, so outputs are deterministic and do not
  depend on the other samples of the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from babysit.checks.base import CHECKS, CheckContext, CheckResult
from babysit.checks.init_health import leaf_modules
from babysit.diagnose.findings import Finding
from babysit.errors import ConfigError
from babysit.nn.regularize import VanillaDropout, l1_penalty

# Tolerance: loss within [0.75, 1.6] x ln(C) passes. Class scores of std σ add about σ²/2 to ln(C);
# He/Xavier-initialised nets give σ ≈ 0.5-1.5 (2.3-3.4 for 10 classes on the built-in models), hence the wider top.
LOSS_TOLERANCE_LOW, LOSS_TOLERANCE_HIGH = 0.25, 0.6
LOSS_ERROR = 2.0  # a loss over 3 x ln(C) at init is an error
# The configured weight decay's penalty above this fraction of the data loss at init dominates it.
REG_DOMINATES = 1.0
# Ten times the data loss: the minimum of the objective sits next to zero weights, so the model learns
# (almost) nothing from the data; an error, as the lectures' "reg 1e3 must raise the loss" sweep shows.
REG_DOMINATES_ERROR = 10.0
# Dropout that drops more than half of a layer's units (the lectures keep p = 0.5 of hidden units, 0.8 of
# inputs): a warning; dropping 80% or more leaves too few units for the rest to learn from: an error.
DROPOUT_WARN, DROPOUT_ERROR = 0.5, 0.8
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
RULE_DROPOUT = "docs/lectures.md §9: dropout keeps p=0.5 of hidden units (0.8 of inputs); it can hurt with little data or a small net"

RULE_LOSS = "docs/lectures.md §5.3: with small weights and reg = 0 the softmax loss is about ln(C) (2.303 for 10 classes)"
RULE_REG = "docs/lectures.md §5.3: turn regularization up (e.g. 1e3) and the loss must go up"
RULE_EVAL = "docs/lectures.md §4/§9: at test time batch norm uses running averages and dropout is off (model.eval())"


@CHECKS.register("initial_loss")
@torch.no_grad()
def initial_loss(ctx: CheckContext) -> CheckResult:
    """Loss at init with regularization off is about ln(C)."""
    model = ctx.copy_model(dropout=False)
    x, y = ctx.batch()
    scores = model(x)
    loss = float(F.cross_entropy(scores, y))
    classes = ctx.data.num_classes
    expected = math.log(classes)
    score_std = float(scores.std(1).mean())
    evidence = {"loss": loss, "expected": expected, "classes": classes, "score_std": score_std, "tolerance": [1 - LOSS_TOLERANCE_LOW, 1 + LOSS_TOLERANCE_HIGH]}
    summary = (
        f"{loss:.4g} vs ln({classes}) = {expected:.4g} (pass within {1 - LOSS_TOLERANCE_LOW:g}-{1 + LOSS_TOLERANCE_HIGH:g}x), "
        f"score std {score_std:.3g}"
    )
    if not math.isfinite(loss):
        return CheckResult("initial_loss", f"loss {loss} at init", evidence, [_not_finite(model, x, scores, evidence)])
    excess = (loss - expected) / expected
    if -LOSS_TOLERANCE_LOW <= excess <= LOSS_TOLERANCE_HIGH:
        return CheckResult("initial_loss", summary, evidence)
    if excess > 0:
        finding = Finding(
            "initial_loss_high",
            "error" if excess > LOSS_ERROR else "warning",
            f"initial loss {loss:.4g} is {loss / expected:.2g}x ln({classes}) = {expected:.4g}: class scores are too large (std {score_std:.3g})",
            evidence=evidence,
            lecture_rule=RULE_LOSS,
        )
    else:
        finding = Finding(
            "initial_loss_low",
            "info",
            f"initial loss {loss:.4g} is below ln({classes}) = {expected:.4g}: the model already predicts before training",
            evidence=evidence,
            lecture_rule=RULE_LOSS,
        )
    return CheckResult("initial_loss", summary, evidence, [finding])


def first_non_finite(model: nn.Module, x: Tensor) -> str | None:
    """The name of the first leaf module whose output holds NaN/inf on input `x`, in the order they run."""
    found: list[str] = []

    def hook(name: str):
        def check(_module: nn.Module, _inputs: object, output: object) -> None:
            if not found and isinstance(output, Tensor) and output.is_floating_point() and not torch.isfinite(output).all():
                found.append(name)
        return check

    handles = [m.register_forward_hook(hook(n)) for n, m in leaf_modules(model).items()]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


def _not_finite(model: nn.Module, x: Tensor, scores: Tensor, evidence: dict) -> Finding:
    """The finding for class scores (or a loss) that are NaN/inf before any step: the network's own arithmetic,
    not its scale, since the inputs are finite (the data readers refuse NaN/inf)."""
    layer = first_non_finite(model, x)
    share = float((~torch.isfinite(scores)).float().mean())
    evidence.update({"non_finite_scores": share, "first_non_finite_layer": layer})
    where = f"layer '{layer}' ({type(model.get_submodule(layer)).__name__}) is the first whose output is NaN/inf" if layer else "the output is NaN/inf"
    return Finding(
        "scores_not_finite",
        "error",
        f"the initial loss is not finite on finite inputs: {where} ({share:.0%} of the class scores are NaN/inf)",
        evidence=evidence,
        lecture_rule=RULE_LOSS + "; a NaN/inf loss before any step is a bug in the forward pass, not a scale problem",
        fix=(f"look at what '{layer}' computes" if layer else "look at the forward pass")
        + ": log or sqrt of values <= 0, a division by zero, exp that overflows; keep its input in its domain "
        "(e.g. torch.log(x.clamp_min(1e-6)), softplus) and run the checks again",
    )


def l2_penalty(model: nn.Module) -> Tensor:
    """0.5 * sum ||p||² over trainable parameters: the objective term whose gradient is torch's weight_decay * p."""
    params = [p for p in model.parameters() if p.requires_grad]
    return 0.5 * sum((p.detach().double() ** 2).sum() for p in params) if params else torch.zeros((), dtype=torch.float64)


@CHECKS.register("regularization")
@torch.no_grad()
def regularization(ctx: CheckContext) -> CheckResult:
    """Turning the L2 regularization up raises the loss; the configured strength does not swamp it."""
    model = ctx.copy_model(dropout=False)
    x, y = ctx.batch()
    data_loss = float(F.cross_entropy(model(x), y))
    if not math.isfinite(data_loss):  # initial_loss names why; no share of a NaN loss means anything
        return CheckResult("regularization", f"not measured: the data loss at init is {data_loss}", {"data_loss": data_loss}, skipped=True)
    penalty = float(l2_penalty(model))
    strong, configured = ctx.settings.reg_strength, float(ctx.recipe.weight_decay)
    losses = {f"{lam:g}": data_loss + lam * penalty for lam in (0.0, 1e-3, 1e-1, 1e1, strong)}
    # The configured regularization at init: the L2 that weight_decay stands for, plus the recipe's L1 term.
    # AdamW's decay is decoupled (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"): it shrinks the
    # weights by lr * weight_decay per step and adds no term to the loss, so it has no share of the loss to compare.
    decoupled = ctx.recipe.optimizer == "adamw"
    configured_reg = (0.0 if decoupled else configured * penalty) + float(l1_penalty(model, ctx.recipe.l1))
    share = configured_reg / data_loss if data_loss > 0 else math.inf
    evidence = {
        "data_loss": data_loss, "penalty": penalty, "loss_by_strength": losses,
        "weight_decay": configured, "l1": ctx.recipe.l1, "configured_share": share,
    }
    summary = f"loss {data_loss:.4g} -> {losses[f'{strong:g}']:.4g} at reg {strong:g}; the configured reg adds {share:.1%}"
    if penalty <= 0:
        finding = Finding(
            "regularization_no_effect",
            "error",
            "turning regularization up does not raise the loss: every trainable weight is zero (or there are none)",
            evidence=evidence,
            lecture_rule=RULE_REG,
        )
        return CheckResult("regularization", "the L2 penalty is 0: weights all zero", evidence, [finding])
    findings = _dropout_findings(ctx.model)
    if share > REG_DOMINATES:
        findings.insert(0, Finding(
            "regularization_dominates",
            "error" if share >= REG_DOMINATES_ERROR else "warning",
            f"the configured regularization (weight_decay {configured:g}, l1 {ctx.recipe.l1:g}) is {share:.2g}x the data loss at init: "
            "the model will be pulled to zero",
            evidence=evidence,
            lecture_rule="docs/lectures.md §5.5: find the learning rate with small regularization first; §9: choose λ by cross-validation",
        ))  # fmt: skip
    return CheckResult("regularization", summary, evidence, findings)


def _dropout_findings(model: nn.Module) -> list[Finding]:
    """Dropout layers (torch's or babysit's vanilla form) that drop more than half of their units, read from the modules."""
    drops = {name: float(m.p) for name, m in model.named_modules() if isinstance(m, _DROPOUT_TYPES)}
    drops |= {name: 1.0 - float(m.keep) for name, m in model.named_modules() if isinstance(m, VanillaDropout)}
    strong = {n: p for n, p in drops.items() if p > DROPOUT_WARN}
    if not strong:
        return []
    worst = max(strong, key=strong.get)
    return [
        Finding(
            "regularization_too_strong",
            "error" if strong[worst] >= DROPOUT_ERROR else "warning",
            f"dropout drops {strong[worst]:.0%} of the units in layer {worst}: too few are left for the rest of the network to learn from",
            evidence={"dropout": strong},
            lecture_rule=RULE_DROPOUT,
            phase="init",
        )
    ]


def default_eval(model: nn.Module, x: Tensor) -> Tensor:
    """What babysit's `evaluate` does: eval mode, no gradients."""
    model.eval()
    with torch.no_grad():
        return model(x)


def _buffers(model: nn.Module) -> dict[str, Tensor]:
    return {n: b.detach().clone() for n, b in model.named_buffers() if "running" in n}


@CHECKS.register("eval_mode")
def eval_mode(ctx: CheckContext) -> CheckResult:
    """Evaluation is deterministic, per sample, and leaves batch-norm statistics alone."""
    model = ctx.copy_model()  # in training mode, as it is when a training loop calls the evaluation
    user_fn = ctx.eval_fn or default_eval

    def evaluate(model: nn.Module, x: Tensor) -> Tensor:
        scores = user_fn(model, x)
        if not isinstance(scores, Tensor):
            raise ConfigError(f"eval_fn(model, x) must return a tensor of class scores, got {type(scores).__name__}")
        return scores.detach()

    x, _ = ctx.batch("val", 64)
    k = max(1, len(x) // 4)
    before = _buffers(model)
    full = evaluate(model, x)
    changed = [n for n, b in _buffers(model).items() if not torch.equal(b, before[n])]
    model.train()
    again = evaluate(model, x)
    model.train()
    part = evaluate(model, x[:k])
    scale = float(full.abs().max()) + 1e-12
    repeat_diff = float((full - again).abs().max()) / scale
    batch_diff = float((full[:k] - part).abs().max()) / scale
    evidence = {"running_stats_changed": changed, "repeat_difference": repeat_diff, "batch_difference": batch_diff}
    who = "your evaluation function" if ctx.eval_fn else "the model in eval mode"
    summary = f"repeat diff {repeat_diff:.2g}, batch-composition diff {batch_diff:.2g}, running stats {'changed' if changed else 'untouched'}"
    problems = []
    if changed:
        problems.append(f"it updated batch-norm running statistics ({changed[0]})")
    if batch_diff > 1e-4:
        problems.append(f"a sample's scores change with the rest of the batch (by {batch_diff:.2g} of the score range)")
    if repeat_diff > 1e-4:
        problems.append(f"two passes over the same inputs differ (by {repeat_diff:.2g}): dropout is active")
    if not problems:
        return CheckResult("eval_mode", summary, evidence)
    finding = Finding(
        "eval_mode",
        "error",
        f"{who} runs in training mode: " + "; ".join(problems),
        evidence=evidence,
        lecture_rule=RULE_EVAL,
    )
    return CheckResult("eval_mode", summary, evidence, [finding])
