"""Rules over the program's facts (`watch.program`): the bugs people write into their own training code.

`program_findings(facts, metrics)` is the one implementation: the diagnosis
(the "program" rule of `diagnose.rules`, over a run record's program.json) and
the preflight (`checks.program_check`, over facts gathered before training)
both call it. Each finding names what the program did, with the parameter and
module names and the step numbers that show it, and the line to change. A
program fault explains the curve symptoms it causes (`diagnose.kinds`), so a
flat or exploding loss caused by a missing `zero_grad` is never answered with
"change the learning rate".

A fault seen on a single observed step could be a one-off (a loop that skips a
step on purpose); the gradient and mode rules ask for at least half of the
observed steps (two at least when more than one was observed).

    facts = bs.load_run("runs/mine").program
    for f in program_findings(facts):
        print(f.title, "->", f.fix)
"""

from __future__ import annotations

import math
from typing import Any

from babysit.diagnose import significance
from babysit.diagnose.findings import Finding

Facts = dict[str, Any]

RULE_SGD = "docs/lectures.md §8: SGD moves each weight by -lr x its gradient of this mini-batch's loss (one gradient per step)"
RULE_MODES = "docs/lectures.md §4, §9: dropout and batch norm behave differently in training (random masks, batch statistics) and at test time"
RULE_DECAY = "docs/lectures.md §8: decay the learning rate over the planned epochs (step, exponential, 1/t); too fast a decay freezes training early"
RULE_LOSS = "docs/lectures.md §5: the softmax (cross-entropy) loss is -log of a probability: never below 0, ln(C) at chance"
RULE_BATCH = "docs/lectures.md §4: only batch norm's training statistics may mix the examples of a batch; at test time each example is computed alone"
# More than this share of the trained values affected makes a partial fault an error: most of the network does not learn.
MOST = 0.5


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _systematic(count: int, observed: int) -> bool:
    """At least half of the observed steps, and two of them when more than one was observed."""
    return count >= max(1, math.ceil(observed / 2)) and (count >= 2 or observed <= 1)


def _names(items: list[str], total: int) -> str:
    """Module or parameter names, quoted (a name like '1' reads as a number otherwise), the first four of `total`."""
    shown = ", ".join(f"'{n}'" for n in items[:4])
    return shown + (f" and {total - 4} more" if total > 4 else "")


def coverage(params: Facts) -> list[Finding]:
    """Which parameters the optimiser holds: another model's, or not all of this one's."""
    found = []
    strangers, held = params.get("optimizer_strangers", 0), params.get("held_from_model", 0)
    if strangers and not held:
        what = "a copy of the model (the same shapes)" if params.get("strangers_copy_model") else "tensors the model never uses"
        found.append(Finding(
            "optimizer_params_not_in_model", "error",
            f"the optimiser ({params.get('optimizer')}) holds none of the model's parameters: its {strangers} tensors "
            f"({params.get('optimizer_strangers_numel', 0):,} values) are {what}, so training never changes the model",
            evidence={k: params.get(k) for k in ("optimizer", "optimizer_strangers", "optimizer_strangers_numel", "strangers_copy_model", "held_from_model")},
            lecture_rule=RULE_SGD,
        ))  # fmt: skip
    elif strangers:
        found.append(Finding(
            "optimizer_params_not_in_model", "info",
            f"the optimiser also holds {strangers} tensors ({params.get('optimizer_strangers_numel', 0):,} values) outside the model "
            "(fine for a loss with its own parameters; a bug if they are a stale copy)",
            evidence={k: params.get(k) for k in ("optimizer_strangers", "optimizer_strangers_numel")},
            lecture_rule=RULE_SGD, fix="check that those tensors are meant to train beside the model",
        ))  # fmt: skip
    missing = params.get("not_in_optimizer_count", 0)
    if missing and held:
        share = _share(params.get("not_in_optimizer_numel", 0), params.get("trainable_numel", 0))
        found.append(Finding(
            "params_not_in_optimizer", "error" if share >= MOST else "warning",
            f"{missing} trainable tensors ({share:.0%} of the trainable values) are not in the optimiser, so they never change: "
            f"{_names(params.get('not_in_optimizer', []), missing)}",
            evidence={k: params.get(k) for k in ("not_in_optimizer", "not_in_optimizer_count", "not_in_optimizer_numel", "trainable_numel")},
            lecture_rule=RULE_SGD,
        ))  # fmt: skip
    untrained = params.get("frozen_untrained", [])
    if untrained:
        total = params.get("trainable_numel", 0) + params.get("frozen_numel", 0)
        share = _share(params.get("frozen_untrained_numel", 0), total)
        found.append(Finding(
            "frozen_untrained", "error" if share >= MOST else "warning",
            f"{len(untrained)} frozen layers ({share:.0%} of the model's values) still hold PyTorch's random initialisation "
            f"(every weight within ±1/sqrt(fan_in)): {_names(untrained, len(untrained))} only compute random features",
            evidence={k: params.get(k) for k in ("frozen_untrained", "frozen_untrained_numel", "frozen_count")},
            lecture_rule="docs/lectures.md §10: freeze a network that was trained (pretrained); a frozen random layer never learns",
        ))  # fmt: skip
    elif params.get("frozen_count"):
        found.append(Finding(
            "params_frozen", "info",
            f"{params['frozen_count']} parameter tensors ({params.get('frozen_numel', 0):,} values) are frozen (requires_grad=False): "
            f"{_names(params.get('frozen', []), params['frozen_count'])}",
            evidence={k: params.get(k) for k in ("frozen", "frozen_count", "frozen_numel")},
            lecture_rule="docs/lectures.md §10: with little data, freeze the pretrained layers and train the last one",
        ))  # fmt: skip
    return found


