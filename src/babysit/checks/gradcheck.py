"""Numerical gradient check of user-defined modules (opt-in: `CheckSettings(gradcheck=True)`).

CS231n's gradient check: compare autograd's gradient `a` with the centred
difference `n = (f(x + h) - f(x - h)) / 2h` in double precision and report the
relative error |a - n| / max(|a|, |n|). Above 1e-2 the gradient is probably
wrong; 1e-4..1e-2 is uncomfortable; below 1e-4 is fine for functions with kinks
(ReLU), below 1e-7 for smooth ones. torch's own layers are tested upstream, so
only modules whose class is defined outside torch are checked: custom layers,
custom `autograd.Function`s, the user's model class.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from babysit.checks.base import CHECKS, CheckContext, CheckResult
from babysit.checks.init_health import forward_hooks
from babysit.diagnose.findings import Finding

GRAD_WARN, GRAD_ERROR = 1e-4, 1e-2
# Gradients below this in absolute value are compared absolutely (the relative error of two ~0 numbers is noise).
FLOOR = 1e-8


def relative_error(analytic: Tensor, numeric: Tensor) -> Tensor:
    """|a - n| / max(|a|, |n|, FLOOR), elementwise."""
    return (analytic - numeric).abs() / torch.maximum(torch.maximum(analytic.abs(), numeric.abs()), torch.full_like(analytic, FLOOR))


def gradcheck_module(module: nn.Module, inputs: tuple[Tensor, ...], samples: int = 10, eps: float = 1e-6, seed: int = 0) -> dict[str, Any]:
    """Relative errors of `module`'s gradients w.r.t. its float inputs and parameters, on sampled entries.

    Args:
        module: checked on a float64 copy in eval mode (deterministic).
        inputs: positional inputs of one forward call.
        samples: entries checked per input/parameter tensor (randomly chosen, seeded).
        eps: step h of the centred difference.

    Returns:
        {"max_error", "worst": tensor name, "errors": {name: max error}, "checked": entries}
    """
    gen = torch.Generator().manual_seed(seed)
    m = copy.deepcopy(module).double().eval()
    xs = [x.detach().double().clone().requires_grad_() if x.is_floating_point() else x for x in inputs]
    targets = {f"input{i}": x for i, x in enumerate(xs) if x.is_floating_point()}
    targets.update({name: p for name, p in m.named_parameters() if p.requires_grad})
    out = m(*xs)
    projection = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.device)

    # A random projection makes a scalar that depends on every output element.
    grads = torch.autograd.grad((m(*xs) * projection).sum(), list(targets.values()), allow_unused=True)
    errors: dict[str, float] = {}
    checked = 0
    with torch.no_grad():
        for (name, t), g in zip(targets.items(), grads):
            g = torch.zeros_like(t) if g is None else g
            flat, gflat = t.view(-1), g.reshape(-1)
            idx = torch.randperm(flat.numel(), generator=gen)[:samples].tolist()
            worst = 0.0
            for i in idx:
                orig = flat[i].item()
                flat[i] = orig + eps
                plus = m(*xs)
                flat[i] = orig - eps
                minus = m(*xs)
                flat[i] = orig
                # Subtract the outputs before projecting: the rounding error then scales with the
                # outputs that changed, not with the whole objective.
                numeric = ((plus - minus) * projection).sum() / (2 * eps)
                worst = max(worst, float(relative_error(gflat[i], numeric)))
            errors[name] = worst
            checked += len(idx)
    worst_name = max(errors, key=errors.get) if errors else ""
    return {"max_error": errors.get(worst_name, 0.0), "worst": worst_name, "errors": errors, "checked": checked}


def user_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules whose class is defined outside torch (the root model is named '(model)')."""
    return {name or "(model)": m for name, m in model.named_modules() if not type(m).__module__.startswith("torch.")}


@CHECKS.register("gradcheck")
def gradcheck(ctx: CheckContext) -> CheckResult:
    """Numerical gradient check of user-defined modules (opt-in)."""
    if not ctx.settings.gradcheck:
        return CheckResult("gradcheck", "not requested (opt in with --gradcheck)", skipped=True)
    model = ctx.copy_model().eval()
    modules = user_modules(model)
    if not modules:
        return CheckResult("gradcheck", "no user-defined modules: torch's layers are tested upstream", skipped=True)
    captured: dict[str, tuple[Tensor, ...]] = {}
    x, _ = ctx.batch("train", 4)
    with forward_hooks(modules, lambda name, mod, inp, out: captured.setdefault(name, tuple(inp))), torch.no_grad():
        model(x)
    results = {
        name: gradcheck_module(modules[name], inputs, seed=ctx.recipe.seed)
        for name, inputs in captured.items()
        if inputs and all(isinstance(t, Tensor) for t in inputs)
    }
    if not results:
        return CheckResult("gradcheck", "no user-defined module takes tensor inputs", skipped=True)
    worst = max(results, key=lambda n: results[n]["max_error"])
    err = results[worst]["max_error"]
    evidence = {"modules": results}
    summary = f"{len(results)} module(s), worst relative error {err:.2g} ({worst}: {results[worst]['worst']})"
    if err < GRAD_WARN:
        return CheckResult("gradcheck", summary, evidence)
    finding = Finding(
        "gradcheck_failed",
        "error" if err >= GRAD_ERROR else "warning",
        f"the gradient of {worst} ({results[worst]['worst']}) disagrees with the numerical gradient: relative error {err:.2g}",
        evidence=evidence,
        lecture_rule="docs/lectures.md §5 (gradient check): relative error > 1e-2 means the gradient is probably wrong; < 1e-4 is fine with kinks",
        fix=f"fix the backward pass of {type(modules[worst]).__name__} (a custom autograd.Function's backward, or an in-place/detached op)",
    )
    return CheckResult("gradcheck", summary, evidence, [finding])
