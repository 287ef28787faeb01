"""Which finding explains which: the declared causal table that `rank` orders by.

Two small tables, both keyed by finding id (`Finding.rule`):

- `PHASE`: where a fault starts. "data" (the inputs or labels, before any
  model), "init" (the network as built, before the first step) or "training"
  (what the optimisation does). A finding whose id is not listed is a training
  finding.
- `EXPLAINS`: cause -> the findings it explains (docs/lectures.md §7 reads the
  curves the same way: a too-high learning rate explains an exploding loss,
  units dying during training and updates far above 1e-3; a too-low one a flat
  loss and tiny updates; a bad init scale vanishing or exploding activations,
  saturation at initialisation and a high initial loss; unscaled features
  saturated units and slow training).

The table must stay acyclic (a test enforces it), so that every group of
findings has a root: the finding that no other present finding explains.
"""

from __future__ import annotations

PHASES = ("data", "init", "training")

_DATA = (
    "data_scales", "data_not_centred", "data_leak", "class_imbalance", "class_missing", "labels_unlearnable",
    "input_independent", "duplicate_samples", "labels_outputs_mismatch", "too_few_samples",
)
_INIT = (
    "init_symmetry", "dead_relu_at_init", "saturation_at_init", "activations_vanish", "activations_explode",
    "gradients_vanish", "gradients_explode", "initial_loss_high", "initial_loss_low", "activation_on_scores",
    "gradcheck_failed", "eval_mode", "regularization_no_effect", "regularization_dominates", "capacity_too_small", "scores_not_finite",
)
PHASE: dict[str, str] = {**dict.fromkeys(_DATA, "data"), **dict.fromkeys(_INIT, "init")}

# The symptoms of a learning rate that is too high / too low, shared by the findings that name it.
_LR_HIGH_SYMPTOMS = frozenset({
    "loss_explodes", "relu_died_in_training", "saturated_in_training", "update_ratio_high", "plateau",
    "gradients_exploded_in_training", "activations_exploded_in_training",
})
_LR_LOW_SYMPTOMS = frozenset({"loss_flat", "update_ratio_low", "underfitting", "overfit_failed", "too_few_steps"})
# A network whose signal dies or blows up at initialisation: what it makes happen downstream.
_BAD_SCALE_SYMPTOMS = frozenset({
    "initial_loss_high", "loss_flat", "flat_then_drop", "overfit_failed", "lr_no_descent", "gradients_vanish",
    "gradients_explode", "update_ratio_low", "underfitting", "input_independent", "gradients_vanished_in_training",
})

