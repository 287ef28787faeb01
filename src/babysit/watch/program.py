"""`ProgramWatch`: what the training program actually does, read by PyTorch's own hooks.

The probes (`watch.probes`) measure the numbers a run produces; this observer
reads the program's facts, which say *why* those numbers go wrong: which
parameters the optimiser holds, which of them receive a gradient, whether the
gradients were reset between optimiser steps, the modules' `training` flags at
each step, the learning rate each step really used, what the scores and the
loss look like, and whether one example's output depends on other examples of
the batch. `fit`, `bs.record` (your own loop), the Lightning callback and DDP
(rank 0) all attach this one class; `diagnose.program_rules` turns the facts
into findings, and `bs.check` runs the same rules on facts it gathers before
training (`static_facts`, `batch_dependence`).

Hooks, and the step each one serves:
- the optimiser's step pre-hook (every step): the learning rate of each group,
  and, on observed steps, whether a backward pass ran since the last step and
  whether its gradients are still there;
- the optimiser's step post-hook (every step): counts steps, remembers each
  sentinel's gradient, arms the next step;
- on observed steps only (the `light` probe schedule by default: steps 1, 2, 4,
  ..., 64, then every 50th): a gradient hook on every parameter the optimiser
  holds (which received a gradient; for the smallest ones, the sentinels, whether
  the gradient of the previous step was still there when the new one arrived),
  and forward hooks on the model and its direct children (the batch, the scores).
The facts are a small JSON-ready dict (`facts()`), written as program.json of
the run record (docs/run-record.md); lists of steps keep their first `KEEP`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from babysit.watch.schedule import Schedule, make_schedule

Facts = dict[str, Any]

# Steps listed per fact (the first ones: where a fault starts is what a user needs).
KEEP = 20
# Sentinels: the smallest parameters, whose gradients are read in full on observed steps (a few µs each).
SENTINELS = 3
# A step's learning rate below this share of the run's peak counts as collapsed: no standard schedule
# (cosine, one-cycle, step decay over a planned run) spends more than a few per cent of its steps there.
COLLAPSED = 1e-3
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_NORM = (nn.modules.batchnorm._BatchNorm,)


def _mode_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Dropout and batch-norm modules (any class named *Dropout* counts): the ones whose `training` flag changes results."""
    return [(n or type(m).__name__, m) for n, m in model.named_modules() if isinstance(m, _DROPOUT + _NORM) or "Dropout" in type(m).__name__]


def _owner(name: str) -> str:
    """The module path of a parameter name ("body.0" for "body.0.weight"; "(root)" for a parameter of the model itself)."""
    return name.rsplit(".", 1)[0] if "." in name else "(root)"


def at_default_init(module: nn.Module) -> bool:
    """Whether a Linear/Conv/recurrent layer's weights still look like PyTorch's default initialisation, U(-b, b).

    b = 1/sqrt(fan_in) for Linear and Conv (kaiming_uniform with a = sqrt(5)), 1/sqrt(hidden_size) for
    RNN/GRU/LSTM. Read from the weights alone: every value within ±b (float rounding allowed) and their
    std within 4 standard errors of b/sqrt(3), the std of U(-b, b) (its relative SE is sqrt(0.2/n):
    kurtosis 1.8). A layer trained by gradient steps, or pretrained, leaves the interval almost surely.
    """
    if isinstance(module, nn.RNNBase):
        bound = 1.0 / math.sqrt(module.hidden_size)
        weights = [p for n, p in module.named_parameters() if n.startswith("weight")]
    elif isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and isinstance(module.weight, Tensor):
        bound = 1.0 / math.sqrt(module.weight[0].numel())
        weights = [module.weight]
    else:
        return False
    w = torch.cat([p.detach().float().reshape(-1) for p in weights]) if weights else torch.zeros(0)
    if w.numel() < 64 or float(w.abs().max()) > bound * (1 + 1e-6):
        return False
    expected = bound / math.sqrt(3.0)
    return abs(float(w.std()) - expected) <= 4 * math.sqrt(0.2 / w.numel()) * expected


