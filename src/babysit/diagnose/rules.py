"""Diagnosis rules over a run record: read the curves and probes, say what is wrong (docs/lectures.md §7).

Contract: a rule is `rule(run: RunView) -> list[Finding]` registered in `RULES`;
its docstring's first line is its description. Rules must stay silent on
missing data (a record without probes, a run of one epoch). `diagnose` runs all
of them in registry order and ranks the findings; the order puts causes before
symptoms: a divergence first, then layer health (zero weights, then dead or
saturated units, which in turn make activations vanish; vanishing activations
explain a flat loss), then the curves, then the regularization balance.

The layer rules judge two probes of a run: the first (the initialisation, where
the lectures' activation-statistics demo looks) and the latest (what training
made of it), and report the worse; the title names the step.

    findings = diagnose(result)            # a FitResult, a RunRecord or its dict
    print(findings[0].title, findings[0].fix)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from babysit.diagnose import layer_rules, precision_rules, program_rules
from babysit.diagnose.findings import SEVERITIES, Finding, rank
from babysit.diagnose.kinds import KINDS, training_twin
from babysit.diagnose.record import RunView, run_view
from babysit.registry import Registry
from babysit.status import DIVERGED

Rule = Callable[[RunView], list[Finding]]
RULES: Registry = Registry("diagnosis rule")

# Relative change of the train loss that counts as "not moving".
FLAT = 0.02
# "Flat then sudden drop": a drop of at least this fraction in one epoch after a flat start.
SUDDEN_DROP = 0.2
# Explosion: the lectures' early-stopping rule, 3x the initial cost (§6).
EXPLODE_FACTOR = 3.0
# Train/val accuracy gaps.
GAP_WARN, GAP_INFO = 0.15, 0.07
# Train accuracy (measured with dropout on) this far below val: too much regularization.
REVERSE_GAP = 0.1
# Underfitting: a plateaued train accuracy below this with no gap.
UNDERFIT_ACCURACY = 0.8
# Train accuracy at which a flat or stalled loss means "converged", not "stuck".
CONVERGED = 0.9


def _finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _relative_drop(losses: list[float]) -> float:
    """How far the train loss fell below its first epoch, as a fraction of it."""
    return (losses[0] - min(losses)) / abs(losses[0]) if losses[0] else 0.0


def _accuracy_note(accs: list[float]) -> str:
    """", train accuracy 0.11" when the record has it; nothing when it does not (a loop that logs only losses)."""
    return f", train accuracy {accs[-1]:.2f}" if accs and math.isfinite(accs[-1]) else ""


def _rises(losses: list[float]) -> int:
    """Epochs whose train loss rose more than 1% over the previous one (a bouncing loss)."""
    return sum(b > 1.01 * a for a, b in zip(losses, losses[1:]))


def _probes_with(run: RunView, part: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every probe that has `part` ("layers" or "params"), each with where it was taken."""
    return [(p[part], {"step": p.get("step"), "epoch": p.get("epoch")}) for p in run.probes if p.get(part)]


def _gravity(found: list[Finding]) -> int:
    """0 when `found` holds an error, 1 for a warning, 2 for an info, 3 when empty (smaller is worse)."""
    return min((SEVERITIES.index(f.severity) for f in found), default=len(SEVERITIES))


def _at(f: Finding, where: dict[str, Any], rule: str | None = None, phase: str = "init", first_seen: Any = None) -> Finding:
    step = where.get("step")
    title = f"{f.title} at step {step}" if step is not None else f.title
    return replace(f, rule=rule or f.rule, title=title, phase=phase, first_seen=step if first_seen is None else first_seen)