EXPLAINS: dict[str, frozenset[str]] = {
    # data
    # Inputs far from unit scale: every init-scale symptom downstream (He/Xavier assume unit-scale inputs), and a
    # model that cannot use such inputs in a short run (the input-independent baseline).
    "data_scales": frozenset(_BAD_SCALE_SYMPTOMS | {
        "saturation_at_init", "activations_explode", "activations_vanish", "loss_explodes", "data_not_centred", "input_independent",
        "update_ratio_high", "relu_died_in_training", "dead_relu_at_init", "lr_too_high", "lr_too_low", "plateau",
        "activations_exploded_in_training", "gradients_exploded_in_training", "saturated_in_training", "overfit_failed",
    }),
    "data_not_centred": frozenset({"saturation_at_init", "flat_then_drop", "underfitting"}),
    "labels_unlearnable": frozenset({"input_independent", "overfitting", "underfitting", "loss_flat"}),
    "input_independent": frozenset({"overfitting", "underfitting", "loss_flat"}),
    "labels_outputs_mismatch": frozenset({"initial_loss_high", "initial_loss_low", "overfit_failed", "loss_explodes", "loss_flat"}),
    # A handful of samples per class: the network memorises them, the validation accuracy stays near chance
    # (so the model looks input-independent), and a random split of so few leaves classes out or unbalanced.
    "too_few_samples": frozenset({"overfitting", "input_independent", "class_missing", "class_imbalance"}),
    "duplicate_samples": frozenset(),
    "data_leak": frozenset(),
    "class_imbalance": frozenset({"initial_loss_low"}),
    # init
    "init_symmetry": frozenset({"dead_relu_at_init", "activations_vanish", "gradients_vanish", "loss_flat", "overfit_failed", "lr_no_descent", "input_independent", "underfitting", "update_ratio_low"}),
    "activation_on_scores": frozenset({"initial_loss_low", "initial_loss_high", "loss_flat", "overfit_failed", "lr_no_descent", "underfitting", "input_independent", "plateau"}),
    "dead_relu_at_init": frozenset({"activations_vanish", *_BAD_SCALE_SYMPTOMS, "input_independent"}),
    "saturation_at_init": frozenset(_BAD_SCALE_SYMPTOMS | {"activations_vanish"}),
    "activations_vanish": _BAD_SCALE_SYMPTOMS,
    "activations_explode": frozenset(_BAD_SCALE_SYMPTOMS | {"loss_explodes", "saturated_in_training", "relu_died_in_training"}),
    # NaN/inf scores before any step: nothing downstream can train, so every curve and baseline symptom follows.
    "scores_not_finite": frozenset(_BAD_SCALE_SYMPTOMS | {
        "activations_vanish", "activations_explode", "loss_explodes", "lr_too_high", "lr_too_low", "plateau",
        "relu_died_in_training", "saturated_in_training", "update_ratio_high", "gradcheck_failed",
    }),
    # Scores too large before any step (the lectures' first check: loss ~ ln C) are the init-scale fault seen at
    # the output: a saturated softmax learns slowly, so the short run's symptoms of a bad scale follow from it.
    "initial_loss_high": frozenset({"input_independent", "loss_flat", "flat_then_drop", "overfit_failed", "lr_no_descent", "underfitting"}),
    "gradcheck_failed": frozenset({"loss_flat", "overfit_failed", "loss_explodes", "lr_no_descent"}),
    "eval_mode": frozenset({"overfitting"}),
    # A penalty that swamps the data loss pulls the weights to zero: the model cannot use its inputs and the loss stays flat.
    "regularization_dominates": frozenset({"overfit_failed", "underfitting", "loss_flat", "regularization_too_strong", "input_independent",
                                           "lr_no_descent", "activations_vanished_in_training", "gradients_vanished_in_training", "plateau"}),
    # Too few capable units: the model cannot fit even a tiny subset, nor learn the data.
    "capacity_too_small": frozenset({"underfitting", "input_independent", "loss_flat", "lr_too_low", "update_ratio_low", "dead_relu_at_init", "plateau"}),
    # training: the learning rate, then what it does to the units and the curves
    "lr_too_high": _LR_HIGH_SYMPTOMS,
    "lr_too_low": _LR_LOW_SYMPTOMS,
    "loss_explodes": frozenset(_LR_HIGH_SYMPTOMS - {"loss_explodes"}),
    "update_ratio_high": frozenset({"relu_died_in_training", "saturated_in_training", "plateau", "gradients_exploded_in_training", "activations_exploded_in_training"}),
    "update_ratio_low": frozenset({"loss_flat", "underfitting", "too_few_steps"}),
    "too_few_steps": frozenset({"underfitting"}),
    # Dropout that drops most units: train accuracy far below validation, and a model that learns little from its inputs.
    "regularization_too_strong": frozenset({"underfitting", "input_independent", "loss_flat", "plateau", "lr_no_descent", "update_ratio_low"}),
}


def phase_of(rule: str) -> str:
    """The phase where the fault named `rule` starts ("training" when the table does not list it)."""
    return PHASE.get(rule, "training")


def explains(cause: str, symptom: str) -> bool:
    """Whether the declared table says `cause` explains `symptom`."""
    return symptom in EXPLAINS.get(cause, ())