def static_facts(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> Facts:
    """The facts read from the model and optimiser alone: who holds which parameters, what is frozen."""
    named = list(model.named_parameters())
    trainable = [n for n, p in named if p.requires_grad]
    frozen = [n for n, p in named if not p.requires_grad]
    numel = {n: p.numel() for n, p in named}
    facts: Facts = {
        "trainable": len(trainable),
        "trainable_numel": sum(numel[n] for n in trainable),
        "frozen": frozen[:KEEP],
        "frozen_count": len(frozen),
        "frozen_numel": sum(numel[n] for n in frozen),
        "frozen_untrained": [],
    }
    modules = dict(model.named_modules())
    untrained = {_owner(n) for n in frozen if _owner(n) in modules and at_default_init(modules[_owner(n)])}
    facts["frozen_untrained"] = sorted(untrained)[:KEEP]
    facts["frozen_untrained_numel"] = sum(numel[n] for n in frozen if _owner(n) in untrained)
    if optimizer is None:
        return facts
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    in_model = {id(p) for _, p in named}
    strangers = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in in_model]
    not_held = [n for n, p in named if p.requires_grad and id(p) not in held]
    shapes = sorted(tuple(p.shape) for _, p in named if p.requires_grad)
    facts.update(
        optimizer=type(optimizer).__name__,
        not_in_optimizer=not_held[:KEEP],
        not_in_optimizer_count=len(not_held),
        not_in_optimizer_numel=sum(numel[n] for n in not_held),
        held_from_model=sum(1 for _, p in named if id(p) in held),
        optimizer_strangers=len(strangers),
        optimizer_strangers_numel=sum(p.numel() for p in strangers),
        # The optimiser's foreign tensors have exactly the model's trainable shapes: a copy of the model.
        strangers_copy_model=bool(strangers) and sorted(tuple(p.shape) for p in strangers) == shapes,
    )
    return facts


def batch_dependence(model: nn.Module, x: Tensor) -> Facts:
    """Whether one example's output depends on the other examples of the batch (a layout mix-up inside the model).

    In eval mode (batch norm reads its running statistics, dropout is off: every
    correct model computes each example alone), the outputs of `x` are compared
    with those of `x` with its first example replaced by another one: any other
    example's output that changes beyond float rounding was mixed with the first
    (`view` where `permute` was meant, a recurrent layer reading the batch as time).
    Both passes draw the same random numbers; the model's modes and the random generators are
    restored; gradients are not recorded.
    """
    if not isinstance(x, Tensor) or x.ndim < 2 or len(x) < 3 or not x.is_floating_point():
        return {"tested": False, "reason": "needs a floating-point batch of at least 3 examples"}
    if any(isinstance(m, _NORM) and not m.track_running_stats for m in model.modules()):
        return {"tested": False, "reason": "a batch norm without running statistics normalises over the batch in eval mode too"}
    other = next((i for i in range(len(x) - 1, 0, -1) if not torch.equal(x[i], x[0])), None)
    if other is None:
        return {"tested": False, "reason": "every example of the batch is the same"}
    modes = [(m, m.training) for m in model.modules()]
    swapped = x.clone()
    swapped[0] = x[other]
    # Both passes draw the same random numbers (a layer that stays random in eval mode, e.g. a dropout that
    # ignores self.training, is the eval-mode check's to name), and the run's generators are left as they were.
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        try:
            model.eval()
            with torch.no_grad():
                torch.manual_seed(0)
                before = model(x)
                torch.manual_seed(0)
                after = model(swapped)
        except Exception as e:  # the user's forward: whatever it raises, the training run is not ours to break
            return {"tested": False, "reason": f"the model's forward raised {type(e).__name__} in eval mode"}
        finally:
            for m, mode in modes:
                m.training = mode
    if not (isinstance(before, Tensor) and isinstance(after, Tensor) and before.shape == after.shape and len(before) == len(x)):
        return {"tested": False, "reason": "the model's output is not one tensor with the batch first"}
    before, after = before.detach().float().flatten(1), after.detach().float().flatten(1)
    rest = torch.ones(len(x), dtype=torch.bool)
    rest[0] = False
    scale = float(before[rest].pow(2).mean().sqrt()) + 1e-12
    change = (after[rest] - before[rest]).abs().amax(1) / scale
    # Float rounding of a per-example computation is ~1e-7 of the scale; a mixed example moves by O(1).
    changed = change > 1e-4
    return {
        "tested": True,
        "examples": len(x),
        "changed": int(changed.sum()),
        "changed_fraction": float(changed.float().mean()),
        "max_change": float(change.max()),
    }


