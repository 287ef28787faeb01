"""The training scripts of the program-bug family, written as a person writes them, with the bug lines in place.

`run(case, tool)` trains one case the way its family does and returns an
`Outcome` dict: the validation accuracy and loss per epoch and at the end,
whether the training loss stayed finite, and the tool's findings.

- "loop": `train_loop`, a hand-written loop; every bug of `bugs.BUGS` can be
  written into it.
- "fit": `bs.fit(model, data, recipe)` with the user's module, through the
  tool's `fit` (babysit's tool runs `bs.doctor` instead, as the diagnosis
  benchmark does). The plain tool trains the same module, optimiser, schedule
  and data with the hand-written loop instead: the verification is plain
  PyTorch, with no babysit code in the training.
- "lightning": a `LightningModule` (`Classifier`) trained by
  `lightning.pytorch.Trainer`; the loss, `configure_optimizers` and the
  scheduler's interval are where its bugs live.

The tool sees the script only through its hooks (`tools.Tool`): before
training, at the loop's start, after each step and epoch, and at the end.
"""

from __future__ import annotations

import copy
import math
import time
from functools import lru_cache
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bugs import FROZEN_ON_PURPOSE, Case
from .nets import Switches, build

EPOCHS = 12
BATCH = 64
# Healthy learning rates per optimiser (what a user starts from); SGD with momentum trains the batch-norm
# nets (MLP, convnet) at the higher rate batch norm tolerates, where they learn best (0.05 left MNIST-1D at 35%).
LR = {"adam": 3e-3, "adamw": 3e-3, "momentum": 0.05, "rmsprop": 1e-3}
BN_MOMENTUM_LR = 0.4
STEP_PERIOD, STEP_GAMMA = 4, 0.5  # the healthy StepLR: halve the rate every 4 epochs

Outcome = dict[str, Any]
LossFn = Callable[[Tensor, Tensor], Tensor]


# ----------------------------------------------------------------------------- data


@lru_cache(maxsize=None)
def prepared(name: str, seed: int):
    """The data set standardised with its training split's statistics (per feature; one mean/std for images and signals).

    Returns a babysit `Dataset` (what `bs.fit` takes); the loops read its tensors.
    """
    import cases  # the diagnosis benchmark's data: 1500 samples, 30% held out for validation

    raw = cases.raw_data(name, seed)
    x = raw.train.x
    dims = 0 if x.ndim == 2 else tuple(range(x.ndim))  # tabular: per feature; images, signals: one scale
    mean, std = x.mean(dims, keepdim=x.ndim == 2), x.std(dims, keepdim=x.ndim == 2).clamp_min(1e-8)
    return cases._map_inputs(raw, lambda t: (t - mean) / std)


def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """(cross-entropy, accuracy) of `model` on (x, y) in eval mode; leaves the model in eval mode, as such helpers do."""
    model.eval()
    with torch.no_grad():
        scores = model(x)
        return float(F.cross_entropy(scores, y)), float((scores.argmax(1) == y).float().mean())


# ----------------------------------------------------------------------------- the pieces a script builds


def make_model(case: Case, input_shape: tuple[int, ...], classes: int) -> nn.Module:
    """The family's architecture with the case's model-level bug."""
    switches = Switches(
        detach=case.bug == "detached_body",
        no_grad=case.bug == "no_grad_branch",
        skip=case.bug == "unused_layer",
        # In a hand-written loop the softmax is written into the loss; with fit and Lightning, into the model.
        softmax=case.bug == "softmax_before_ce" and case.way == "fit",
        layout_bug={"view_for_permute": "view", "batch_first_missing": "batch_first"}.get(case.bug, ""),
    )
    torch.manual_seed(case.seed)
    return build(case.arch, input_shape, classes, switches, case.layout)


def body_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter but the head's."""
    return [p for name, p in model.named_parameters() if not name.startswith("head.")]


