"""Every finding kind, declared once: where it starts, what it explains, its fix and its repair.

A finding's id (`Finding.rule`) names a `Kind` declared here; `Finding` refuses
any other. The tables the rest of babysit reads are built from these
declarations, never written beside them:

- `phase_of(id)`: where the fault starts. "data" (the inputs or labels, before
  any model), "program" (the training code: what the optimiser holds, when
  gradients are reset, the modules' modes, the schedule, the loss), "init" (the
  network as built, before the first step) or "training" (what the optimisation
  does). `rank` orders root causes by it.
- `explains(cause, symptom)`: the causal table (docs/lectures.md §7 reads the
  curves the same way: a too-high learning rate explains an exploding loss,
  units dying during training and updates far above 1e-3; a too-low one a flat
  loss and tiny updates; a bad init scale vanishing or exploding activations,
  saturation at initialisation and a high initial loss; unscaled features
  saturated units and slow training). It must stay acyclic (a test enforces
  it), so every group of findings has a root.
- `Kind.repair`: what `doctor --fix` changes for it (`REPAIRS`), or None.
- `Kind.in_training`: the id an initialisation fault gets when it first appears
  during training instead (a different cause: the learning rate, not the init scale).
- `Kind.fix`: the fix a finding of this kind carries unless its producer
  words a more specific one; `Kind.lr` says which way that fix may move the
  learning rate ("lower", "raise", "set" to a measured value, or None: it must
  not mention the learning rate at all). A test walks every kind.
"""

from __future__ import annotations

from dataclasses import dataclass

PHASES = ("data", "program", "init", "training")
# What `doctor --fix` can change (workflows.repair).
REPAIRS = ("lr_down", "lr_up", "reinit", "standardize", "less_regularization", "more_capacity", "more_regularization")
LR_MOVES = ("lower", "raise", "set")
# The id a finding read back from disk gets when this version declares no such kind (the recorded id stays in its evidence).
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Kind:
    """One kind of finding.

    Args:
        id: the finding id (`Finding.rule`).
        phase: one of `PHASES`.
        means: what the fault is, in a few words (the README's table lists it).
        fix: the default fix (a producer may word a more specific one).
        explains: ids of the findings this one explains when both are present.
        repair: what `doctor --fix` applies (one of `REPAIRS`), None for advice only.
        in_training: the id this fault gets when it first appears during training.
        lr: how `fix` may move the learning rate: "lower", "raise", "set", or None (not at all).
    """

    id: str
    phase: str
    means: str
    fix: str
    explains: frozenset[str] = frozenset()
    repair: str | None = None
    in_training: str | None = None
    lr: str | None = None

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"kind {self.id}: phase must be one of {PHASES}, got {self.phase!r}")
        if self.repair is not None and self.repair not in REPAIRS:
            raise ValueError(f"kind {self.id}: repair must be one of {REPAIRS}, got {self.repair!r}")
        if self.lr is not None and self.lr not in LR_MOVES:
            raise ValueError(f"kind {self.id}: lr must be one of {LR_MOVES} or None, got {self.lr!r}")


KINDS: dict[str, Kind] = {}


def declare(id: str, phase: str, means: str, fix: str, explains: frozenset[str] | set[str] = frozenset(), **options: object) -> Kind:
    """Declare one kind (each id once)."""
    if id in KINDS or id == UNKNOWN:
        raise ValueError(f"finding kind {id!r} is declared twice")
    kind = Kind(id, phase, means, fix, frozenset(explains), **options)  # type: ignore[arg-type]
    KINDS[id] = kind
    return kind