def score_kind(scores: Tensor) -> str:
    """'probabilities' (rows in [0, 1] summing to 1), 'log_probabilities' (rows <= 0 whose exp sums to 1), 'non_finite' or 'scores'."""
    s = scores.detach().float()
    if not bool(torch.isfinite(s).all()):
        return "non_finite"
    if s.shape[1] < 2 or not len(s):  # one column, or an empty batch: nothing to tell apart
        return "scores"
    if float(s.min()) >= 0 and float(s.max()) <= 1 and bool(torch.allclose(s.sum(1), torch.ones(len(s)), atol=1e-3)):
        return "probabilities"
    if float(s.max()) <= 1e-6 and bool(torch.allclose(s.exp().sum(1), torch.ones(len(s)), atol=1e-3)):
        return "log_probabilities"
    return "scores"


# The losses a loop may compute from the scores and labels: which one it computes is read off the numbers
# (docs/lectures.md §5: cross-entropy is -log softmax of the correct class's score).
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cross_entropy": lambda s, y: nn.functional.cross_entropy(s, y),
    "cross_entropy_of_softmax": lambda s, y: nn.functional.cross_entropy(s.softmax(1), y),
    "cross_entropy_of_log_softmax": lambda s, y: nn.functional.cross_entropy(s.log_softmax(1), y),
    "nll_of_scores": lambda s, y: nn.functional.nll_loss(s, y),
    "nll_of_softmax": lambda s, y: nn.functional.nll_loss(s.softmax(1), y),
}


def matching_losses(scores: Tensor, labels: Tensor, loss: float) -> list[str]:
    """The names of `LOSSES` whose value on (scores, labels) equals `loss` (relative 1e-4; none when it is not finite)."""
    if not math.isfinite(loss):
        return []
    s = scores.detach().float()
    with torch.no_grad():
        values = {name: float(fn(s, labels)) for name, fn in LOSSES.items()}
    return [name for name, v in values.items() if math.isfinite(v) and abs(v - loss) <= 1e-4 * max(1.0, abs(loss))]