def lr_of(case: Case) -> float:
    """The family's learning rate."""
    return BN_MOMENTUM_LR if case.optimizer == "momentum" and case.arch in ("mlp", "convnet") else LR[case.optimizer]


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """The optimiser a user writes for `name`."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


def make_scheduler(case: Case, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The family's epoch schedule: StepLR (halve every `STEP_PERIOD` epochs) or LambdaLR (linear to 0 over the epochs)."""
    if case.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=STEP_PERIOD, gamma=STEP_GAMMA)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: max(0.0, 1.0 - t / EPOCHS))


def per_batch_schedule(case: Case) -> bool:
    """Whether the script steps its epoch schedule every batch (the two schedule bugs)."""
    return case.bug in ("steplr_per_batch", "lambda_lr_zero")


def make_loss(case: Case) -> LossFn:
    """The loss the script computes on (scores, labels), with the case's loss bug."""
    if case.bug == "softmax_before_ce" and case.way != "fit":
        return lambda scores, y: F.cross_entropy(F.softmax(scores, dim=1), y)
    if case.bug == "nll_on_raw_scores":
        return lambda scores, y: F.nll_loss(scores, y)
    if case.bug == "log_of_log_softmax":
        return lambda scores, y: F.nll_loss(torch.log(F.log_softmax(scores, dim=1)), y)
    return F.cross_entropy


@lru_cache(maxsize=None)
def _pretrained_body(family_case: Case) -> dict[str, Tensor]:
    """A pretrained body for the frozen-on-purpose twin: the healthy script's weights after its own training.

    It stands for the checkpoint a transfer-learning user loads; trained once per family and process.
    """
    from .tools import Tool

    model = _train_loop(family_case.twin(), Tool(), keep_model=True)["model"]
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}


def _freeze(case: Case, model: nn.Module) -> None:
    """The frozen-body bug and the frozen-on-purpose twin: the body's parameters get requires_grad False."""
    if case.bug == FROZEN_ON_PURPOSE:
        model.load_state_dict(_pretrained_body(case), strict=False)  # the pretrained body; the head stays fresh
    if case.bug in ("body_frozen", FROZEN_ON_PURPOSE):
        for p in body_parameters(model):
            p.requires_grad = False


# ----------------------------------------------------------------------------- way 1: a hand-written loop


def train_loop(case: Case, tool) -> Outcome:
    """A hand-written loop over shuffled mini-batches, validating each epoch; the case's bug is written in."""
    return _train_loop(case, tool)


def _train_loop(case: Case, tool, keep_model: bool = False) -> Outcome:
    d = prepared(case.data, case.seed)
    x, y, xv, yv = d.train.x, d.train.y, d.val.x, d.val.y
    model = make_model(case, d.input_shape, d.num_classes)
    _freeze(case, model)
    if case.bug == "optimizer_on_copy":
        shadow = copy.deepcopy(model)  # meant for an average of the weights
        params = shadow.parameters()  # BUG: the optimizer updates the copy
    elif case.bug == "optimizer_head_only":
        params = model.head.parameters()  # BUG: the body is meant to train too
    elif case.bug == FROZEN_ON_PURPOSE:
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        params = model.parameters()
    optimizer = make_optimizer(case.optimizer, params, lr_of(case))
    scheduler = make_scheduler(case, optimizer)
    loss_fn = make_loss(case)
    if case.bug == "labels_shuffled":
        x = x[torch.randperm(len(x))]  # BUG: two permutations; each input keeps another input's label
        y = y[torch.randperm(len(y))]
    tool.before_training(model, optimizer, loss_fn, (x[:BATCH], y[:BATCH]), way="loop", name=case.id, data=d)
    tool.start(model, optimizer)
    gen = torch.Generator().manual_seed(case.seed)
    history: list[dict[str, float]] = []
    finite = True
    model.train()
    for epoch in range(EPOCHS):
        if case.bug != "eval_mode":
            model.train()  # BUG when missing: evaluate() left the model in eval mode
        order = torch.randperm(len(x), generator=gen)
        losses, correct = [], 0
        for i in range(0, len(x), BATCH):
            xb, yb = x[order[i : i + BATCH]], y[order[i : i + BATCH]]
            loss, scores = _step(case.bug, model, optimizer, loss_fn, xb, yb)
            if per_batch_schedule(case):
                scheduler.step()  # BUG: an epoch schedule stepped every batch
            tool.after_step(loss, yb)
            losses.append(float(loss))
            correct += int((scores.argmax(1) == yb).sum())
        if not per_batch_schedule(case):
            scheduler.step()
        train_loss = sum(losses) / len(losses)
        finite = finite and all(math.isfinite(v) for v in losses)
        val_loss, val_acc = evaluate(model, xv, yv)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": correct / len(x), "val_loss": val_loss, "val_accuracy": val_acc}
        history.append(record)
        tool.after_epoch(record)
    out = _outcome(history, finite, tool.finish())
    if keep_model:
        out["model"] = model
    return out