# The symptoms of a learning rate that is too high / too low, shared by the kinds that name it.
_LR_HIGH_SYMPTOMS = frozenset({
    "loss_explodes", "relu_died_in_training", "saturated_in_training", "update_ratio_high", "plateau",
    "gradients_exploded_in_training", "activations_exploded_in_training", "scaler_skips_steps",
})  # fmt: skip
_LR_LOW_SYMPTOMS = frozenset({"loss_flat", "update_ratio_low", "underfitting", "overfit_failed"})
# A network whose signal dies or blows up at initialisation: what it makes happen downstream.
_BAD_SCALE_SYMPTOMS = frozenset({
    "initial_loss_high", "loss_flat", "flat_then_drop", "overfit_failed", "lr_no_descent", "gradients_vanish",
    "gradients_explode", "update_ratio_low", "underfitting", "input_independent", "gradients_vanished_in_training",
})  # fmt: skip
# A signal that vanishes (or dies) leaves the scores at the head's bias, so the loss at init sits near ln(C): it
# cannot explain a loss far above ln(C), which only scores too large give.
_SMALL_SIGNAL_SYMPTOMS = _BAD_SCALE_SYMPTOMS - {"initial_loss_high"}
_STANDARDIZE = "standardise each feature with training-split statistics: data.preprocess = 'standardize'"
_REINIT = "initialise with He (ReLU) or Xavier (tanh) scale, e.g. model.init = 'he', with zero biases"

# -- data ---------------------------------------------------------------------------------------------------------
# Inputs far from unit scale: every init-scale symptom downstream (He/Xavier assume unit-scale inputs), and a
# model that cannot use such inputs in a short run (the input-independent baseline).
declare("data_scales", "data", "features on very different scales, or far from unit scale", _STANDARDIZE, _BAD_SCALE_SYMPTOMS | {
    "saturation_at_init", "activations_explode", "activations_vanish", "loss_explodes", "data_not_centred", "input_independent",
    "update_ratio_high", "relu_died_in_training", "dead_relu_at_init", "lr_too_high", "lr_too_low", "plateau",
    "activations_exploded_in_training", "gradients_exploded_in_training", "saturated_in_training", "overfit_failed",
}, repair="standardize")  # fmt: skip
declare("data_not_centred", "data", "inputs not zero-centred",
        "preprocess with data.preprocess = 'standardize' (statistics fitted on the training split)",
        # an offset adds (offset x the sum of each unit's weights) to every pre-activation: scores too large and units
        # pushed to one side of their ReLU for every input, as a scale far from 1 does
        {"saturation_at_init", "flat_then_drop", "underfitting", "initial_loss_high", "dead_relu_at_init"}, repair="standardize")
# Statistics fitted on other splits put the training inputs off unit scale and off centre by however much the
# splits differ (a feature constant in val+test divides the training values by ~0), and the leak's fix, fitting
# them on the training split, standardises the training inputs: it removes the scale findings too.
declare("data_leak", "data", "preprocessing fitted on validation, test or all data",
        "fit the preprocessing on the training split only (babysit.prepare does) and apply it unchanged to val and test",
        {"data_scales", "data_not_centred"}, repair="standardize")
declare("class_imbalance", "data", "classes with very different sample counts",
        "resample or weight the loss by inverse class frequency, and report per-class accuracy", {"initial_loss_low"})
declare("class_missing", "data", "a class with no training sample",
        "re-split the data so every class appears in training (stratify the split), or drop the empty classes")
# A handful of samples per class: the network memorises them, the validation accuracy stays near chance
# (so the model looks input-independent), and a random split of so few leaves classes out or unbalanced.
declare("too_few_samples", "data", "fewer than 10 training samples per class",
        "train on more samples (check data.val_fraction and any subsetting), add data or augmentation",
        {"overfitting", "input_independent", "class_missing", "class_imbalance"})
declare("duplicate_samples", "data", "validation or test samples that copy training samples",
        "drop the copies from the held-out splits (or de-duplicate before splitting), then re-measure")
declare("input_independent", "data", "labels that do not match the inputs, or inputs that never reach the model",
        "check that labels stay aligned with their inputs (no shuffling of one without the other) and that the inputs reach the model",
        {"overfitting", "underfitting", "loss_flat"})
declare("input_baseline_inconclusive", "data", "a validation split too small to tell whether the model uses its inputs",
        "use a larger validation split (data.val_fraction), or rerun the check with more data")
