"""babysit: train neural networks the way CS231n teaches, and babysit them.

    import babysit as bs
    data = bs.prepare(bs.load_dataset("mnist1d"))
    model = bs.build_model("convnet", data.input_shape, data.num_classes)
    result = bs.fit(model, data, bs.Recipe(optimizer="adam", lr=3e-3, epochs=20))
"""

from babysit.checks.base import CHECKS, CheckSettings
from babysit.checks.preflight import CheckReport, check
from babysit.config import DataConfig, ModelConfig, RunConfig, WatchConfig, build_config
from babysit.data.augment import AUGMENTATIONS, Augment, with_augmentation
from babysit.data.datasets import DATASETS, Dataset, Split, load_dataset, select_classes
from babysit.data.loader import batches
from babysit.data.preprocess import PREPROCESSORS, Standardize, load_preprocessor, prepare
from babysit.diagnose.findings import Finding
from babysit.diagnose.rules import RULES, diagnose
from babysit.doctor import DoctorResult, doctor
from babysit.ensemble import Ensemble, Snapshots
from babysit.errors import BabysitError, ConfigError, DataError
from babysit.nn.activations import ACTIVATIONS, Maxout, make_activation
from babysit.nn.init import INITS, apply_init
from babysit.nn.models import MODELS, build_model, convnet, mlp
from babysit.nn.regularize import DROPOUTS, MaxNorm, l1_penalty, max_norm_
from babysit.optim.averaging import AVERAGING, ParameterAveraging
from babysit.optim.optimizers import OPTIMIZERS, build_optimizer
from babysit.optim.schedules import SCHEDULES, LRSchedule, MomentumAnnealing
from babysit.report.run_report import RunReport, run_report
from babysit.run import Run, run
from babysit.train.callbacks import DivergenceGuard
from babysit.train.checkpoint import Checkpointer, load_checkpoint
from babysit.train.history import History
from babysit.train.record import RunRecord, list_runs, load_run
from babysit.train.recorded import resume_run, start_run
from babysit.train.trainer import FitResult, Recipe, TrainState, evaluate, fit, seed_everything
from babysit.transfer import freeze_all_but_head, param_groups, replace_head
from babysit.tune.pruning import PRUNERS
from babysit.tune.results import TuneResult
from babysit.tune.search import STRATEGIES, TuneSettings
from babysit.tune.session import search
from babysit.tune.space import Param, choice, int_uniform, log_uniform, one_minus_log, uniform
from babysit.watch.probes import Watch, watch
from babysit.watch.schedule import PROBE_PRESETS

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "AUGMENTATIONS",
    "AVERAGING",
    "CHECKS",
    "DATASETS",
    "DROPOUTS",
    "INITS",
    "MODELS",
    "OPTIMIZERS",
    "PREPROCESSORS",
    "PROBE_PRESETS",
    "PRUNERS",
    "RULES",
    "SCHEDULES",
    "STRATEGIES",
    "Augment",
    "BabysitError",
    "CheckReport",
    "CheckSettings",
    "Checkpointer",
    "ConfigError",
    "DataConfig",
    "DataError",
    "Dataset",
    "DivergenceGuard",
    "DoctorResult",
    "Ensemble",
    "Finding",
    "FitResult",
    "History",
    "LRSchedule",
    "MaxNorm",
    "Maxout",
    "ModelConfig",
    "MomentumAnnealing",
    "Param",
    "ParameterAveraging",
    "Recipe",
    "Run",
    "RunConfig",
    "RunRecord",
    "RunReport",
    "Snapshots",
    "Split",
    "Standardize",
    "TrainState",
    "TuneResult",
    "TuneSettings",
    "Watch",
    "WatchConfig",
    "apply_init",
    "batches",
    "build_config",
    "build_model",
    "build_optimizer",
    "check",
    "choice",
    "convnet",
    "diagnose",
    "doctor",
    "evaluate",
    "fit",
    "freeze_all_but_head",
    "int_uniform",
    "l1_penalty",
    "list_runs",
    "load_checkpoint",
    "load_dataset",
    "load_preprocessor",
    "load_run",
    "log_uniform",
    "make_activation",
    "max_norm_",
    "mlp",
    "one_minus_log",
    "param_groups",
    "prepare",
    "replace_head",
    "resume_run",
    "run",
    "run_report",
    "search",
    "seed_everything",
    "select_classes",
    "start_run",
    "uniform",
    "watch",
    "with_augmentation",
]