def gradients(grad: Facts, steps: int, forwards: int, epochs: int) -> list[Finding]:
    """Whether each step used this step's gradient: reset before it, not erased after it, and reaching every parameter."""
    found = []
    observed, backward = grad.get("observed", 0), grad.get("backward_steps", 0)
    evidence = {k: grad.get(k) for k in ("observed", "backward_steps")}
    if steps == 0 and forwards and epochs:
        found.append(Finding(
            "optimizer_never_steps", "error",
            f"the optimiser never stepped in {epochs} epochs ({forwards} training forward passes observed): the weights never change",
            evidence={"steps": steps, "forwards": forwards, "epochs": epochs}, lecture_rule=RULE_SGD,
        ))  # fmt: skip
    if grad.get("not_reset") and _systematic(grad.get("not_reset_count", 0), backward):
        first = grad["not_reset"][0]
        found.append(Finding(
            "grad_not_reset", "error",
            f"gradients are not reset between optimiser steps: at step {first} (and {grad['not_reset_count'] - 1} more of {backward} "
            "observed) the new gradient was added to the last step's, so each update sums every gradient so far",
            evidence={**evidence, "steps": grad["not_reset"], "count": grad["not_reset_count"]}, lecture_rule=RULE_SGD, first_seen=first,
        ))  # fmt: skip
    if grad.get("cleared") and _systematic(grad.get("cleared_count", 0), backward):
        first = grad["cleared"][0]
        found.append(Finding(
            "grad_cleared_before_step", "error",
            f"gradients are erased between backward() and step(): at step {first} (and {grad['cleared_count'] - 1} more) a gradient "
            "arrived, but the parameters held none when the optimiser stepped, so nothing moves",
            evidence={**evidence, "steps": grad["cleared"], "count": grad["cleared_count"]}, lecture_rule=RULE_SGD, first_seen=first,
        ))  # fmt: skip
    if grad.get("no_backward") and _systematic(grad.get("no_backward_count", 0), observed):
        first = grad["no_backward"][0]
        found.append(Finding(
            "step_before_backward", "error",
            f"the optimiser steps without a gradient: at step {first} (and {grad['no_backward_count'] - 1} more of {observed} observed) "
            "no backward pass had reached its parameters since the previous step",
            evidence={**evidence, "steps": grad["no_backward"], "count": grad["no_backward_count"]}, lecture_rule=RULE_SGD, first_seen=first,
        ))  # fmt: skip
    without = grad.get("without_grad") or []
    if without and backward >= 2:
        share = _share(grad.get("without_grad_numel", 0), grad.get("held_numel", 0))
        modules = list(dict.fromkeys(w["module"] for w in without))
        never = [m for m in modules if not any(w["called"] for w in without if w["module"] == m)]
        untracked = [m for m in modules if m not in never and not any(w.get("output_requires_grad") for w in without if w["module"] == m)]
        cut = [m for m in modules if m not in never and m not in untracked]
        why = []
        if never:
            why.append(f"{_names(never, len(never))} never called in forward")
        if untracked:
            why.append(f"{_names(untracked, len(untracked))} run without gradient tracking (torch.no_grad / a detached input)")
        if cut:
            why.append(f"{_names(cut, len(cut))} have an output cut from the loss (.detach(), .data, .item() or numpy)")
        found.append(Finding(
            "params_without_grad", "error" if share >= MOST else "warning",
            f"{grad.get('without_grad_count', len(without))} trainable tensors ({share:.0%} of the optimiser's values) never received "
            f"a gradient in {backward} backward passes: " + "; ".join(why or [_names(modules, len(modules))]),
            evidence={**evidence, "without_grad": without, "never_called": never, "no_grad_tracking": untracked, "detached": cut},
            lecture_rule="docs/lectures.md §3: weight gradients are upstream gradient x input; a layer off the loss's graph gets none",
        ))  # fmt: skip
    return found