# -- program: what the training code does, read by hooks (watch.program) --------------------------------------------
# A program that never applies its gradients: nothing downstream learns, whatever the learning rate.
_NO_LEARNING = frozenset({
    "loss_flat", "update_ratio_low", "underfitting", "overfit_failed", "lr_no_descent", "plateau", "input_independent",
    "flat_then_drop", "activations_vanished_in_training", "gradients_vanished_in_training",
})  # fmt: skip
# Gradients summed over every step so far: the update grows step after step, as with a rate far too high.
_RUNAWAY = _LR_HIGH_SYMPTOMS | {"underfitting", "loss_flat", "overfitting", "input_independent"}
declare("grad_not_reset", "program", "gradients not reset between optimiser steps (no zero_grad)",
        "call optimizer.zero_grad() once per step, before loss.backward() (gradients add up across backward passes)",
        _RUNAWAY)
declare("grad_cleared_before_step", "program", "gradients cleared between backward() and step()",
        "move optimizer.zero_grad() before loss.backward(): called after it, it erases the gradient step() needs", _NO_LEARNING)
declare("step_before_backward", "program", "optimizer.step() with no gradient: called before loss.backward(), or backward never reaches the parameters",
        "call loss.backward() before optimizer.step(), on a loss computed from the model's output", _NO_LEARNING)
declare("optimizer_never_steps", "program", "a loop that never calls optimizer.step()",
        "call optimizer.step() after loss.backward() in every training step", _NO_LEARNING)
declare("optimizer_params_not_in_model", "program", "an optimiser over tensors the model does not use (e.g. a copy of the model)",
        "build the optimiser over the trained model's own parameters: optimizer = Adam(model.parameters(), ...), after any copy or .to(device)",
        _NO_LEARNING | {"params_not_in_optimizer", "step_before_backward", "params_without_grad"})
declare("params_not_in_optimizer", "program", "trainable parameters the optimiser does not hold",
        "pass every parameter that should train to the optimiser (model.parameters()); freeze the others with requires_grad_(False)",
        _NO_LEARNING | {"overfitting"})
declare("params_without_grad", "program", "trainable parameters that never receive a gradient (detached output, layer never called, branch under no_grad)",
        "let the gradient reach them: remove the .detach() / torch.no_grad() on their path, or call the layer in forward (delete it if unused)",
        _NO_LEARNING | {"overfitting"})
declare("frozen_untrained", "program", "frozen layers (requires_grad=False) still at their random initialisation",
        "train these layers (requires_grad_(True)) or load the pretrained weights you meant to freeze", _NO_LEARNING)
declare("params_frozen", "program", "parameters frozen on purpose (requires_grad=False)", "nothing to change if freezing them is intended")
declare("eval_mode_in_training", "program", "dropout or batch norm in eval mode during training steps (model.eval() left on)",
        "call model.train() before each training epoch (after any model.eval() for validation)",
        {"overfitting", "loss_explodes", "loss_flat", "plateau", "underfitting", "update_ratio_high", "relu_died_in_training",
         "activations_exploded_in_training", "saturated_in_training", "gradients_exploded_in_training", "input_independent"})
declare("lr_collapsed", "program", "a learning rate that collapses to (near) zero: a schedule stepped far more often than planned, or a rate of 0",
        "step a per-epoch scheduler once per epoch (scheduler.step() after the epoch's batches), or size its period in steps; never set the rate to 0",
        _NO_LEARNING)
declare("loss_below_minimum", "program", "a loss below what cross-entropy allows (negative): nll_loss on scores that are not log-probabilities",
        "give nll_loss log-probabilities (F.log_softmax(scores, 1)), or use F.cross_entropy on the raw scores",
        _RUNAWAY | {"loss_flat", "plateau", "overfit_failed"})
declare("loss_not_finite", "program", "a NaN/inf loss from finite scores before any update: the loss takes the log of zero or of a negative number",
        "take no log of log-probabilities: F.nll_loss(F.log_softmax(scores, 1), y), or F.cross_entropy(scores, y) on the raw scores",
        _RUNAWAY | {"scores_not_finite", "loss_flat"})
declare("batch_mixing", "program", "outputs of one example that depend on other examples of the batch (view for permute, batch_first confusion)",
        "keep the batch axis apart: permute/transpose where view/reshape mixes axes, and build recurrent layers with batch_first=True for (N, T, F) inputs",
        {"input_independent", "underfitting", "overfitting", "loss_flat", "plateau", "eval_mode", "overfit_failed", "lr_no_descent"})
