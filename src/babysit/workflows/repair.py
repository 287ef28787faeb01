"""Repairs for `doctor(..., fix=True)`: from a root-cause finding to a changed config, model or data, and whether it helped.

Each root cause the diagnosis names maps to one kind of fix (its kind's `repair`,
`diagnose.kinds`), applied to what the user gave (never in place):

- learning rate: `train.lr` = the range test's proposal (docs/lectures.md §5.4),
  or 10x down / up when the test proposed nothing;
- initialisation: built-in models get `model.init` = He (ReLU family) or
  Xavier (tanh, sigmoid) with zero biases; your own module a copy with every
  Linear/Conv re-initialised the same way (§3);
- data: standardisation fitted on the training split (§2);
- regularization: weight decay down to the lectures' starting 1e-4, dropout halved (§9);
- capacity: a built-in model's layers 4x wider (§7: underfitting, more capacity);
- overfitting: weight decay up 10x (at least 1e-3) (§7).
Anything else (labels that do not match the inputs, an activation on the scores
of your own module, evaluation in training mode) has no automatic fix: the
round stops and the finding's fix says exactly what to change. Removing an
activation on the scores is only safe on a built-in model, which has none.

A fix helped, and is kept, only when the validation accuracy rose beyond its noise
(the one-sided two-proportion test, `diagnose.significance`): a finding that went
away is no evidence by itself. A change of scale (re-initialising, standardising)
invalidates the tuned learning rate, so the look after it trains at the range
test's proposal (`Plan.retune`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from torch import nn

from babysit.build import load_data
from babysit.config import RunConfig
from babysit.data.datasets import Dataset
from babysit.data.preprocess import prepare
from babysit.diagnose import significance
from babysit.diagnose.findings import Finding, root_causes
from babysit.diagnose.kinds import KINDS
from babysit.nn.init import apply_init
from babysit.nn.models import MODELS
from babysit.registry import accepted_options

if TYPE_CHECKING:
    from babysit.checks.preflight import CheckReport
    from babysit.workflows.doctor import DoctorResult

_RELU_FAMILY = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.ReLU6)
_SATURATING = ("tanh", "sigmoid")
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
# The lectures' starting weight decay when tuning (docs/lectures.md §5.5: small regularization first).
START_WEIGHT_DECAY = 1e-4


@dataclass
class Plan:
    """A planned repair: the cause it answers, what changes (in words), and the changed set-up (`applied` False: advice only)."""

    rule: str
    change: str
    cfg: RunConfig
    model: nn.Module | None
    data: Dataset
    applied: bool
    retune: bool = False  # the change invalidates the tuned learning rate: the next look trains at the range test's rate


@dataclass
class RepairRound:
    """One applied fix and the two looks around it (each a `look_summary`), JSON-ready via `to_dict`."""

    round: int
    cause: str
    change: str
    before: dict[str, Any]
    after: dict[str, Any]
    helped: bool
    run_dir: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return dict(vars(self))


def _replace_section(cfg: RunConfig, section: str, **changes: Any) -> RunConfig:
    return replace(cfg, **{section: replace(getattr(cfg, section), **changes)})


def _lr_plan(f: Finding, cfg: RunConfig, suggested: float | None, down: bool) -> tuple[RunConfig, str]:
    lr = float(cfg.train.lr) if cfg.train.lr is not None else None
    new = suggested
    # A proposal on the wrong side of the current rate (or none) cannot answer this finding: step 10x instead.
    if new is None or lr is None or (down and new > lr / 2) or (not down and new < 2 * lr):
        new = (lr or 1e-3) / 10 if down else (lr or 1e-3) * 10
        how = "10x " + ("lower" if down else "higher")
    else:
        how = "the range test's proposal"
    return _replace_section(cfg, "train", lr=float(f"{new:.2g}")), f"train.lr: {lr:g} -> {float(f'{new:.2g}'):g} ({how})"


def reinitialise(model: nn.Module) -> nn.Module:
    """A copy of `model` with every Linear/Conv weight He-initialised (Xavier when it has no ReLU-family unit) and zero biases;
    recurrent layers (RNN/GRU/LSTM) get torch's own initialisation back, U(-1/sqrt(H), 1/sqrt(H)), which keeps their gates out of saturation."""
    out = copy.deepcopy(model)
    scheme = "he" if any(isinstance(m, _RELU_FAMILY) for m in out.modules()) else "xavier"
    for m in out.modules():
        if isinstance(m, nn.RNNBase):
            m.reset_parameters()
    return apply_init(out, scheme, 0.0)


def _reinit_plan(cfg: RunConfig, model: nn.Module | None) -> tuple[RunConfig, nn.Module | None, str]:
    if model is not None:
        fresh = reinitialise(model)
        scheme = "He" if any(isinstance(m, _RELU_FAMILY) for m in fresh.modules()) else "Xavier"
        return cfg, fresh, f"re-initialised every Linear/Conv layer of your {type(model).__name__} ({scheme}, zero biases)"
    scheme = "xavier" if cfg.model.activation in _SATURATING else "he"
    old = f"init {cfg.model.init}" + (f" std {cfg.model.init_std:g}" if cfg.model.init_std is not None else "") + f", bias {cfg.model.bias:g}"
    return _replace_section(cfg, "model", init=scheme, init_std=None, bias=0.0), model, f"model: {old} -> init {scheme}, bias 0"


