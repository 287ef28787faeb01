"""babysit: train neural networks the way CS231n teaches, and babysit them.

    import babysit as bs
    data = bs.prepare(bs.load_dataset("mnist1d"))
    model = bs.build_model("convnet", data.input_shape, data.num_classes)
    result = bs.fit(model, data, bs.Recipe(optimizer="adam", lr=3e-3, epochs=20))

The top level holds what a user needs; the rest lives in sub-namespaces:
`bs.blocks` (every building block and registry), `bs.tune` (search spaces and
strategies), `bs.train` (the loop's state, callbacks, checkpoints, run records),
`bs.checks`, `bs.workflows` (run, start_run, resume_run, doctor), `bs.config`.
"""

from typing import TYPE_CHECKING

from babysit import train
from babysit._lazy import lazy
from babysit.data.datasets import Dataset, load_dataset
from babysit.data.preprocess import prepare
from babysit.diagnose.findings import Finding
from babysit.diagnose.merge import merge_findings
from babysit.diagnose.rules import diagnose
from babysit.errors import BabysitError, ConfigError, DataError
from babysit.nn.models import build_model
from babysit.train.own_loop import record
from babysit.train.record import load_run
from babysit.train.state import FitResult, Recipe
from babysit.train.trainer import evaluate, fit
from babysit.watch.probes import watch

# Loaded on first use (see babysit._lazy): search pulls in Optuna and its SQL store,
# reports matplotlib, and the checks, the config and the workflows are not needed by
# a loop that only records or fits. `diagnose` and `watch` stay eager: they share
# their names with sub-packages, which importing those would bind here instead.
_LAZY = {
    "RunConfig": "babysit.config",
    "auto": "babysit.workflows.auto",
    "blocks": "babysit.blocks",
    "build_config": "babysit.config",
    "check": "babysit.checks.preflight",
    "checks": "babysit.checks",
    "config": "babysit.config",
    "doctor": "babysit.workflows.doctor",
    "load_ensemble": "babysit.workflows.members",
    "run_report": "babysit.report.run_report",
    "search": "babysit.tune.session",
    "tune": "babysit.tune",
    "workflows": "babysit.workflows",
}
if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from babysit import blocks, checks, config, tune, workflows
    from babysit.checks.preflight import check
    from babysit.config import RunConfig, build_config
    from babysit.report.run_report import run_report
    from babysit.tune.session import search
    from babysit.workflows.auto import auto
    from babysit.workflows.doctor import doctor
    from babysit.workflows.members import load_ensemble

__version__ = "0.1.0"

__all__ = [
    "BabysitError",
    "ConfigError",
    "DataError",
    "Dataset",
    "Finding",
    "FitResult",
    "Recipe",
    "RunConfig",
    "auto",
    "blocks",
    "build_config",
    "build_model",
    "check",
    "checks",
    "config",
    "diagnose",
    "doctor",
    "evaluate",
    "fit",
    "load_dataset",
    "load_ensemble",
    "load_run",
    "merge_findings",
    "prepare",
    "record",
    "run_report",
    "search",
    "train",
    "tune",
    "watch",
    "workflows",
]

__getattr__, __dir__ = lazy(__name__, _LAZY, __all__)