def _by_phase(run: RunView, part: str, judge: Callable[[dict[str, Any], dict[str, Any]], list[Finding]]) -> list[Finding]:
    """`judge`'s findings at initialisation (the first probe) and, under their training ids, the faults that appeared later.

    The first probe stands for the initialisation, where the lectures' activation
    statistics demo looks; a fault of the initialisation shows there even when
    training later hides part of it (the 0.01-init tanh net's deep layers grow
    back from 1e-10 to 1e-2). A fault absent at the first probe that fires later
    (ReLUs dying at a high learning rate) is a training fault: it gets the id of
    its kind's training twin (`diagnose.kinds.training_twin`), the step where it first fired, and the evidence of
    the probe where it was worst (the latest at a tie). A fault of the
    initialisation that persists keeps its id, with the evidence of its worst
    probe (the latest at a tie).
    """
    probes = _probes_with(run, part)
    if not probes:
        return []
    stats, where = probes[0]
    at_init = [_at(f, where) for f in judge(stats, where)]
    fired = {f.rule for f in at_init}
    later: dict[str, tuple[Finding, dict[str, Any], Any]] = {}
    init_step = where.get("step")
    for stats, where in probes[1:]:
        for f in judge(stats, where):
            if f.rule in fired:
                # Still the initialisation's fault; report it at its worst (bias -5: partly dead at step 1, 81% later).
                i = next(i for i, g in enumerate(at_init) if g.rule == f.rule)
                if SEVERITIES.index(f.severity) <= SEVERITIES.index(at_init[i].severity):
                    at_init[i] = _at(f, where, first_seen=init_step)
                continue
            seen = later[f.rule][2] if f.rule in later else where.get("step")
            if f.rule not in later or SEVERITIES.index(f.severity) <= SEVERITIES.index(later[f.rule][0].severity):
                later[f.rule] = (f, where, seen)
    trained = []
    for f, where, seen in later.values():
        # The training twin's own fix: the learning rate moved the network there, not its initial scale.
        rule = training_twin(f.rule)
        trained.append(replace(_at(f, where, rule, "training", seen), fix=KINDS[rule].fix))
    return at_init + trained


@RULES.register("program")
def program(run: RunView) -> list[Finding]:
    """The training program's own faults (gradients, optimiser, modes, schedule, loss, batch), from its facts (program.json)."""
    # A damaged or foreign program.json says nothing (the report notes it as skipped).
    return program_rules.program_findings(run.program, run.metrics) if program_rules.readable(run.program) else []


RULES.register("fp16_overflow")(precision_rules.fp16_overflow)
RULES.register("scaler_skips_steps")(precision_rules.scaler_skips_steps)


@RULES.register("loss_explodes")
def loss_explodes(run: RunView) -> list[Finding]:
    """Loss NaN/inf or above 3x its start: learning rate too high."""
    losses = run.series("train_loss")
    summary = run.summary or {}
    evidence: dict[str, Any] = {"train_loss": losses}
    why = ""
    if summary.get("status") == DIVERGED:
        why = summary.get("stop_reason") or "the run was stopped as diverged"
    elif bad := [i + 1 for i, m in enumerate(run.metrics) if any(run.recorded(m, k) and not math.isfinite(m[k]) for k in ("train_loss", "val_loss"))]:
        why = f"the loss became NaN/inf in epoch {bad[0]}"
    elif losses and max(losses) > EXPLODE_FACTOR * losses[0]:
        peak = max(range(len(losses)), key=losses.__getitem__)
        why = f"the train loss rose to {losses[peak]:.3g} at epoch {peak + 1}, over {EXPLODE_FACTOR:g}x its first value {losses[0]:.3g}"
    if not why:
        return []
    lr = run.series("lr")
    evidence["lr"] = lr[0] if lr else None
    return [
        Finding(
            "loss_explodes",
            "error",
            f"the loss exploded: {why}",
            evidence=evidence,
            lecture_rule="docs/lectures.md §7: loss explodes / NaN -> learning rate too high; §6: stop a run whose cost exceeds 3x the initial cost",
        )
    ]


@RULES.register("symmetry")
def symmetry(run: RunView) -> list[Finding]:
    """Hidden weight tensors that are all zero at the first probe: symmetry never broken."""
    probes = _probes_with(run, "params")
    return [_at(f, probes[0][1]) for f in layer_rules.zero_weights(*probes[0])] if probes else []


@RULES.register("dead_relu")
def dead_relu(run: RunView) -> list[Finding]:
    """ReLU-family layers with many units that never fire: dead at initialisation, or died during training.

    Dead units matter because they take capacity and gradient away (docs/lectures.md §1). A run that
    fits its training split anyway (final training accuracy at least `CONVERGED`) shows that they cost
    it nothing it needed: the finding stays, as information, with that evidence beside it.
    """
    found = _by_phase(run, "layers", layer_rules.dead_units)
    train = run.series("train_accuracy")
    if not (found and train and math.isfinite(train[-1]) and train[-1] >= CONVERGED):
        return found
    note = f"; the network still fits its training split (train accuracy {train[-1]:.2f}), so they cost it no accuracy it needed"
    return [replace(f, severity="info", title=f.title + note, evidence={**f.evidence, "train_accuracy": train[-1]}) for f in found]