class ProgramWatch:
    """The program observer on one model and optimiser; a `fit` callback, and what `bs.record` attaches.

    Args:
        schedule: which steps are observed closely (`make_schedule` presets; 'light' by default).
        sink: called with `facts()` at each epoch end and at `close` (the run recorder writes program.json).
        where: "own loop", "fit", "check", "lightning" or "hugging face trainer": what the record says about who ran the loop.
        loss_known: the loop computes cross-entropy on the model's scores itself (`fit`), so the loss checks do not apply.
    """

    def __init__(
        self,
        *,
        schedule: Schedule | None = None,
        sink: Callable[[Facts], None] | None = None,
        where: str = "own loop",
        loss_known: bool = False,
    ) -> None:
        self.schedule = schedule if schedule is not None else make_schedule("light")
        self.sink, self.where, self.loss_known = sink, where, loss_known
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._handles: list[Any] = []
        self._forward_handles: dict[nn.Module, tuple[Any, Any]] = {}
        self._armed_handles: list[Any] = []
        self._reset()

    def _reset(self) -> None:
        self.step = 0
        self._static: Facts = {}
        self._params: list[tuple[str, nn.Parameter]] = []
        self._sentinels: list[int] = []
        self._fired: set[int] = set()
        self._ever_fired: set[int] = set()
        self._backward_steps = 0  # observed steps with a backward pass since the previous step
        self._stale_refs: dict[int, Tensor | None] = {}
        self._checked_stale: set[int] = set()
        self._incoming: dict[int, bool] = {}
        self._armed = False
        self._mode_mods: list[tuple[str, nn.Module]] = []
        self._forwards = 0
        self._batch: Tensor | None = None
        self._scores: Tensor | None = None
        self._scores_step = 0  # the step whose forward pass gave `_scores`
        self._outer: nn.Module | None = None
        self._in_forward: nn.Module | None = None
        self._training_pass = False
        self._testing = False  # babysit's own batch-independence passes: not the user's evaluation
        self._eval_samples = 0
        self._val_samples: list[int] = []
        self._called: set[str] = set()
        self._out_grad: dict[str, bool] = {}
        self._watch_modules: dict[str, nn.Module] = {}
        self._picked = False
        self._pinned = False  # the forward hooks kept to the module the loop calls (`_keep_outer_hooks`)
        self._stale_step = 0
        self._tick = 0  # orders the step's events: the last training forward, the last gradient
        self._last_forward = self._last_grad = 0
        self._grad: Facts = {"not_reset": [], "cleared": [], "no_backward": [], "not_reset_count": 0, "cleared_count": 0,
                             "no_backward_count": 0, "observed": 0}  # fmt: skip
        self._modes: Facts = {"eval_steps": [], "model_eval_steps": [], "eval_modules": [], "eval_count": 0, "model_eval_count": 0, "observed": 0,
                              "changes": [], "last_step": 0}  # fmt: skip
        self._lr: Facts = {"initial": None, "peak": 0.0, "last": None, "lowest": None, "collapsed_steps": 0, "first_collapsed": None,
                           "zero_steps": 0, "changes": 0, "change_steps": [], "steps": 0}  # fmt: skip
        self._scores_facts: Facts = {"observed": 0, "probabilities": 0, "log_probabilities": 0, "non_finite": 0, "classes": None}
        self._loss: Facts = {"observed": 0, "first": None, "first_step": None, "first_scores": None, "min": None,
                             "negative_steps": [], "non_finite_steps": [], "matches": {}, "labels": 0}  # fmt: skip
        self._batch_facts: Facts = {"tested": False, "reason": "no training step was observed"}
        self._epoch_steps: list[int] = []

    # -- attaching --------------------------------------------------------------------------

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, step: int = 0) -> ProgramWatch:
        """Read the static facts and install the hooks on `model` and `optimizer` (replaces earlier ones)."""
        self.close(flush=False)
        self._reset()
        self.model, self.optimizer, self.step = model, optimizer, step
        self._static = static_facts(model, optimizer)
        in_model = {id(p): n for n, p in model.named_parameters()}
        self._params = [(in_model.get(id(p), f"(optimizer tensor {i})"), p)
                        for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"]) if p.requires_grad]  # fmt: skip
        order = sorted(range(len(self._params)), key=lambda i: self._params[i][1].numel())
        self._sentinels = order[:SENTINELS]
        self._mode_mods = _mode_modules(model)
        self._handles = [optimizer.register_step_pre_hook(self._pre_step), optimizer.register_step_post_hook(self._post_step)]
        # The model and its direct children, until the first observed training pass shows which one the loop
        # calls: the outermost call is the training batch (on observed steps) or, without gradients, an
        # evaluation pass whose samples are counted (the validation size).
        self._forward_handles = {m: (m.register_forward_pre_hook(self._on_forward_pre), m.register_forward_hook(self._on_forward))
                                 for m in [model, *model.children()]}  # fmt: skip
        self._arm()
        return self

    def _keep_outer_hooks(self) -> None:
        """Once the loop is seen calling the model itself, drop its children's forward hooks.

        A module with hooks takes PyTorch's slow call path (about 3 µs a call on a CPU, a per cent of a
        small convnet's step for eight children); the children's hooks only serve loops that call a child
        directly (Lightning's `training_step` calling `self.net(x)`), which keep them.
        """
        self._pinned = True
        if self._outer is not self.model:
            return
        for m in [m for m in self._forward_handles if m is not self.model]:
            for h in self._forward_handles.pop(m):
                h.remove()

    def close(self, flush: bool = True) -> None:
        """Remove every hook (safe to call twice) and hand the facts to the sink."""
        self._disarm()
        for h in [*self._handles, *(h for pair in self._forward_handles.values() for h in pair)]:
            h.remove()
        was_attached = bool(self._handles)
        self._handles, self._forward_handles = [], {}
        if flush and was_attached and self.sink is not None:
            self.sink(self.facts())

    # -- fit callback ---------------------------------------------------------------------------

    def on_fit_start(self, state) -> None:
        self.attach(state.model, state.optimizer, step=state.step)

    def on_epoch_end(self, state) -> None:
        self.epoch_end()

    def on_fit_end(self, state) -> None:
        self.close()

    # -- what the loop tells it -----------------------------------------------------------------------

    def epoch_end(self) -> None:
        """Mark an epoch boundary (steps per epoch are evidence for a schedule stepped too often) and flush the facts."""
        self._epoch_steps.append(self.step)
        self._val_samples.append(self._eval_samples)
        self._eval_samples = 0
        self._in_forward = None  # a forward pass that raised leaves no call open
        if self.sink is not None:
            self.sink(self.facts())

    def observe_loss(self, loss: Tensor | float, labels: Tensor | None = None) -> None:
        """The batch loss of the step just taken (and its labels, when given): checked against what cross-entropy allows.

        Called by `OwnLoopRun.log_step`; only observed steps cost anything beyond a float.
        """
        step = self.step  # the step this loss belongs to (log_step comes after optimizer.step())
        if not self.schedule(max(step, 1)) and self._loss["observed"] >= 3:
            return
        value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        f = self._loss
        f["observed"] += 1
        if f["first"] is None:
            f["first"], f["first_step"] = value, step
            f["first_scores"] = self._scores_facts["non_finite"] == 0 if self._scores_facts["observed"] else None
        if math.isfinite(value):
            f["min"] = value if f["min"] is None else min(f["min"], value)
            if value < -1e-6 and len(f["negative_steps"]) < KEEP:
                f["negative_steps"].append(step)
        elif len(f["non_finite_steps"]) < KEEP:
            f["non_finite_steps"].append(step)
        scores = self._scores if self._scores_step == step else None  # only this step's own scores match its loss
        if labels is not None and isinstance(labels, Tensor) and scores is not None and scores.ndim == 2 and len(labels) == len(scores):
            y = labels.detach().to(scores.device).long()
            if len(y) and int(y.min()) >= 0 and int(y.max()) < scores.shape[1]:
                f["labels"] += 1
                for name in matching_losses(scores, y, value):
                    f["matches"][name] = f["matches"].get(name, 0) + 1

    # -- hooks ------------------------------------------------------------------------------------

    def _arm(self) -> None:
        """Install the per-parameter and forward hooks exactly while the next step is observed; reset the step's state."""
        want = bool(self.schedule(self.step + 1))
        if not want and not self._armed:  # most steps: nothing was armed, so nothing to reset
            self._outer = self._in_forward = None
            return
        if want and not self._armed:
            self._armed_handles = [p.register_hook(functools.partial(self._on_grad, i)) for i, (_, p) in enumerate(self._params)]
            for name, m in self._watch_modules.items():
                self._armed_handles.append(m.register_forward_hook(functools.partial(self._on_watched_forward, name)))
            self._armed = True
        elif not want:
            self._disarm()
        self._fired.clear()
        self._checked_stale.clear()
        self._incoming.clear()
        self._outer = self._in_forward = None
        # Each sentinel's gradient as this step leaves it: still the same, non-zero tensor when the next
        # backward pass arrives means nothing reset it. Held only until then (see `_on_grad`).
        self._stale_refs = {i: self._params[i][1].grad for i in self._sentinels} if self._armed else {}

    def _disarm(self) -> None:
        for h in self._armed_handles:
            h.remove()
        if self._armed:
            for _, p in self._params:
                # A removed gradient hook leaves an empty hook dict behind, and autograd still calls into Python
                # for it on every backward pass (about 1.5 µs a parameter); with no hook left, drop the dict.
                if getattr(p, "_backward_hooks", None) is not None and not p._backward_hooks:
                    p._backward_hooks = None
        self._armed_handles = []
        self._armed = False

    def _on_grad(self, i: int, grad: Tensor) -> None:
        self._fired.add(i)
        self._tick += 1
        self._last_grad = self._tick
        if i not in self._sentinels or i in self._checked_stale:
            return
        # The first gradient of this parameter since the last step: what .grad holds now is what the
        # previous step used, unless something (zero_grad) reset it.
        self._checked_stale.add(i)
        self._incoming[i] = bool(grad.detach().any())
        ref = self._stale_refs.pop(i, None)  # released here, so autograd accumulates in place as usual
        stale = ref is not None and self._params[i][1].grad is ref and bool(ref.detach().any())
        if stale and self.step > 0 and self._stale_step != self.step + 1:
            self._stale_step = self.step + 1  # once per step, whichever sentinel saw it
            self._count("not_reset", self.step + 1)

    def _on_forward_pre(self, module: nn.Module, args: Any) -> None:
        if self._in_forward is not None or self._testing:
            return
        if not torch.is_grad_enabled():
            # An evaluation pass (validation, test): its samples size the validation split the accuracies are measured on.
            self._in_forward, self._training_pass = module, False
            if args and isinstance(args[0], Tensor) and args[0].ndim >= 1:
                self._eval_samples += len(args[0])
            return
        if not self._armed:
            return
        # The outermost module called in this training pass: the model, or (Lightning's training_step calling
        # self.net(x)) the direct child that ran first.
        self._in_forward, self._training_pass = module, True
        if self._outer is None:
            self._outer = module
        if module is self._outer:
            self._forwards += 1
            self._tick += 1
            self._last_forward = self._tick
            if self._batch is None and not self._batch_facts.get("tested") and len(args) == 1 and isinstance(args[0], Tensor):
                self._batch = args[0].detach()

    def _on_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        if module is not self._in_forward:
            return
        self._in_forward = None
        output = getattr(output, "logits", output)  # a Hugging Face model returns its scores as `.logits` of a ModelOutput
        if not self._training_pass or module is not self._outer or not isinstance(output, Tensor) or output.ndim != 2 or not output.is_floating_point():
            return
        self._scores, self._scores_step = output.detach(), self.step + 1
        f = self._scores_facts
        kind = score_kind(output)
        f["observed"] += 1
        f["classes"] = int(output.shape[1])
        f[kind] = f.get(kind, 0) + 1

    def _on_watched_forward(self, name: str, module: nn.Module, args: Any, output: Any) -> None:
        if self._in_forward is None or not self._training_pass:
            return  # not inside a training pass (validation, or babysit's own batch test)
        self._called.add(name)
        outs = output if isinstance(output, (tuple, list)) else (output,)
        needs = any(isinstance(o, Tensor) and o.requires_grad for o in outs)
        self._out_grad[name] = self._out_grad.get(name, False) or needs

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> tuple[tuple, dict] | None:
        self._lr_step(optimizer)
        if not self._armed:
            return None
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            self._judge_step()
            return None

        # step(closure) (Lightning, L-BFGS): the gradients are computed inside the step, by the closure.
        def judged(*a: Any, **kw: Any) -> Any:
            loss = closure(*a, **kw)
            if not judged.done:
                judged.done = True
                self._judge_step()
            return loss

        judged.done = False
        if "closure" in kwargs:
            return args, {**kwargs, "closure": judged}
        return (args[0], judged, *args[2:]), kwargs

    def _judge_step(self) -> None:
        """On an observed step, just before the update: did a backward pass run, and are its gradients still there?"""
        step = self.step + 1
        g = self._grad
        g["observed"] += 1
        backward = bool(self._fired)
        if backward:
            self._backward_steps += 1
            self._ever_fired |= self._fired
        held = [self._params[i][1].grad for i in self._sentinels]
        empty = all(t is None or not bool(t.detach().any()) for t in held)
        arrived = any(self._incoming.get(i) for i in self._sentinels)
        # This step's forward pass came after the last gradient: its own backward has not run yet.
        ahead = backward and self._last_forward > self._last_grad
        if backward and arrived and empty and not ahead:
            self._count("cleared", step)  # a gradient arrived, and was gone by the time of the step
        if (not backward or ahead) and empty and self._params:
            self._count("no_backward", step)  # no gradient of this step's forward pass reached the parameters yet
        m = self._modes
        m["observed"] += 1
        eval_mods = [(n, mod) for n, mod in self._mode_mods if not mod.training]
        # Where the modes change, by step: the light schedule watches the first steps closely and later ones
        # sparsely, so a share of the *steps* (not of the observations) says how much of the run was affected.
        state = bool(eval_mods)
        if (not m["changes"] or m["changes"][-1][1] != state) and len(m["changes"]) < 2 * KEEP:
            m["changes"].append([step, state])
        m["last_step"] = step
        if eval_mods:
            m["eval_count"] += 1
            if len(m["eval_steps"]) < KEEP:
                m["eval_steps"].append(step)
            m["eval_modules"] = sorted(set(m["eval_modules"]) | {n for n, _ in eval_mods})[:KEEP]
            # Batch norm held in eval mode over frozen parameters is a transfer-learning habit, not a bug.
            m["eval_frozen"] = m.get("eval_frozen", True) and all(not p.requires_grad for _, mod in eval_mods for p in mod.parameters())
            m["eval_dropout"] = m.get("eval_dropout", False) or any(not isinstance(mod, _NORM) for _, mod in eval_mods)
        if not self.model.training:
            m["model_eval_count"] += 1
            if len(m["model_eval_steps"]) < KEEP:
                m["model_eval_steps"].append(step)

    def _count(self, fact: str, step: int) -> None:
        self._grad[f"{fact}_count"] += 1
        if len(self._grad[fact]) < KEEP:
            self._grad[fact].append(step)

    def _lr_step(self, optimizer: torch.optim.Optimizer) -> None:
        groups = optimizer.param_groups
        # A tensor rate (a capturable optimiser's) is not read: on a GPU each read would wait for the device.
        lr = groups[0].get("lr") if len(groups) == 1 else max((g.get("lr") for g in groups if isinstance(g.get("lr"), (int, float))), default=None)
        if not isinstance(lr, (int, float)):
            return
        f = self._lr
        f["steps"] += 1
        if lr == f["last"] and lr >= COLLAPSED * f["peak"] and lr != 0:  # most steps: the rate of the step before
            return
        if f["initial"] is None:
            f["initial"] = lr
        elif lr != f["last"]:
            f["changes"] += 1
            if len(f["change_steps"]) < KEEP:
                f["change_steps"].append(self.step + 1)
        f["last"] = lr
        f["peak"] = max(f["peak"], lr)
        f["lowest"] = lr if f["lowest"] is None else min(f["lowest"], lr)
        if lr == 0:
            f["zero_steps"] += 1
        if lr < COLLAPSED * f["peak"] or lr == 0:
            f["collapsed_steps"] += 1
            if f["first_collapsed"] is None:
                f["first_collapsed"] = self.step + 1

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        observed = self._armed
        self.step += 1
        if observed and self._backward_steps and not self._picked:
            self._after_first_backward()
        if observed and self._outer is not None and not self._pinned:
            self._keep_outer_hooks()
        if observed and self._batch is not None:
            self._testing = True
            try:
                self._batch_facts = batch_dependence(self.model, self._batch)  # once: the batch is captured once
            finally:
                self._testing = False
            self._batch = None
        self._arm()

    def _after_first_backward(self) -> None:
        """The first observed backward pass tells which parameters get gradients: the sentinels come from them,
        and the modules owning the others are watched (called at all? inside a no_grad region?)."""
        self._picked = True
        fired = sorted(self._ever_fired, key=lambda i: self._params[i][1].numel())
        if fired:
            self._sentinels = fired[:SENTINELS]
        modules = dict(self.model.named_modules())
        owners = {_owner(self._params[i][0]) for i in range(len(self._params)) if i not in self._ever_fired}
        self._watch_modules = {o: modules[o] for o in owners if o in modules and o != "(root)"}
        self._disarm()  # re-armed by the caller, with the new forward hooks

    # -- the facts -----------------------------------------------------------------------------

    def facts(self) -> Facts:
        """The facts so far, JSON-ready (the program.json of a run record)."""
        without = []
        if self._backward_steps >= 2:
            for i, (name, p) in enumerate(self._params):
                if i not in self._ever_fired:
                    owner = _owner(name)
                    without.append({"param": name, "module": owner, "numel": p.numel(), "called": owner in self._called,
                                    "output_requires_grad": self._out_grad.get(owner)})  # fmt: skip
        grad = {**self._grad, "backward_steps": self._backward_steps, "without_grad": without[:KEEP], "without_grad_count": len(without),
                "without_grad_numel": sum(w["numel"] for w in without), "held_numel": sum(p.numel() for _, p in self._params)}  # fmt: skip
        not_run = {}
        if self.loss_known:
            loss: Facts = {"observed": 0, "computed_by": "babysit (cross-entropy of the scores)"}
        else:
            loss = dict(self._loss)
            if not loss["observed"]:
                not_run["loss"] = "no loss was given: pass it with run.log_step(loss) to check it against what cross-entropy allows"
            elif not loss["labels"]:
                not_run["loss_vs_scores"] = "no labels were given: pass run.log_step(loss, labels=y) to check the loss against the scores"
        if not self._batch_facts.get("tested"):
            not_run["batch_dependence"] = self._batch_facts.get("reason", "")
        return {
            "where": self.where,
            "loss_known": self.loss_known,
            "steps": self.step,
            "forwards": self._forwards,
            "epoch_steps": self._epoch_steps[:200],
            "val_samples": self._val_samples[:200],
            "params": self._static,
            "grad": grad,
            "modes": {**self._modes, "mode_modules": len(self._mode_mods)},
            "lr": dict(self._lr),
            "scores": dict(self._scores_facts),
            "loss": loss,
            "batch": dict(self._batch_facts),
            "not_run": not_run,
        }

    def __repr__(self) -> str:
        on = type(self.model).__name__ if self.model is not None else "nothing"
        return f"ProgramWatch(on={on}, where={self.where!r}, step={self.step}, params={len(self._params)})"
