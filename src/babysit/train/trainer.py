"""`fit`: one readable training loop, with callbacks at five named events.

    result = fit(model, data, Recipe(optimizer="adam", lr=1e-3, epochs=10))

Works with any `nn.Module` mapping (N, *input_shape) to (N, C) class scores and
any `Dataset` (or three (x, y) tensor pairs wrapped in one). Evaluation always
runs in eval mode (dropout off, batch-norm running statistics), and the final
test evaluation happens once, at the end. Under `torch.distributed` it trains the
model in DistributedDataParallel, each rank on its shard of every global batch, and
rank 0 alone records (see `train.distributed`).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from babysit.data.datasets import Dataset
from babysit.data.loader import batches, num_batches
from babysit.errors import ConfigError
from babysit.nn.regularize import with_l1
from babysit.optim.optimizers import FULL_BATCH, build_optimizer
from babysit.status import COMPLETED
from babysit.train import distributed
from babysit.train.blocks import full_batch_closure, recipe_callbacks, trainable_parameters
from babysit.train.callbacks import ProgressBar, emit, emit_exception
from babysit.train.checkpoint import restore_callback_states, restore_training_state
from babysit.train.state import FitResult, Recipe, TrainState, resolve_device
from babysit.watch.program import ProgramWatch


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so model init and training are reproducible on the CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(recipe: Recipe, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The forward pass's autocast context: bf16 for precision="bf16" (on the CPU or a CUDA GPU), disabled for "fp32".

    bf16 keeps float32's exponent range, so it needs no gradient scaler: nothing that
    fits in float32 overflows, and gradients do not underflow sooner than in float32.
    On the CPU torch runs bf16 matmuls natively where the processor has bf16
    instructions (AVX512-BF16, AMX) and emulated elsewhere (correct, not faster).
    Losses stay float32 (autocast runs cross-entropy in float32), and evaluation
    runs outside it in full precision.
    """
    bf16 = recipe.precision == "bf16"
    if bf16 and device.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.precision='bf16' runs on the CPU or a CUDA GPU, but this run is on {device.type}; use train.precision='fp32'")
    # A disabled torch.autocast still costs its enter and exit every step (a few µs): fp32 gets no context at all.
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def flushing_denormals() -> bool:
    """Whether this thread's CPU arithmetic reads subnormal floats as zero (`torch.set_flush_denormal`; off by default)."""
    return torch.tensor([1e-323], dtype=torch.float64).item() == 0.0


