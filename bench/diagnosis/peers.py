"""The peers: torchtest2 and torch-audit on the program-bug scripts, each used as its README says, and what their output names.

- **torchtest2** (0.1.0): its one call before training,
  `torchtest2.check_model(model, inputs, targets, loss_fn=loss_fn, optimizer=optimizer)`,
  with the script's real loss, optimiser and first batch; for a LightningModule
  `check_model(module, inputs, targets, plugin="lightning")` (the plugin runs
  `training_step` and takes `configure_optimizers()`'s optimiser). A check's
  FAIL or WARN is a finding, its id the check's name.
- **torch-audit** (0.3.0): its runtime auditor on the training loop in the
  README's zero-touch mode, `torch_audit.autopatch(model, optimizer=optimizer,
  every_n_steps=1)` (the README: "set to 1 to audit every step"; the static and
  init audits run at the start), then `auditor.finish()` and `auditor.unpatch()`.
  In a hand-written loop it starts right before the loop; under `bs.fit` from a
  fit callback's `on_fit_start` (the model and the optimiser fit built); under
  Lightning from a callback's `on_fit_start` with `trainer.optimizers[0]` (its
  repository ships no Lightning callback; its demo shows a hand-written one).
  Findings are deduplicated by (rule, module).

The per-bug tables below say which of a tool's finding ids **name the cause**,
read from what each check actually tests (its source), not from its name:

- torchtest2 runs its own steps on one batch: it sees the model, the loss it is
  handed and the optimiser's parameter list, never the user's loop, schedule,
  mode switches or data order, so it cannot name a bug that lives there.
- torch-audit sees every forward pass and every optimiser step; its
  stability checks look at the parameters and gradients after the step, its
  graph check at which parameterised modules forward never called.

A finding that is not in the bug's cause set counts as a **symptom** when its
id is not also raised on the healthy twin (what both raise is the tool's noise,
not the bug's trace); otherwise the case is **missed**. A **false alarm** is a
healthy twin on which the tool raises an error: a torchtest2 FAIL, a
torch-audit ERROR or FATAL (babysit: an error-level finding).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

from torch import Tensor, nn

from programs.tools import Findings, Tool

# --------------------------------------------------------------------------- which ids name each bug's cause

# torchtest2: check name -> the bugs whose cause its FAIL/WARN message names.
#   optimizer_coverage  "N trainable parameter(s) are not in the optimizer: <names> ... created for another model
#                       instance?" -- the optimiser's parameter list is the bug.
#   gradient_flow       "N trainable parameter(s) get no gradient (unused in forward, or the graph is cut by
#                       .detach()/.item()/no_grad): <names>" -- the cut or the unused layer, by name.
#   batch_independence  "changing sample 0 changed the outputs of other samples ... (view/reshape instead of
#                       transpose/permute, a batch_first mix-up ...)" -- examples mixed across the batch.
#   loss                "the loss is nan" on a finite forward pass (output_finite passes) -- the NaN comes from the
#                       loss computation, which is where log(log_softmax) is written.
# Not causes: params_change (parameters that did not move: the end of many causes), overfit_batch (the loss on
# one batch did not fall: lr, loss, capacity...), gradient_magnitude, output_finite, initial_loss,
# output_varies, eval_determinism. frozen_params passes on a body frozen by mistake: it checks that frozen
# parameters stay frozen, taking requires_grad=False as intended.
TORCHTEST2_CAUSES: dict[str, frozenset[str]] = {
    "optimizer_on_copy": frozenset({"optimizer_coverage"}),
    "optimizer_head_only": frozenset({"optimizer_coverage"}),
    "detached_body": frozenset({"gradient_flow"}),
    "unused_layer": frozenset({"gradient_flow"}),
    "no_grad_branch": frozenset({"gradient_flow"}),
    "view_for_permute": frozenset({"batch_independence"}),
    "batch_first_missing": frozenset({"batch_independence"}),
    "log_of_log_softmax": frozenset({"loss"}),
}

# torch-audit: rule id -> the bugs whose cause it names.
#   TA104 "No gradients found in the model. Did you forget `loss.backward()`?" -- raised after an optimizer
#         step that found no gradient on any parameter: the step ran without gradients, which is both the
#         step-before-backward bug and gradients cleared before the step (its hint names the first).
#   TA500 "Layer defined but NEVER called (Zombie)" -- a parameterised leaf module forward never called.
# Not causes: TA100 (NaN/inf in parameters or gradients: "check learning rate, loss scaling, or
# initialization"), TA102 (gradient norm over 100: "check learning rate or clip"), TA103 (an exactly zero
# gradient), TA105 (dead ReLUs), the data, architecture and optimiser-config hints (TA2xx-TA4xx).
TORCH_AUDIT_CAUSES: dict[str, frozenset[str]] = {
    "step_before_backward": frozenset({"TA104"}),
    "zero_grad_before_step": frozenset({"TA104"}),
    "unused_layer": frozenset({"TA500"}),
}

CAUSES: dict[str, dict[str, frozenset[str]]] = {"torchtest2": TORCHTEST2_CAUSES, "torch_audit": TORCH_AUDIT_CAUSES}
ERROR_LEVEL = {"torchtest2": frozenset({"FAIL"}), "torch_audit": frozenset({"ERROR", "FATAL"}), "babysit": frozenset({"error"})}


# --------------------------------------------------------------------------- the tools


class TorchTest2Tool(Tool):
    """torchtest2's one-call check before training, with the script's real loss, optimiser and batch."""

    name = "torchtest2"

    def __init__(self) -> None:
        self.found: Findings = []

    def before_training(
        self, model: nn.Module, optimizer: Any, loss_fn: Callable, batch: tuple[Tensor, Tensor], *, way: str, name: str, data: Any
    ) -> None:
        import torchtest2

        x, y = batch
        if way == "lightning":
            report = torchtest2.check_model(model, x, y, plugin="lightning")
        else:
            report = torchtest2.check_model(model, x, y, loss_fn=loss_fn, optimizer=optimizer)
        self.found = [
            {"id": r.name, "severity": r.status.value, "message": r.message} for r in report.results if r.status.value in ("FAIL", "WARN")
        ]

    def finish(self) -> Findings:
        return self.found


class TorchAuditTool(Tool):
    """torch-audit's runtime auditor, patched onto the model and optimiser that train (`autopatch`)."""

    name = "torch_audit"
    EVERY_N_STEPS = 1

    def __init__(self) -> None:
        self.auditor: Any = None

    def start(self, model: nn.Module, optimizer: Any) -> None:
        from torch_audit import autopatch

        self.auditor = autopatch(model, optimizer=optimizer, every_n_steps=self.EVERY_N_STEPS)

    def fit_callbacks(self) -> list[object]:
        tool = self

        class AuditFit:
            """Starts the auditor on the model and optimiser `bs.fit` built."""

            def on_fit_start(self, state: Any) -> None:
                tool.start(state.model, state.optimizer)

        return [AuditFit()]

    def lightning_callbacks(self) -> list[Any]:
        import lightning.pytorch as pl

        tool = self

        class AuditLightning(pl.Callback):
            """Starts the auditor on the module and the Trainer's optimiser."""

            def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                tool.start(pl_module, trainer.optimizers[0])

        return [AuditLightning()]

    def finish(self) -> Findings:
        if self.auditor is None:
            return []
        result = self.auditor.finish()
        self.auditor.unpatch()
        seen: dict[tuple[str, str | None], dict[str, Any]] = {}
        for f in result.findings:
            key = (f.rule_id, f.module_path)
            if key in seen:
                seen[key]["count"] += 1
            else:
                seen[key] = {"id": f.rule_id, "severity": f.severity.value, "message": f.message, "module": f.module_path, "count": 1}
        return list(seen.values())


