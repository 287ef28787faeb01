"""The program check: the training program's invariants before any real step (the same observer and rules as a run's).

Two steps of a plain loop train a copy of the model under `watch.program.ProgramWatch`
(the observer `fit`, `bs.record` and the Lightning callback attach): your loss function,
or cross-entropy, on a batch of the training split. Its facts, with the optimiser
coverage read from your own optimiser and model, go through
`diagnose.program_rules.program_findings`, so `bs.check` names what a run would: an
optimiser over another copy of the model, parameters it does not hold, layers no
gradient reaches (detached, never called, under no_grad), frozen layers still at
their random initialisation, a loss below what cross-entropy allows or not finite,
a softmax before cross-entropy, and examples mixed across the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from babysit.checks.base import CHECKS, CheckContext, CheckResult
from babysit.diagnose.program_rules import program_findings
from babysit.errors import ConfigError
from babysit.watch.program import ProgramWatch, static_facts
from babysit.watch.schedule import Periodic

LossFn = Callable[[Tensor, Tensor], Tensor]
STEPS = 2


@CHECKS.register("program")
def program(ctx: CheckContext) -> CheckResult:
    """The training program: optimiser coverage, gradients reaching every layer, the loss, examples kept apart."""
    model = ctx.copy_model()
    loss_fn: LossFn = ctx.loss_fn or F.cross_entropy
    # A tiny rate: the two steps exist to see the gradients arrive, not to train.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-8)
    watch = ProgramWatch(schedule=Periodic(period=1), where="check", loss_known=ctx.loss_fn is None).attach(model, optimizer)
    x, y = ctx.batch("train", min(ctx.settings.batch, 64))
    try:
        for _ in range(STEPS):
            optimizer.zero_grad(set_to_none=True)
            scores = model(x)
            try:
                loss = loss_fn(scores, y)
            except Exception as e:  # the user's function: say which call failed, with its message
                raise ConfigError(f"loss_fn(scores, labels) raised {type(e).__name__}: {e}; it is called with scores {tuple(scores.shape)} and labels {tuple(y.shape)}") from None
            if not isinstance(loss, Tensor) or loss.ndim != 0:
                raise ConfigError(f"loss_fn(scores, labels) must return a scalar tensor, got {type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}")
            if loss.requires_grad:
                loss.backward()
            optimizer.step()
            watch.observe_loss(loss, y)
    finally:
        watch.close(flush=False)
    facts = watch.facts()
    # Coverage is a fact of *your* optimiser and model (the copy above trains under babysit's own SGD).
    facts["params"] = static_facts(ctx.model, ctx.optimizer)
    facts["epoch_steps"] = []
    # The schedule is not this check's (two steps of babysit's SGD); a softmax on the model's own output is init_health's.
    skip = {"lr_collapsed"} | ({"activation_on_scores"} if ctx.loss_fn is None else set())
    findings = [f for f in program_findings(facts) if f.rule not in skip]
    grad, batch = facts["grad"], facts["batch"]
    parts = [
        f"optimiser holds {facts['params'].get('held_from_model', '-')} of the model's tensors" if ctx.optimizer is not None else "babysit's optimiser",
        f"{grad['without_grad_count']} without gradient",
        f"batch independence {'mixed' if batch.get('changed') else 'ok' if batch.get('tested') else 'not tested'}",
    ]
    evidence = {"facts": facts, "loss_fn": getattr(ctx.loss_fn, "__name__", type(ctx.loss_fn).__name__) if ctx.loss_fn else "cross_entropy"}
    return CheckResult("program", ", ".join(parts), evidence, findings)