def eval_share(m: Facts, steps: int) -> float:
    """The share of the run's steps that ran with dropout / batch norm in eval mode, from where the modes changed."""
    changes = [c for c in m.get("changes") or [] if isinstance(c, list) and len(c) == 2]
    end = max(steps, m.get("last_step", 0))
    if not changes or end <= 0:
        return 0.0
    spans = zip(changes, [*changes[1:], [end + 1, None]])
    # Steps before the first observation count as its state: the first observed step is step 1 but for a resumed run.
    return sum(b[0] - (a[0] if i else 1) for i, (a, b) in enumerate(spans) if a[1]) / end


def modes(m: Facts, steps: int = 0) -> list[Finding]:
    """Dropout and batch norm in eval mode during training steps (for a quarter of the steps, at least two observed)."""
    observed = m.get("observed", 0)
    share = eval_share(m, steps)
    if not m.get("mode_modules") or not m.get("eval_steps") or m.get("eval_count", 0) < min(2, observed) or share < 0.25:
        return []
    if m.get("eval_frozen") and not m.get("eval_dropout") and not m.get("model_eval_count"):
        return []  # only batch norm over frozen parameters held in eval mode: a deliberate transfer-learning choice
    first = m["eval_steps"][0]
    whole = bool(m.get("model_eval_count"))
    who = "the model is in eval mode" if whole else "some dropout / batch-norm layers are in eval mode"
    return [Finding(
        "eval_mode_in_training", "error" if whole else "warning",
        f"{who} during training steps (from step {first}: {share:.0%} of the run's steps, {m['eval_count']} of {observed} observed): "
        f"{_names(m.get('eval_modules', []), len(m.get('eval_modules', [])))} do not train as they should "
        "(dropout off: no regularization; batch norm: running statistics instead of the batch's, never updated)",
        evidence={**{k: m.get(k) for k in ("eval_steps", "eval_count", "model_eval_count", "eval_modules", "observed")}, "share_of_steps": share},
        lecture_rule=RULE_MODES, first_seen=first,
    )]  # fmt: skip


