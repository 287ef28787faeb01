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

from babysit import blocks, checks, config, train, tune, workflows
from babysit.checks.preflight import check
from babysit.config import RunConfig, build_config
from babysit.data.datasets import Dataset, load_dataset
from babysit.data.preprocess import prepare
from babysit.diagnose.findings import Finding
from babysit.diagnose.merge import merge_findings
from babysit.diagnose.rules import diagnose
from babysit.errors import BabysitError, ConfigError, DataError
from babysit.nn.models import build_model
from babysit.report.run_report import run_report
from babysit.train.own_loop import record
from babysit.train.record import load_run
from babysit.train.state import FitResult, Recipe
from babysit.train.trainer import evaluate, fit
from babysit.tune.session import search
from babysit.watch.probes import watch
from babysit.workflows.auto import auto
from babysit.workflows.doctor import doctor

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