@contextlib.contextmanager
def flush_denormals(device: torch.device) -> Iterator[None]:
    """Subnormal floats flushed to zero while a run trains on the CPU; the mode it found is restored afterwards.

    A model that fits its training set drives gradients, Adam's moments and some activations below
    float32's smallest normal number (1.2e-38), where x86 arithmetic takes microcode assists up to
    100x slower: an MNIST-1D convnet's epoch cost 0.05 CPU-s at the start of a run and 0.25 by epoch
    1,500, so a run planned from its first epochs was cut or re-planned to a third of its length.
    Values that small move no weight. Only the calling thread's mode is set (torch's intra-op threads
    keep theirs), and a CUDA run is left alone (its kernels do not take the assists).
    """
    if device.type != "cpu":
        yield
        return
    was = flushing_denormals()
    supported = torch.set_flush_denormal(True)  # False on a CPU without the FTZ/DAZ modes: nothing changed, nothing to restore
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(was)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000, views: Sequence[Callable[[Tensor], Tensor]] = ()) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on (x, y), in eval mode (restored afterwards).

    With `views` (fixed versions of the training augmentation, `data.augment.fixed_views`), the prediction is
    the mean of the class probabilities over them, and the loss that mean's cross-entropy.
    """
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for xb, yb in batches(x, y, batch_size, shuffle=False):
        if views:
            probs = torch.stack([F.softmax(model(view(xb)), dim=1) for view in views]).mean(0)
            total_loss += F.nll_loss(probs.clamp_min(torch.finfo(probs.dtype).tiny).log(), yb, reduction="sum")
            scores = probs
        else:
            scores = model(xb)
            total_loss += F.cross_entropy(scores, yb, reduction="sum")
        correct += (scores.argmax(1) == yb).sum()
    model.train(was_training)
    n = len(y)
    return total_loss.item() / n, correct.item() / n


def fit(
    model: nn.Module,
    data: Dataset,
    recipe: Recipe | None = None,
    *,
    callbacks: Sequence[object] = (),
    progress: bool = True,
    resume_from: dict[str, Any] | None = None,
) -> FitResult:
    """Train `model` on `data.train`, validating on `data.val` each epoch, then test once.

    Args:
        model: any module mapping inputs to (N, num_classes) scores.
        data: a `Dataset` (preprocess it first, e.g. with `babysit.prepare`).
        recipe: optimiser and schedule settings; defaults to `Recipe()`.
        callbacks: objects with optional `on_<event>(state)` methods (see `train.callbacks`).
        progress: show a progress bar and per-epoch metrics on stderr.
        resume_from: a checkpoint (`babysit.train.checkpoint.load_checkpoint`) to continue
            from: weights, optimiser, history, epoch, step and RNG states, so the rest of
            the run computes what the uninterrupted run would have.
    """
    recipe = recipe or Recipe()
    start = time.perf_counter()
    device = distributed.local_device(resolve_device(recipe.device))
    seed_everything(recipe.seed)
    model.to(device)
    x_train, y_train = data.train.x.to(device), data.train.y.to(device)
    x_val, y_val = data.val.x.to(device), data.val.y.to(device)
    optimizer = build_optimizer(recipe.optimizer, trainable_parameters(model, recipe), recipe.lr, **recipe.optimizer_options())
    shuffle_gen = torch.Generator().manual_seed(recipe.seed)
    full_batch = recipe.optimizer in FULL_BATCH  # L-BFGS: one deterministic step per epoch
    batch_size = len(y_train) if full_batch else recipe.batch_size
    # A last batch of one sample gives BatchNorm no batch statistics (torch refuses it in training) and any net a
    # step on one sample's noise: skip it. The shuffle differs each epoch, so every sample is still trained on.
    lone = len(y_train) % batch_size == 1 and len(y_train) > 1
    steps_per_epoch = num_batches(len(y_train), batch_size, drop_last=lone)
    # The program observer (watch.program) runs in every fit: the caller's, when it passed one (a recorded run's, with a sink).
    program = next((cb for cb in callbacks if isinstance(cb, ProgramWatch)), None) or ProgramWatch(where="fit", loss_known=True)
    extra = [] if program in callbacks else [program]
    callbacks = distributed.main_only([*recipe_callbacks(recipe), *callbacks, *extra, *([ProgressBar()] if progress else [])])
    sharded = distributed.active()
    train_model = distributed.wrap(model, device, full_batch=full_batch) if sharded else model
    state = TrainState(
        model, optimizer, recipe, data, device, total_steps=steps_per_epoch * recipe.epochs, generator=shuffle_gen, callbacks=callbacks
    )
    if resume_from is not None:
        restore_training_state(state, resume_from)
    amp = autocast(recipe, device)

    with flush_denormals(device):  # a run that fits its data otherwise slows to a crawl on the CPU late in training
        try:
            emit(callbacks, "fit_start", state)
            if resume_from is not None:
                restore_callback_states(state, resume_from)  # after fit_start, which (re)builds their internals
            epoch = state.epoch
            while epoch < state.recipe.epochs:  # the recipe's epochs: a callback may re-plan them (TrainState.replan)
                state.epoch = epoch
                epoch_start = time.perf_counter()
                emit(callbacks, "epoch_start", state)
                model.train()
                # Sums stay on the device; one sync per epoch instead of one per step.
                loss_sum = torch.zeros((), device=device)
                correct = torch.zeros((), device=device)
                seen = 0
                for xb, yb in batches(x_train, y_train, batch_size, generator=shuffle_gen, drop_last=lone, transform=data.augment):
                    n = len(yb)  # the global batch; under DDP this rank trains on its shard
                    if sharded:
                        xb, yb = distributed.shard(xb, yb)
                    optimizer.zero_grad(set_to_none=True)
                    with amp:
                        scores = train_model(xb)
                        if sharded:
                            loss = distributed.shard_loss(scores, yb, n, recipe.label_smoothing)
                        else:
                            loss = F.cross_entropy(scores, yb, label_smoothing=recipe.label_smoothing)
                    with_l1(loss, model, recipe.l1).backward()
                    if recipe.clip_grad_norm is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad_norm)
                    # L-BFGS re-evaluates through the closure (its first call repeats this step's forward pass).
                    optimizer.step(full_batch_closure(optimizer, model, xb, yb, recipe.l1, recipe.label_smoothing) if full_batch else None)
                    state.step += 1
                    state.loss = distributed.global_loss(loss) if sharded else loss.detach()
                    loss_sum += state.loss * n
                    correct += (scores.detach().argmax(1) == yb).sum()
                    seen += n
                    emit(callbacks, "batch_end", state)
                    distributed.agree_stop(state)
                    if state.stop:
                        break
                distributed.all_sum(correct)
                val_loss, val_acc = evaluate(state.eval_model, x_val, y_val)
                state.history.append(
                    {
                        "epoch": epoch + 1,
                        "step": state.step,
                        "train_loss": loss_sum.item() / max(seen, 1),
                        "train_accuracy": correct.item() / max(seen, 1),
                        "val_loss": val_loss,
                        "val_accuracy": val_acc,
                        "lr": optimizer.param_groups[0]["lr"],
                        "seconds": time.perf_counter() - epoch_start,
                    }
                )
                emit(callbacks, "epoch_end", state)
                distributed.agree_stop(state)  # also the barrier after rank 0's checkpoint
                if state.stop:
                    break
                epoch += 1

            x_test, y_test = data.test.x.to(device), data.test.y.to(device)
            test_loss, test_acc = evaluate(state.eval_model, x_test, y_test)
            single = None
            if data.test_views:  # the training augmentation's randomness averaged out (data.augment.fixed_views)
                single = test_acc
                test_loss, test_acc = evaluate(state.eval_model, x_test, y_test, views=data.test_views)
            status = state.status if state.stop else COMPLETED
            state.status = status
            state.result = FitResult(
                status=status,
                epochs=len(state.history),
                history=state.history,
                test_loss=test_loss,
                test_accuracy=test_acc,
                seconds=time.perf_counter() - start,
                stop_reason=state.stop_reason,
                test_views=len(data.test_views) or 1,
                test_accuracy_single=single,
            )
            emit(callbacks, "fit_end", state)
        except BaseException:
            # A failing run (an error, Ctrl-C) tells its callbacks before the error goes on: a checkpointer
            # writes the epochs it holds. Their own errors here would hide the run's, so they are dropped.
            emit_exception(callbacks, state)
            raise
    state.result.program = program.facts() if program in callbacks else None
    distributed.barrier()  # rank 0's summary is written before any rank returns
    return state.result