def _less_regularization(cfg: RunConfig, model: nn.Module | None) -> tuple[RunConfig, nn.Module | None, list[str]]:
    changes = []
    if cfg.train.weight_decay > START_WEIGHT_DECAY:
        changes.append(f"train.weight_decay: {cfg.train.weight_decay:g} -> {START_WEIGHT_DECAY:g}")
        cfg = _replace_section(cfg, "train", weight_decay=START_WEIGHT_DECAY)
    if cfg.train.l1 > 0:
        changes.append(f"train.l1: {cfg.train.l1:g} -> 0")
        cfg = _replace_section(cfg, "train", l1=0.0)
    if model is None and cfg.model.dropout > 0:
        changes.append(f"model.dropout: {cfg.model.dropout:g} -> {cfg.model.dropout / 2:g}")
        cfg = _replace_section(cfg, "model", dropout=cfg.model.dropout / 2)
    elif model is not None and any(isinstance(m, _DROPOUT) and m.p > 0 for m in model.modules()):
        model = copy.deepcopy(model)
        drops = [m for m in model.modules() if isinstance(m, _DROPOUT) and m.p > 0]
        changes.append(f"dropout p halved in {len(drops)} layer(s) of your {type(model).__name__} (largest {max(m.p for m in drops):g})")
        for m in drops:
            m.p = m.p / 2
    return cfg, model, changes


def plan_repair(finding: Finding, cfg: RunConfig, model: nn.Module | None, data: Dataset, check: CheckReport, own_data: bool = True) -> Plan:
    """The fix for the root cause `finding` applied to copies of the set-up (`applied` False when only advice can be given).

    Args:
        finding: the top error-level root cause.
        cfg: the config of the look that found it.
        model: your own module, or None for the config's built-in model.
        data: the data of that look.
        check: its preflight report (the range test's proposal lives there).
        own_data: the data was given (fixed in memory), not loaded from `cfg.data` (fixed in the config).
    """
    kind = KINDS[finding.rule].repair if finding.rule in KINDS else None
    advice = Plan(finding.rule, finding.fix or "no automatic fix", cfg, model, data, applied=False)
    if kind in ("lr_down", "lr_up"):
        new_cfg, change = _lr_plan(finding, cfg, check.suggested_lr, kind == "lr_down")
        return Plan(finding.rule, change, new_cfg, model, data, True)
    # Re-initialising or standardising changes the scale the learning rate was tuned for: retune it (docs/lectures.md §5.5).
    if kind == "reinit":
        new_cfg, new_model, change = _reinit_plan(cfg, model)
        return Plan(finding.rule, change, new_cfg, new_model, data, True, retune=True)
    if kind == "standardize":
        if own_data:
            return Plan(finding.rule, "standardised the inputs with training-split statistics", cfg, model, prepare(data, "standardize"), True, retune=True)
        new_cfg = _replace_section(cfg, "data", preprocess="standardize")
        return Plan(finding.rule, f"data.preprocess: {cfg.data.preprocess} -> standardize", new_cfg, model, load_data(new_cfg.data), True, retune=True)
    if kind == "less_regularization":
        new_cfg, new_model, changes = _less_regularization(cfg, model)
        return Plan(finding.rule, "; ".join(changes), new_cfg, new_model, data, True) if changes else advice
    if kind == "more_capacity" and model is None:
        m = cfg.model
        # Only the widths the chosen model reads: an mlp's `hidden`, a convnet's or resnet's `channels`.
        wider = accepted_options(MODELS.get(m.name), {"hidden": tuple(max(4 * h, 32) for h in m.hidden), "channels": tuple(max(2 * c, 16) for c in m.channels)})
        if not wider:
            return advice
        new_cfg = _replace_section(cfg, "model", **wider)
        change = ", ".join(f"{k} {list(getattr(m, k))} -> {list(v)}" for k, v in wider.items())
        return Plan(finding.rule, f"model: {change}", new_cfg, model, data, True)
    if kind == "more_regularization":
        wd = max(10 * cfg.train.weight_decay, 1e-3)
        return Plan(finding.rule, f"train.weight_decay: {cfg.train.weight_decay:g} -> {wd:g}", _replace_section(cfg, "train", weight_decay=wd), model, data, True)
    return advice


def best_val_accuracy(done: DoctorResult) -> float | None:
    """The best validation accuracy of a look's short run (None when it recorded none)."""
    best = done.report.record.best()
    return float(best["val_accuracy"]) if best else None


def look_summary(done: DoctorResult) -> dict[str, Any]:
    """What a before/after table shows of one look: run status, best validation accuracy, last train loss, error-level root causes."""
    metrics = done.report.record.metrics
    return {
        "status": done.report.record.status,
        "val_accuracy": best_val_accuracy(done),
        "train_loss": metrics[-1].get("train_loss") if metrics else None,
        "errors": [f.rule for f in root_causes(done.findings)],
        "run_dir": str(done.run_dir),
    }


def repair_helped(before: DoctorResult, after: DoctorResult, n_val: int) -> bool:
    """Whether a fix helped: the validation accuracy (on `n_val` samples) rose beyond its noise.

    A finding that went away is not enough: a re-initialised net whose labels were shuffled
    loses its init finding and learns nothing more. A look with no accuracy before (a run that
    diverged in its first epoch) is helped by any look that has one.
    """
    a, b = best_val_accuracy(before), best_val_accuracy(after)
    if b is None:
        return False
    if a is None:
        return True
    n = max(1, n_val)
    return b > a and significance.verdict(b - a, significance.proportion_se(b, n, a, n), 0.0) == "pass"