# -- program: mixed precision (torch.autocast, GradScaler; watch.precision) ------------------------------------------
# float16 holds values up to 65504 (float32 and bfloat16 up to 3.4e38) and down to 6e-8.
declare("fp16_overflow", "program", "a float16 layer output (autocast) that overflowed to inf past 65504, where float32 and bf16 hold it",
        "run that layer in float32 (wrap it in torch.autocast(device_type, enabled=False) and give it x.float()), or train in bf16, "
        "which has float32's range; normalise its input (layer or batch norm) so its values stay far below 65504",
        {"loss_explodes", "scaler_skips_steps", "scores_not_finite", "activations_explode", "activations_exploded_in_training",
         "gradients_explode", "gradients_exploded_in_training"})
declare("grad_underflow", "program", "gradients that float16 rounds to zero where float32 keeps them (underflow below 6e-8)",
        "scale the loss with a gradient scaler (torch.amp.GradScaler: scaler.scale(loss).backward(), scaler.step(optimizer), "
        "scaler.update()), or train in bf16, which has float32's range",
        {"loss_flat", "update_ratio_low", "underfitting", "gradients_vanish", "gradients_vanished_in_training", "overfit_failed"})
declare("scaler_skips_steps", "training", "a gradient scaler that keeps skipping optimizer steps (inf/NaN gradients), its scale falling",
        "find the layer whose float16 output overflows (its nonfinite_fraction in the probes) and run it in float32, or train in bf16; "
        "a scale below 1 means the gradients are not finite even unscaled: look for the first non-finite layer",
        {"loss_flat", "update_ratio_low", "underfitting", "plateau"})

# -- init ---------------------------------------------------------------------------------------------------------
declare("init_symmetry", "init", "zero or constant weights: symmetry never broken", _REINIT, {
    "dead_relu_at_init", "activations_vanish", "gradients_vanish", "loss_flat", "overfit_failed", "lr_no_descent",
    "input_independent", "underfitting", "update_ratio_low",
}, repair="reinit")  # fmt: skip
declare("regularization_no_effect", "init", "regularization that does not raise the loss: every weight zero",
        "initialise the weights randomly (He/Xavier) and check that the parameters require gradients", repair="reinit")
declare("dead_relu_at_init", "init", "ReLUs dead at initialisation",
        "use He init with zero (or 0.01) biases, e.g. model.init = 'he', model.bias = 0",
        {"activations_vanish", *_SMALL_SIGNAL_SYMPTOMS, "input_independent"}, repair="reinit", in_training="relu_died_in_training")
declare("saturation_at_init", "init", "tanh/sigmoid units saturated at initialisation",
        "shrink the initial weights to Xavier scale N(0,1)/sqrt(fan_in), standardise the inputs, or use ReLU",
        _BAD_SCALE_SYMPTOMS | {"activations_vanish"}, repair="reinit", in_training="saturated_in_training")
declare("activations_vanish", "init", "activation std vanishing with depth (init scale too small)",
        "initialise with Xavier (tanh) or He (ReLU) instead of a small constant scale, or add batch norm",
        _SMALL_SIGNAL_SYMPTOMS, repair="reinit", in_training="activations_vanished_in_training")
declare("activations_explode", "init", "activation std growing with depth (init scale too large)",
        "scale the initial weights by 1/sqrt(fan_in) (Xavier) or sqrt(2/fan_in) (He), or add batch norm",
        _BAD_SCALE_SYMPTOMS | {"loss_explodes", "saturated_in_training", "relu_died_in_training"},
        repair="reinit", in_training="activations_exploded_in_training")
declare("gradients_vanish", "init", "relative gradients vanishing towards the input",
        "use He/Xavier init, ReLU instead of saturating activations, or batch norm",
        repair="reinit", in_training="gradients_vanished_in_training")
declare("gradients_explode", "init", "relative gradients exploding towards the input",
        "scale the initialisation down (Xavier/He) or add batch norm",
        repair="reinit", in_training="gradients_exploded_in_training")