def _step(bug: str, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
    """One training step, in the order the case's script writes it; returns (loss, scores), both detached."""
    if bug == "no_zero_grad":
        scores = model(xb)
        loss = loss_fn(scores, yb)
        loss.backward()  # BUG: no optimizer.zero_grad(): gradients add up
        optimizer.step()
    elif bug == "zero_grad_before_step":
        scores = model(xb)
        loss = loss_fn(scores, yb)
        loss.backward()
        optimizer.zero_grad()  # BUG: clears the gradient the step needs
        optimizer.step()
    elif bug == "step_before_backward":
        optimizer.zero_grad()
        scores = model(xb)
        loss = loss_fn(scores, yb)
        optimizer.step()  # BUG: steps before there is a gradient
        loss.backward()
    elif bug == "no_step":
        optimizer.zero_grad()
        scores = model(xb)
        loss = loss_fn(scores, yb)
        loss.backward()  # BUG: optimizer.step() never follows
    else:
        optimizer.zero_grad()
        scores = model(xb)
        loss = loss_fn(scores, yb)
        loss.backward()
        optimizer.step()
    return loss.detach(), scores.detach()


def _outcome(history: list[dict[str, float]], finite: bool, findings: list[dict[str, Any]]) -> Outcome:
    last = history[-1] if history else {}
    return {
        "history": history,
        "val_accuracy": last.get("val_accuracy"),
        "val_loss": last.get("val_loss"),
        "finite": finite and all(math.isfinite(r.get("train_loss", 0.0)) for r in history),
        "findings": findings,
    }


# ----------------------------------------------------------------------------- way 2: bs.fit with the user's module


def recipe_of(case: Case) -> dict[str, Any]:
    """The `bs.Recipe` fields of a fit family: its optimiser, rate, epochs, batch and StepLR-like schedule."""
    if case.schedule != "step":
        raise ValueError(f"a fit family trains with the step schedule; {case.id} has {case.schedule!r}")
    return {"optimizer": case.optimizer, "lr": lr_of(case), "epochs": EPOCHS, "batch_size": BATCH, "seed": case.seed,
            "device": "cpu", "schedule": "step", "period": STEP_PERIOD, "gamma": STEP_GAMMA}  # fmt: skip


def train_fit(case: Case, tool) -> Outcome:
    """`bs.fit` (or the tool's own way of running it) on the user's module; plain PyTorch for the plain tool."""
    if tool.name == "plain":
        # Verification is plain PyTorch: the same module, optimiser, schedule and data in the hand-written loop.
        out = train_loop(case.as_loop(), tool)
        out["trained_by"] = "loop"
        return out
    from babysit.optim.optimizers import build_optimizer

    d = prepared(case.data, case.seed)
    model = make_model(case, d.input_shape, d.num_classes)
    _freeze(case, model)
    recipe = recipe_of(case)
    # What bs.fit will build (the tools that check before training ask for the real optimiser).
    optimizer = build_optimizer(case.optimizer, model.parameters(), recipe["lr"])
    tool.before_training(model, optimizer, F.cross_entropy, (d.train.x[:BATCH], d.train.y[:BATCH]), way="fit", name=case.id, data=d)
    history = tool.fit(model, d, recipe)
    finite = all(math.isfinite(r.get("train_loss", math.nan)) for r in history)
    return _outcome(history, finite, tool.finish())


# ----------------------------------------------------------------------------- way 3: Lightning


def train_lightning(case: Case, tool) -> Outcome:
    """A LightningModule trained by `lightning.pytorch.Trainer`; the validation accuracy is measured after fit."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    d = prepared(case.data, case.seed)
    net = make_model(case, d.input_shape, d.num_classes)
    _freeze(case, net)
    module = lightning_module(case, net)
    gen = torch.Generator().manual_seed(case.seed)
    train = DataLoader(TensorDataset(d.train.x, d.train.y), batch_size=BATCH, shuffle=True, generator=gen)
    val = DataLoader(TensorDataset(d.val.x, d.val.y), batch_size=len(d.val.y))
    tool.before_training(module, None, module.loss_fn, (d.train.x[:BATCH], d.train.y[:BATCH]), way="lightning", name=case.id, data=d)
    history: list[dict[str, float]] = []
    trainer = pl.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[*tool.lightning_callbacks(), history_callback(history)],
    )  # fmt: skip
    trainer.fit(module, train, val)
    finite = all(math.isfinite(r.get("train_loss", math.nan)) for r in history)
    out = _outcome(history, finite, tool.finish())
    out["val_loss"], out["val_accuracy"] = evaluate(net, d.val.x, d.val.y)
    return out


def lightning_module(case: Case, net: nn.Module):
    """The case's `LightningModule` (built lazily: Lightning is imported only for Lightning cases)."""
    import lightning.pytorch as pl

    class Classifier(pl.LightningModule):
        """A classifier as people write one: loss in training_step, metrics logged, optimiser and schedule in configure_optimizers."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.loss_fn = make_loss(case)

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x)

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            x, y = batch
            scores = self(x)
            loss = self.loss_fn(scores, y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            self.log("train_accuracy", (scores.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
            x, y = batch
            scores = self(x)
            self.log("val_loss", F.cross_entropy(scores, y))
            self.log("val_accuracy", (scores.argmax(1) == y).float().mean())

        def configure_optimizers(self) -> dict[str, Any]:
            if case.bug == "optimizer_head_only":
                params = self.net.head.parameters()  # BUG: the body is meant to train too
            elif case.bug == FROZEN_ON_PURPOSE:
                params = [p for p in self.parameters() if p.requires_grad]
            else:
                params = self.parameters()
            optimizer = make_optimizer(case.optimizer, params, lr_of(case))
            interval = "step" if per_batch_schedule(case) else "epoch"  # BUG when "step": an epoch schedule per batch
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": make_scheduler(case, optimizer), "interval": interval}}

    return Classifier()


def history_callback(history: list[dict[str, float]]):
    """A Lightning callback that appends each epoch's logged metrics (after its validation) to `history`."""
    import lightning.pytorch as pl

    class History(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            logged = trainer.callback_metrics
            record = {"epoch": trainer.current_epoch + 1}
            record.update({k: float(logged[k]) for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy") if k in logged})
            history.append(record)

    return History()


# ----------------------------------------------------------------------------- one case


def run(case: Case, tool) -> Outcome:
    """Train `case` with `tool` attached; the outcome with the case's fields, CPU seconds and the tool's name."""
    torch.set_num_threads(1)
    start = time.process_time()
    if case.way == "loop":
        out = train_loop(case, tool)
    elif case.way == "fit":
        out = train_fit(case, tool)
    elif case.way == "lightning":
        out = train_lightning(case, tool)
    else:
        raise ValueError(f"unknown way in {case.way!r}")
    out.update(id=case.id, bug=case.bug, arch=case.arch, data=case.data, optimizer=case.optimizer, way=case.way,
               seed=case.seed, layout=case.layout, family=case.family, half=case.half, tool=tool.name,
               n_val=len(prepared(case.data, case.seed).val.y), seconds=time.process_time() - start)  # fmt: skip
    return out