TOOLS: dict[str, Callable[[], Tool]] = {"torchtest2": TorchTest2Tool, "torch_audit": TorchAuditTool}


# --------------------------------------------------------------------------- what a tool's output named


def verdict(tool: str, bug: str, findings: Findings, twin_findings: Findings, accepted: frozenset[str] | None = None) -> str:
    """'cause', 'symptom' or 'missed' for one bug case of `tool` (babysit: `accepted` is the bug's ids).

    A symptom is a finding outside the cause set whose id the healthy twin did not also raise
    (babysit: at warning or error level).
    """
    causes = accepted if tool == "babysit" else CAUSES[tool].get(bug, frozenset())
    ids = {f["id"] for f in findings if tool != "babysit" or f["severity"] in ("error", "warning")}
    if any(f["id"] in causes for f in findings):
        return "cause"
    twin = {f["id"] for f in twin_findings}
    return "symptom" if ids - twin else "missed"


def false_alarm(tool: str, findings: Findings) -> list[str]:
    """The error-level finding ids `tool` raised (on a healthy twin: its false alarms)."""
    return sorted({f["id"] for f in findings if f["severity"] in ERROR_LEVEL[tool]})


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def table(results: dict[str, list[dict[str, Any]]], verified: set[str], accepted: dict[str, frozenset[str]]) -> dict[str, Any]:
    """Per tool and bug kind: {"cause", "symptom", "missed"} counts over the verified bug cases, and false alarms.

    Args:
        results: tool name -> the outcomes of its run (`scripts.run`), healthy twins included.
        verified: ids of the bug cases the verification kept.
        accepted: bug -> babysit's finding ids that name it (`programs.ACCEPTED`).
    """
    out: dict[str, Any] = {}
    plain = {o["id"]: o["seconds"] for o in results.get("plain", [])}
    for tool, outcomes in results.items():
        if tool == "plain":
            continue
        twins = {o["family"]: o for o in outcomes if o["bug"] == "healthy"}
        per_bug: dict[str, dict[str, int]] = defaultdict(lambda: {"cause": 0, "symptom": 0, "missed": 0})
        for o in outcomes:
            if o["id"] not in verified or o["bug"] not in accepted:
                continue
            twin = twins.get(o["family"], {"findings": []})
            per_bug[o["bug"]][verdict(tool, o["bug"], o["findings"], twin["findings"], accepted[o["bug"]])] += 1
        healthy = [o for o in outcomes if o["bug"] in ("healthy", "healthy_frozen")]
        alarms = {o["id"]: false_alarm(tool, o["findings"]) for o in healthy}
        out[tool] = {
            "per_bug": {b: dict(v) for b, v in sorted(per_bug.items())},
            "false_alarms": {k: v for k, v in alarms.items() if v},
            "healthy": len(healthy),
            "seconds_per_case": sum(o["seconds"] for o in outcomes) / max(1, len(outcomes)),
            # Over the plain run of the same script; fit cases train with bs.fit here and with the plain loop there.
            "overhead_per_case": _mean([o["seconds"] - plain[o["id"]] for o in outcomes if o["way"] != "fit" and o["id"] in plain]),
        }
    return out
