"""`fit` under `torch.distributed`: DistributedDataParallel, one global batch split across ranks.

    torchrun --nproc_per_node=2 examples/ddp_digits.py          # two processes (gloo on CPU, nccl on GPUs)

How `fit` runs when a process group is initialised (`init_from_env()` does it for torchrun):
- Every rank draws the same global batch order (same seed, same shuffling generator)
  and trains on its shard of each batch (`shard`: the global batch cut into world-size
  contiguous parts, as `DistributedSampler` splits an epoch). Each rank's loss is its
  share of the global batch's mean (`shard_loss`), so the gradient DDP averages is the
  gradient of the global batch: the run computes what one process computes with the
  same global `batch_size` (up to float summation order).
- `state.loss` is the global batch's mean loss on every rank (`global_loss`), so the
  divergence guard, schedules and early stopping decide alike; `agree_stop` makes a stop
  on any rank a stop on all of them, so no rank waits forever in a collective.
- Rank 0 alone runs the callbacks that write or show (`MAIN_ONLY`: the run record, the
  probes, the checkpoints, the progress bar): one run record, probes measured on rank
  0's shard, checkpoints written once; the other ranks wait for them at the epoch's end
  (`agree_stop` is a collective) and at the end of `fit` (`barrier`).
- Validation and test run in full on every rank (the data is in memory on each).
- Per-shard statistics differ from one process's: BatchNorm normalises each shard with
  its own mean and variance (use `nn.SyncBatchNorm.convert_sync_batchnorm(model)` for
  the global batch's), and dropout draws its masks per shard.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from babysit.errors import BabysitError, ConfigError
from babysit.train.callbacks import ProgressBar
from babysit.train.checkpoint import Checkpointer
from babysit.train.record import RunRecorder
from babysit.watch.probes import Watch
from babysit.watch.program import ProgramWatch

T = TypeVar("T")

# Callbacks that write files or print: on rank 0 only (the program observer reads rank 0's loop, which every rank runs alike).
MAIN_ONLY: tuple[type, ...] = (RunRecorder, Checkpointer, Watch, ProgramWatch, ProgressBar)


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process writes the run record (rank 0, or the only process)."""
    return rank() == 0


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR... in the environment).

    Args:
        backend: "nccl" or "gloo"; None picks nccl when CUDA is available, else gloo.

    Returns whether this process is one of several; a plain `python script.py` (no
    WORLD_SIZE, or 1) initialises nothing and returns False.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return active()


def local_device(device: torch.device) -> torch.device:
    """Under several processes, CUDA means this process's own GPU (cuda:LOCAL_RANK)."""
    if active() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def main_only(callbacks: list[object]) -> list[object]:
    """The callbacks this rank runs: all on rank 0, all but the `MAIN_ONLY` ones elsewhere."""
    return callbacks if is_main() else [cb for cb in callbacks if not isinstance(cb, MAIN_ONLY)]


def wrap(model: nn.Module, device: torch.device, *, full_batch: bool) -> nn.Module:
    """The module the training forward pass runs: `model` in DDP (gradients averaged in backward)."""
    if full_batch:
        raise ConfigError("lbfgs takes one full-batch step per epoch and cannot run under torch.distributed; train it in one process")
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """This rank's contiguous part of a global batch (world-size parts, sizes differing by at most one)."""
    r, w = rank(), world_size()
    return x.tensor_split(w)[r], y.tensor_split(w)[r]


def shard_loss(scores: Tensor, y: Tensor, global_size: int, label_smoothing: float = 0.0) -> Tensor:
    """This shard's cross-entropy sum x world_size / global batch size.

    DDP averages gradients over ranks, so the gradient it leaves is that of the global
    batch's mean loss, also when the last batch splits into unequal shards.
    """
    return F.cross_entropy(scores, y, reduction="sum", label_smoothing=label_smoothing) * (world_size() / global_size)


def all_sum(t: Tensor) -> Tensor:
    """`t` summed over ranks, in place (a no-op in one process)."""
    if active():
        dist.all_reduce(t)
    return t


def global_loss(share: Tensor) -> Tensor:
    """The global batch's mean loss from each rank's `shard_loss` (detached)."""
    return all_sum(share.detach() / world_size())


def agree_stop(state) -> None:
    """Stop every rank when any rank's callbacks asked to stop, with that rank's status and reason.

    One all-reduce of a flag per call (also a barrier: every rank reaches it after its
    callbacks ran); the reasons are gathered only when some rank stopped.
    """
    if not active():
        return
    flag = torch.tensor([1.0 if state.stop else 0.0], device=state.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() == 0.0:
        return
    stops: list[tuple[bool, str, str] | None] = [None] * world_size()
    dist.all_gather_object(stops, (state.stop, state.status, state.stop_reason))
    _, status, reason = next(s for s in stops if s is not None and s[0])
    state.request_stop(status, reason)


def barrier() -> None:
    """Wait until every rank gets here (a no-op in one process)."""
    if active():
        dist.barrier()


def on_main(make: Callable[[], T]) -> T:
    """Run `make` on rank 0 only and hand its result (or its one-line error) to every rank.

    How a run folder is created once: `on_main(lambda: create_run_dir(...))`.
    """
    if not active():
        return make()
    shared: list[object] = [None]
    if is_main():
        try:
            shared[0] = ("ok", make())
        except BabysitError as e:
            shared[0] = ("error", e)
    dist.broadcast_object_list(shared, src=0)
    kind, value = shared[0]
    if kind == "error":
        raise value
    return value