# Scores too large before any step (the lectures' first check: loss ~ ln C) are the init-scale fault seen at
# the output: a saturated softmax learns slowly, so the short run's symptoms of a bad scale follow from it.
declare("initial_loss_high", "init", "initial loss far above ln(C): class scores too large",
        "initialise with a smaller scale (Xavier/He; shrink the last layer), and standardise the inputs",
        {"input_independent", "loss_flat", "flat_then_drop", "overfit_failed", "lr_no_descent", "underfitting"}, repair="reinit")
declare("initial_loss_low", "init", "initial loss below ln(C): the model predicts before training",
        "fine if the model is pretrained; otherwise look for label information in the inputs")
declare("activation_on_scores", "init", "an activation (softmax, sigmoid, ReLU) on the class scores before cross-entropy",
        "remove the final softmax/sigmoid/ReLU: return the last Linear layer's raw scores (cross-entropy applies log-softmax itself)",
        {"initial_loss_low", "initial_loss_high", "loss_flat", "overfit_failed", "lr_no_descent", "underfitting", "input_independent", "plateau"})
declare("gradcheck_failed", "init", "analytic gradients of your own layers that disagree with numerical ones",
        "fix the backward pass (a custom autograd.Function's backward, or an in-place/detached op)",
        {"loss_flat", "overfit_failed", "loss_explodes", "lr_no_descent"})
declare("eval_mode", "init", "evaluation that runs in training mode (dropout or batch norm active)",
        "call model.eval() before evaluating (and model.train() after); custom layers must check self.training", {"overfitting"})
# A penalty that swamps the data loss pulls the weights to zero: the model cannot use its inputs and the loss stays flat.
declare("regularization_dominates", "init", "weight decay / L1 that swamps the data loss",
        "lower train.weight_decay / train.l1 (start near 1e-4) and tune them on validation", {
    "overfit_failed", "underfitting", "loss_flat", "regularization_too_strong", "input_independent", "lr_no_descent",
    "activations_vanished_in_training", "gradients_vanished_in_training", "plateau",
}, repair="less_regularization")  # fmt: skip
# Too few capable units: the model cannot fit even a tiny subset, nor learn the data.
declare("capacity_too_small", "init", "a bottleneck narrower than the number of classes",
        "widen the narrowest layer (at least as many units as classes; e.g. model.hidden = [64, 64]), or add layers",
        {"underfitting", "input_independent", "loss_flat", "lr_too_low", "update_ratio_low", "dead_relu_at_init", "plateau"},
        repair="more_capacity")
# NaN/inf scores before any step: nothing downstream can train, so every curve and baseline symptom follows.
declare("scores_not_finite", "init", "NaN/inf class scores on finite inputs", "look at what the first non-finite layer computes",
        _BAD_SCALE_SYMPTOMS | {
    "activations_vanish", "activations_explode", "loss_explodes", "lr_too_high", "lr_too_low", "plateau",
    "relu_died_in_training", "saturated_in_training", "update_ratio_high", "gradcheck_failed",
})  # fmt: skip

# -- training: the learning rate, then what it does to the units and the curves -----------------------------------
declare("lr_too_high", "training", "learning rate above where the range test's loss diverges",
        "set train.lr to the range test's proposal", _LR_HIGH_SYMPTOMS, repair="lr_down", lr="set")
declare("lr_too_low", "training", "learning rate far below where the range test's loss starts to fall",
        "set train.lr to the range test's proposal", _LR_LOW_SYMPTOMS, repair="lr_up", lr="set")
declare("lr_no_descent", "training", "no learning rate of the range test lowers the loss",
        "fix what the other checks report (labels, inputs, initialisation) and run the test again")
declare("loss_explodes", "training", "a loss that became NaN/inf or rose over 3x its start",
        "lower the learning rate 10x (run the learning-rate range test to pick one)",
        _LR_HIGH_SYMPTOMS - {"loss_explodes"}, repair="lr_down", lr="lower")
declare("loss_flat", "training", "a train loss that does not move",
        "raise the learning rate 10-100x (the learning-rate range test proposes one)", repair="lr_up", lr="raise")