def learning_rate(lr: Facts, epoch_steps: list[int]) -> list[Finding]:
    """A learning rate that collapses: zero, or three decades below its peak for a quarter of the run."""
    steps, peak = lr.get("steps", 0), lr.get("peak") or 0.0
    if steps < 8 or lr.get("initial") is None:
        return []
    zero, collapsed = lr.get("zero_steps", 0), lr.get("collapsed_steps", 0)
    share = collapsed / steps
    if peak > 0 and share < 0.25:
        return []
    evidence = {k: lr.get(k) for k in ("initial", "peak", "lowest", "first_collapsed", "collapsed_steps", "zero_steps", "changes", "change_steps", "steps")}
    if peak == 0:
        title = f"the learning rate is 0 on every one of the {steps} steps: nothing can change"
    else:
        title = (f"the learning rate collapsed from {peak:.3g} to {lr.get('lowest', 0):.3g}: below 1/1000 of its peak from step "
                 f"{lr.get('first_collapsed')} on, {share:.0%} of the {steps} steps" + (f" (0 on {zero})" if zero else ""))
    changes = lr.get("change_steps") or []
    gaps = [b - a for a, b in zip(changes, changes[1:])]
    per_epoch = [b - a for a, b in zip([0, *epoch_steps], epoch_steps) if b > a]
    if gaps and per_epoch and max(gaps) < min(per_epoch):
        gap, epoch = sorted(gaps)[len(gaps) // 2], sorted(per_epoch)[len(per_epoch) // 2]
        title += f"; it changed every {gap} steps while an epoch is {epoch} steps: a per-epoch schedule stepped every batch"
        evidence.update(change_every=gap, steps_per_epoch=epoch)
    return [Finding("lr_collapsed", "error", title, evidence=evidence, lecture_rule=RULE_DECAY, first_seen=lr.get("first_collapsed"))]


def loss(facts: Facts, metrics: list[dict[str, Any]]) -> list[Finding]:
    """The loss against what cross-entropy allows: never negative; finite on finite scores; more than the floor of probabilities."""
    found = []
    f = facts.get("loss") or {}
    scores = facts.get("scores") or {}
    train = [m.get("train_loss") for m in metrics if isinstance(m.get("train_loss"), (int, float))]
    negative_epochs = [i + 1 for i, v in enumerate(train) if math.isfinite(v) and v < -1e-6]
    # Which formula the loop's loss is, read off the recorded scores and labels (`watch.program.matching_losses`).
    labelled, matches = f.get("labels", 0), f.get("matches") or {}
    computes = next((name for name, n in sorted(matches.items(), key=lambda kv: -kv[1]) if _systematic(n, labelled)), None)
    evidence = {"labelled_steps": labelled, "loss_matches": matches}
    if f.get("negative_steps") or negative_epochs or computes in ("nll_of_scores", "nll_of_softmax"):
        low = min([v for v in [f.get("min"), *train] if isinstance(v, (int, float)) and math.isfinite(v)], default=float("nan"))
        if f.get("negative_steps") or negative_epochs:
            where = f"at step {f['negative_steps'][0]}" if f.get("negative_steps") else f"in epoch {negative_epochs[0]}"
            title = f"the loss went negative {where} (down to {low:.4g}): cross-entropy is never below 0"
        else:
            title = f"the loss is nll_loss of {'the raw scores' if computes == 'nll_of_scores' else 'probabilities'}, not of log-probabilities"
        if computes in ("nll_of_scores", "nll_of_softmax"):
            title += f"; on {matches[computes]} of {labelled} steps checked it equals nll_loss of {'the raw scores' if computes == 'nll_of_scores' else 'softmax(scores)'}"
        found.append(Finding(
            "loss_below_minimum", "error", title,
            evidence={"negative_steps": f.get("negative_steps", []), "negative_epochs": negative_epochs, "lowest": low, **evidence},
            lecture_rule=RULE_LOSS, first_seen=(f.get("negative_steps") or [None])[0],
        ))  # fmt: skip
    first = f.get("first")
    if isinstance(first, (int, float)) and not math.isfinite(first) and f.get("first_scores"):
        found.append(Finding(
            "loss_not_finite", "error",
            f"the loss is {first} at step {f.get('first_step')} although the scores are finite: the loss computation itself fails "
            "(a log of zero or of a negative number, e.g. torch.log of log-probabilities)",
            evidence={"first_loss": first, "step": f.get("first_step"), "scores": scores}, lecture_rule=RULE_LOSS, first_seen=f.get("first_step"),
        ))  # fmt: skip
    if computes == "cross_entropy_of_softmax":
        classes = scores.get("classes") or 2
        floor = math.log(classes - 1 + math.e) - 1
        found.append(Finding(
            "activation_on_scores", "error",
            f"the loss is cross-entropy of softmax(scores) (on {matches[computes]} of {labelled} steps checked): the scores pass "
            f"through a softmax before cross_entropy, which applies its own, so the loss can never go below {floor:.3g} for {classes} classes",
            evidence={**evidence, "floor": floor}, lecture_rule=RULE_LOSS,
        ))  # fmt: skip
        return found
    classes, seen = scores.get("classes"), scores.get("observed", 0)
    if classes and classes >= 2 and seen and scores.get("probabilities", 0) == seen:
        # Cross-entropy of probabilities p (rows in [0, 1], summing to 1) is at least log(C - 1 + e) - 1
        # (one class at 1, the rest at 0): for 10 classes 1.46, never near 0. A loop whose loss goes below
        # it does not feed cross-entropy the probabilities (nll_loss of their log is fine).
        floor = math.log(classes - 1 + math.e) - 1
        known = bool(facts.get("loss_known"))
        lows = [v for v in [f.get("min"), *train] if isinstance(v, (int, float)) and math.isfinite(v)]
        if known or (lows and min(lows) >= floor - 1e-3):
            found.append(Finding(
                "activation_on_scores", "error",
                f"the model's outputs are probabilities (every row in [0, 1] summing to 1, {seen} steps observed) and reach cross-entropy, "
                f"which applies its own softmax: the loss can never go below {floor:.3g} for {classes} classes"
                + (f" (lowest seen {min(lows):.3g})" if lows else ""),
                evidence={"scores": scores, "floor": floor, "lowest_loss": min(lows) if lows else None},
                lecture_rule=RULE_LOSS,
            ))  # fmt: skip
    return found


def generalisation(facts: Facts, metrics: list[dict[str, Any]]) -> list[Finding]:
    """Training accuracy well above chance, validation accuracy never above it: the labels do not go with the inputs.

    Chance is 1/C (C from the scores); the validation split's size is the samples the observer
    counted in the loop's evaluation passes (`val_samples`), which gives the standard error of an
    accuracy there. The rule needs the last epoch's validation accuracy not significantly above chance
    (the model the loop ends with; the best of many noisy epochs would be biased upward), and the last
    training accuracy at least 3 standard errors above it.
    """
    classes = (facts.get("scores") or {}).get("classes")
    sizes = sorted(n for n in facts.get("val_samples") or [] if isinstance(n, int) and n > 0)
    val = [m.get("val_accuracy") for m in metrics if isinstance(m.get("val_accuracy"), (int, float)) and math.isfinite(m["val_accuracy"])]
    train = [m.get("train_accuracy") for m in metrics if isinstance(m.get("train_accuracy"), (int, float)) and math.isfinite(m["train_accuracy"])]
    if not classes or classes < 2 or not sizes or len(val) < 2 or not train:
        return []
    n, chance = sizes[len(sizes) // 2], 1.0 / classes
    se = math.sqrt(chance * (1 - chance) / n)
    last = val[-1]
    if significance.verdict(last - chance, se, 0.0) == "pass" or train[-1] - last < 3 * se:
        return []
    return [Finding(
        "input_independent", "error",
        f"validation accuracy ended at chance ({last:.1%} against 1/{classes} = {chance:.1%} on about {n} samples, best {max(val):.1%}) "
        f"while training accuracy reached {train[-1]:.1%}: what the model learns from the training labels does not carry "
        "to new inputs, as when labels do not go with their inputs",
        evidence={"val_accuracy": val, "train_accuracy": train, "chance": chance, "val_samples": n, "standard_error": se},
        lecture_rule="docs/lectures.md §6/§7: the validation set measures what generalises; a train/val gap at chance level means nothing does",
    )]  # fmt: skip


def batch(b: Facts) -> list[Finding]:
    """Outputs of one example that change with another example's input."""
    if not b.get("tested") or not b.get("changed"):
        return []
    others = b["examples"] - 1
    return [Finding(
        "batch_mixing", "error",
        f"changing the input of one example changes the outputs of {b['changed']} of the {others} other examples of the batch "
        f"(by up to {b['max_change']:.2g} of the output scale, in eval mode): the model mixes examples across the batch",
        evidence=dict(b), lecture_rule=RULE_BATCH,
    )]  # fmt: skip


def readable(facts: Any) -> bool:
    """Whether `facts` reads as program facts (a damaged or foreign program.json does not, and is read around)."""
    if not isinstance(facts, dict):
        return False
    try:
        program_findings(facts)
        program_checks(facts)
    except (TypeError, AttributeError, KeyError, ValueError, IndexError):
        return False
    return True


def program_findings(facts: Facts | None, metrics: list[dict[str, Any]] | None = None) -> list[Finding]:
    """Every program finding the facts (program.json) and the per-epoch metrics support, unranked."""
    if not facts:
        return []
    metrics = metrics or []
    epochs = max(len(metrics), len(facts.get("epoch_steps") or []))
    return [
        *coverage(facts.get("params") or {}),
        *gradients(facts.get("grad") or {}, facts.get("steps", 0), facts.get("forwards", 0), epochs),
        *modes(facts.get("modes") or {}, facts.get("steps", 0)),
        *learning_rate(facts.get("lr") or {}, facts.get("epoch_steps") or []),
        *loss(facts, metrics),
        *batch(facts.get("batch") or {}),
        *generalisation(facts, metrics),
    ]


def program_checks(facts: Facts | None) -> list[tuple[str, str, str]]:
    """What the program observer could check and what it could not, as (check, "ran" | "not run", detail) rows for the report."""
    if not facts:
        return []
    params, grad, m, lr = (facts.get(k) or {} for k in ("params", "grad", "modes", "lr"))
    loss, batch, not_run = facts.get("loss") or {}, facts.get("batch") or {}, facts.get("not_run") or {}
    rows = []
    if "held_from_model" in params:
        rows.append(("optimiser holds the model's parameters", "ran",
                     f"{params['held_from_model']} of the model's tensors held, {params.get('optimizer_strangers', 0)} foreign"))  # fmt: skip
    else:
        rows.append(("optimiser holds the model's parameters", "not run", "no optimiser was given"))
    rows.append(("frozen parameters", "ran", f"{params.get('frozen_count', 0)} frozen tensors"))
    observed = grad.get("observed", 0)
    rows.append(("gradients reset, kept until step(), reaching every parameter", "ran" if observed else "not run",
                 f"{observed} steps observed, {grad.get('backward_steps', 0)} with a backward pass" if observed else "no optimiser step was observed"))  # fmt: skip
    rows.append(("dropout / batch norm in training mode during training", "ran" if m.get("observed") else "not run",
                 f"{m.get('mode_modules', 0)} such modules, {m.get('observed', 0)} steps observed"))  # fmt: skip
    rows.append(("learning rate each step used", "ran" if lr.get("steps") else "not run",
                 f"{lr.get('steps', 0)} steps, from {lr.get('initial')} (peak {lr.get('peak')}, lowest {lr.get('lowest')})" if lr.get("steps") else "no step"))  # fmt: skip
    if facts.get("loss_known"):
        rows.append(("the loss against what cross-entropy allows", "ran", "babysit computes cross-entropy of the scores itself"))
    else:
        rows.append(("the loss against what cross-entropy allows", "not run" if "loss" in not_run else "ran",
                     not_run.get("loss") or f"{loss.get('observed', 0)} losses observed"))  # fmt: skip
        rows.append(("which formula the loss computes (needs the labels)", "not run" if "loss" in not_run or "loss_vs_scores" in not_run else "ran",
                     not_run.get("loss_vs_scores") or not_run.get("loss") or f"{loss.get('labels', 0)} steps with labels"))  # fmt: skip
    rows.append(("each example computed apart from the rest of the batch", "ran" if batch.get("tested") else "not run",
                 f"{batch.get('examples')} examples, {batch.get('changed')} others changed" if batch.get("tested") else batch.get("reason", "")))  # fmt: skip
    return rows