@RULES.register("saturation")
def saturation(run: RunView) -> list[Finding]:
    """Tanh/sigmoid layers stuck in their flat tails: at initialisation, or driven there during training."""
    return _by_phase(run, "layers", layer_rules.saturated_units)


@RULES.register("activations")
def activations(run: RunView) -> list[Finding]:
    """Activation std vanishing or exploding with depth: at initialisation, or during training."""
    return _by_phase(run, "layers", layer_rules.activation_scale)


@RULES.register("gradient_flow")
def gradient_flow(run: RunView) -> list[Finding]:
    """Relative gradients vanishing or exploding from the output layer to the input layer: at initialisation, or during training."""
    return _by_phase(run, "params", layer_rules.gradient_flow)


@RULES.register("loss_flat")
def loss_flat(run: RunView) -> list[Finding]:
    """The train loss does not move and the scores stay at chance: learning rate too low."""
    losses, accs = run.series("train_loss"), run.series("train_accuracy")
    if len(_finite(losses)) < 3 or len(_finite(losses)) < len(losses):
        return []
    # A tiny learning rate moves the loss by tiny, steady steps; a bouncing flat loss is the plateau rule's.
    drop = _relative_drop(losses)
    if drop >= FLAT or _rises(losses) or accs[-1] >= CONVERGED:
        return []
    lr = run.series("lr")
    return [
        Finding(
            "loss_flat",
            "error",
            f"the loss is flat: {losses[0]:.4g} -> {losses[-1]:.4g} over {len(losses)} epochs ({drop:.1%} lower){_accuracy_note(accs)}",
            evidence={"train_loss": losses, "train_accuracy": accs, "relative_drop": drop, "lr": lr[-1] if lr else None},
            lecture_rule="docs/lectures.md §7: loss flat -> learning rate too low (§5: 1e-6 barely moves the loss)",
        )
    ]


@RULES.register("flat_then_drop")
def flat_then_drop(run: RunView) -> list[Finding]:
    """The loss sits flat for epochs, then drops suddenly: bad initialisation.

    Flat: 3 or more epochs within `FLAT` of the first. Sudden: the loss falls by `SUDDEN_DROP` within the
    two epochs after the flat stretch (faster than the stretch lasted), not by a slow slide a low rate gives.
    """
    losses = run.series("train_loss")
    if len(losses) < 4 or len(_finite(losses)) < len(losses):
        return []
    k = 0  # the last epoch of the flat stretch
    while k + 1 < len(losses) and max(losses[: k + 2]) - min(losses[: k + 2]) < FLAT * abs(losses[0]):
        k += 1
    after = losses[k + 1 : k + 3]
    drop = next((j for j, v in enumerate(after) if v < (1 - SUDDEN_DROP) * losses[k]), None)
    if k >= 2 and drop is not None:
        return [
            Finding(
                "flat_then_drop",
                "warning",
                f"the loss stayed flat for {k + 1} epochs at {losses[0]:.4g}, then dropped to {after[drop]:.4g} by epoch {k + 2 + drop}",
                evidence={"train_loss": losses, "flat_epochs": k + 1},
                lecture_rule="docs/lectures.md §7: flat then sudden drop -> bad initialisation",
            )
        ]
    return []


@RULES.register("plateau")
def plateau(run: RunView) -> list[Finding]:
    """The loss drops fast, then bounces on a plateau far from fitting the data: learning rate too high.

    Fast: the first half of the run took the loss `SUDDEN_DROP` below its first epoch's. A slow descent
    that levels off (a linear head on frozen features, a model at its capacity) is not this curve.
    """
    losses, accs = run.series("train_loss"), run.series("train_accuracy")
    if len(losses) < 4 or len(_finite(losses)) < len(losses) or accs[-1] >= CONVERGED:
        return []
    half = len(losses) // 2
    first, second = losses[:half], losses[half:]
    fast = min(first) <= (1 - SUDDEN_DROP) * losses[0]
    stalled = min(second) >= (1 - FLAT) * min(first)
    rises = _rises(second)
    if not (fast and stalled and rises):
        return []
    return [
        Finding(
            "plateau",
            "warning",
            f"the loss stopped falling after epoch {half} and bounces around {statistics.median(second):.4g} "
            f"(rises in {rises} of {len(second) - 1} epochs){_accuracy_note(accs)}",
            evidence={"train_loss": losses, "train_accuracy": accs, "plateau_from_epoch": half + 1},
            lecture_rule="docs/lectures.md §7: fast drop then plateau -> learning rate too high",
        )
    ]