declare("flat_then_drop", "training", "a loss flat for epochs, then a sudden drop",
        "initialise with He (ReLU) or Xavier (tanh) so training starts moving at once, or add batch norm", repair="reinit")
declare("plateau", "training", "a loss that drops, then bounces on a plateau",
        "lower the learning rate 3-10x, or decay it when the loss plateaus", repair="lr_down", lr="lower")
declare("update_ratio_high", "training", "updates far above 1e-3 of the weights",
        "lower the learning rate, or add a decay schedule", {
    "relu_died_in_training", "saturated_in_training", "plateau", "gradients_exploded_in_training", "activations_exploded_in_training",
}, repair="lr_down", lr="lower")  # fmt: skip
declare("update_ratio_low", "training", "updates far below 1e-3 of the weights",
        "raise the learning rate (run the learning-rate range test)", {"loss_flat", "underfitting"}, repair="lr_up", lr="raise")
declare("relu_died_in_training", "training", "ReLUs that die during training",
        "lower the learning rate (run the range test), or use Leaky ReLU; keep biases at 0 / 0.01", repair="lr_down", lr="lower")
declare("saturated_in_training", "training", "tanh/sigmoid units driven into saturation during training",
        "lower the learning rate, or add batch norm before the tanh/sigmoid", repair="lr_down", lr="lower")
declare("activations_exploded_in_training", "training", "activations that blow up during training",
        "lower the learning rate, add weight decay or batch norm", repair="lr_down", lr="lower")
declare("activations_vanished_in_training", "training", "activations that shrink towards zero during training",
        "look at what shrinks the weights: lower train.weight_decay, or add batch norm to keep the scale")
declare("gradients_exploded_in_training", "training", "gradients that blow up towards the input during training",
        "lower the learning rate, or clip the gradient norm (train.clip_grad_norm = 1.0)", repair="lr_down", lr="lower")
declare("gradients_vanished_in_training", "training", "gradients that vanish towards the input during training",
        "add batch norm or residual connections, and lower train.weight_decay if it dominates the loss")
# Dropout that drops most units: train accuracy far below validation, and a model that learns little from its inputs.
declare("regularization_too_strong", "training", "dropout (or weight decay) so strong the model cannot learn",
        "lower dropout to at most 0.5 (model.dropout; nn.Dropout(p) in your module) and weight decay, then tune them on validation",
        {"underfitting", "input_independent", "loss_flat", "plateau", "lr_no_descent", "update_ratio_low"}, repair="less_regularization")
declare("underfitting", "training", "no train/val gap, low accuracy, a stalled loss",
        "increase capacity (wider or deeper layers), reduce regularization, or train longer", repair="more_capacity")
declare("overfitting", "training", "a big train/val accuracy gap",
        "increase regularization (weight decay, dropout p=0.5, data augmentation) or get more data; stop at the best val epoch",
        repair="more_regularization")
declare("overfit_failed", "training", "a model that cannot fit 20 samples",
        "check that the labels match the inputs, the model's output has one score per class, and gradients reach every layer")


def kind_of(rule: str) -> Kind:
    """The declared kind named `rule` (ValueError for an id nobody declared)."""
    try:
        return KINDS[rule]
    except KeyError:
        raise ValueError(f"no finding kind {rule!r} is declared (babysit.diagnose.kinds)") from None


def phase_of(rule: str) -> str:
    """The phase where the fault named `rule` starts ("training" for `UNKNOWN`)."""
    return KINDS[rule].phase if rule in KINDS else "training"


def explains(cause: str, symptom: str) -> bool:
    """Whether the declared kind `cause` explains `symptom`."""
    kind = KINDS.get(cause)
    return kind is not None and symptom in kind.explains


def is_cause(rule: str) -> bool:
    """Whether `rule` explains any other kind (a cause of the table, ranked before plain findings)."""
    kind = KINDS.get(rule)
    return kind is not None and bool(kind.explains)


def training_twin(rule: str) -> str:
    """The id an initialisation fault gets when it first appears during training (itself when it has no twin)."""
    kind = KINDS.get(rule)
    return kind.in_training if kind is not None and kind.in_training else rule
