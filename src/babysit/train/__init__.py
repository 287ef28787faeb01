"""Training: the loop (`fit`), its state, callbacks, checkpoints and the run record.

Layering: `state` (Recipe, TrainState, FitResult) holds plain data; `trainer` is the
loop; `callbacks`, `checkpoint` and `record` plug into it through the five events.
"""

from babysit.train.callbacks import DivergenceGuard
from babysit.train.checkpoint import Checkpointer, load_checkpoint
from babysit.train.history import History
from babysit.train.record import RunRecord, list_runs, load_run
from babysit.train.state import FitResult, Recipe, TrainState
from babysit.train.trainer import evaluate, fit, seed_everything
from babysit.data.loader import batches

__all__ = [
    "Checkpointer",
    "DivergenceGuard",
    "FitResult",
    "History",
    "Recipe",
    "RunRecord",
    "TrainState",
    "batches",
    "evaluate",
    "fit",
    "list_runs",
    "load_checkpoint",
    "load_run",
    "seed_everything",
]