@RULES.register("update_ratio")
def update_ratio(run: RunView) -> list[Finding]:
    """Per-layer update/weight ratio (median over the later half of the probes) far from 1e-3."""
    # Adam's first steps move every weight by about lr whatever its gradient (m̂/√v̂ ≈ ±1), so early
    # ratios overstate the steady state: healthy Adam runs at lr 3e-3 median 3e-2 over all probes of the
    # 'light' preset (mostly steps 1-64) but 1e-2 over their later half. At least the last 3 probes count.
    probes = [p for p in run.probes if p.get("params")]
    settled = probes[min(len(probes) // 2, max(0, len(probes) - 3)) :]
    per_param: dict[str, list[float]] = {}
    at_peak: dict[str, list[float]] = {}
    shares = _rate_shares(run)
    for probe in settled:
        epoch = probe.get("epoch")
        share = shares[epoch - 1] if isinstance(epoch, int) and 1 <= epoch <= len(shares) else 1.0
        for name, p in probe["params"].items():
            r = p.get("update_ratio")
            if not layer_rules.is_bias(name) and isinstance(r, (int, float)) and math.isfinite(r):
                per_param.setdefault(name, []).append(float(r))
                if share > 0:
                    at_peak.setdefault(name, []).append(float(r) / share)
    medians = {n: statistics.median(v) for n, v in per_param.items()}
    steps = [p.get("step") for p in settled]
    found = layer_rules.update_ratios(medians, {"probes": len(settled), "steps": [steps[0], steps[-1]] if steps else []},
                                      at_peak={n: statistics.median(v) for n, v in at_peak.items()})  # fmt: skip
    # The 1e-3 ratio is the lectures' rule of thumb, not a symptom: a warning asks to change the rate only when
    # the curve agrees (the loss rose in some epoch, for updates too large; it fell slowly, for updates too small).
    # A run that fit its training set learnt at the rate it had: its late updates are small because its
    # gradients are (little is left to fit), and raising the rate would point the wrong way.
    accs = run.series("train_accuracy")
    fitted = bool(accs) and math.isfinite(accs[-1]) and accs[-1] >= CONVERGED
    return [f for f in found if not (fitted and f.rule == "update_ratio_low") and (f.severity == "error" or not rate_shown_to_work(run, f.rule))]


def _rate_shares(run: RunView) -> list[float]:
    """Each epoch's learning rate as a share of the run's peak rate (1.0 where the record has no rate for it)."""
    lrs = run.series("lr")
    peak = max(_finite(lrs), default=0.0)
    return [lr / peak if peak > 0 and math.isfinite(lr) else 1.0 for lr in lrs]


# A loss that fell in every epoch to at most this share of its first value: the learning rate is not too low.
STEADY = 0.7


def still_falling(run: RunView) -> bool:
    """Whether the train loss (finite, 3 or more epochs) reached a new low in its second half, `FLAT` below the first half's.

    A rate too high shows as a loss that stops falling and bounces (the plateau rule's curve); one
    still making new lows late in the run is doing its job, whatever an epoch's noise.
    """
    losses = run.series("train_loss")
    if len(losses) < 3 or len(_finite(losses)) < len(losses):
        return False
    half = len(losses) // 2
    return min(losses[half:]) < (1 - FLAT) * min(losses[:half])


def steady_descent(run: RunView) -> bool:
    """Whether the train loss fell in every epoch (3 or more, never rising more than 1%) to at most `STEADY` of where it began."""
    losses = run.series("train_loss")
    if len(losses) < 3 or len(_finite(losses)) < len(losses) or _rises(losses):
        return False
    return losses[0] > 0 and losses[-1] <= STEADY * losses[0]


def rate_shown_to_work(run: RunView, rule: str) -> bool:
    """Whether the run's curve contradicts a warning that the rate is too high (`still_falling`) or too low (`steady_descent`)."""
    lr = KINDS[rule].lr if rule in KINDS else None
    too_high = rule in ("update_ratio_high", "lr_too_high") or lr == "lower"
    return still_falling(run) if too_high else steady_descent(run)


@RULES.register("regularization_too_strong")
def regularization_too_strong(run: RunView) -> list[Finding]:
    """Train accuracy (with dropout on) far below validation accuracy: too much regularization."""
    train, val = run.series("train_accuracy"), run.series("val_accuracy")
    if len(train) < 2 or not (math.isfinite(train[-1]) and math.isfinite(val[-1])):
        return []
    if not (math.isfinite(train[-2]) and math.isfinite(val[-2])):
        return []
    gap = val[-1] - train[-1]
    # Two epochs in a row: in the first epoch train accuracy averages over the early, untrained steps.
    if gap < REVERSE_GAP or val[-2] - train[-2] < REVERSE_GAP:
        return []
    return [
        Finding(
            "regularization_too_strong",
            "warning",
            f"train accuracy {train[-1]:.2f} stays {gap:.2f} below validation accuracy {val[-1]:.2f}: regularization (dropout) too strong",
            evidence={"train_accuracy": train, "val_accuracy": val},
            lecture_rule="docs/lectures.md §9: dropout keeps p=0.5 of hidden units (0.8 of inputs); it can hurt with little data or a small net",
        )
    ]


@RULES.register("underfitting")
def underfitting(run: RunView) -> list[Finding]:
    """No train/val gap, low accuracy and a stalled loss: the model lacks capacity."""
    losses, train, val = run.series("train_loss"), run.series("train_accuracy"), run.series("val_accuracy")
    if len(losses) < 4 or len(_finite(losses)) < len(losses) or not math.isfinite(val[-1]):
        return []
    gap = train[-1] - val[-1]
    recent = losses[-3:]
    stalled = recent[0] - recent[-1] < FLAT * abs(recent[0])
    # A loss that never moved is the flat-loss rule's (learning rate), not a capacity problem.
    if not (stalled and train[-1] < UNDERFIT_ACCURACY and abs(gap) < GAP_INFO) or _relative_drop(losses) < FLAT:
        return []
    return [
        Finding(
            "underfitting",
            "warning",
            f"underfitting: train accuracy {train[-1]:.2f} ≈ val {val[-1]:.2f} and the loss has stalled at {losses[-1]:.4g}",
            evidence={"train_accuracy": train, "val_accuracy": val, "train_loss": losses},
            lecture_rule="docs/lectures.md §7: no gap between train and val accuracy -> underfitting: increase capacity",
        )
    ]


@RULES.register("overfitting")
def overfitting(run: RunView) -> list[Finding]:
    """A large train/val accuracy gap: overfitting."""
    train, val, val_loss = run.series("train_accuracy"), run.series("val_accuracy"), run.series("val_loss")
    if not train or not (math.isfinite(train[-1]) and math.isfinite(val[-1])):
        return []
    gap = train[-1] - val[-1]
    if gap < GAP_INFO:
        return []
    finite_val = _finite(val_loss)
    rose = bool(finite_val) and val_loss[-1] > 1.2 * min(finite_val)
    return [
        Finding(
            "overfitting",
            "warning" if gap >= GAP_WARN else "info",
            f"overfitting: train accuracy {train[-1]:.2f} vs val {val[-1]:.2f} (gap {gap:.2f})"
            + (f"; val loss rose from {min(finite_val):.3g} to {val_loss[-1]:.3g}" if rose else ""),
            evidence={"train_accuracy": train, "val_accuracy": val, "val_loss": val_loss, "gap": gap},
            lecture_rule="docs/lectures.md §7: a big gap between train and val accuracy -> overfitting",
        )
    ]


# The rules over per-layer probes (the rest read the curves): the same evidence as the preflight's
# initialisation check, so a report merging both lists them beside it (`report.run_report.merged_findings`).
LAYER_RULES = ("symmetry", "dead_relu", "saturation", "activations", "gradient_flow")


def diagnose(record: Any, rules: Iterable[str] | None = None) -> list[Finding]:
    """Run the diagnosis rules over a run record and return the ranked findings.

    Args:
        record: a RunRecord (or anything `RecordLike`), its JSON dict, a `FitResult` or a `History`.
        rules: names from `RULES` to run; all of them by default.
    """
    run = run_view(record)
    found: list[Finding] = []
    for name in rules if rules is not None else RULES.names():
        found += RULES.get(name)(run)
    return rank(found)
