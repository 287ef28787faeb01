"""Every building block the lectures describe, and every registry that names them.

    import babysit as bs
    bs.blocks.ACTIVATIONS.names()          # ['sigmoid', 'tanh', 'relu', ...]
    layer = bs.blocks.Maxout(64, 32, pieces=2)
    for kind, registry in bs.blocks.REGISTRIES.items(): ...

A registry maps the names that the CLI, config files and tests use to factories;
`babysit blocks` lists them all with one line each.
"""

from __future__ import annotations

from babysit.checks.base import CHECKS
from babysit.data.augment import AUGMENTATIONS, Augment, with_augmentation
from babysit.data.datasets import DATASETS
from babysit.data.preprocess import PREPROCESSORS, Standardize, load_preprocessor
from babysit.diagnose.rules import RULES
from babysit.ensemble import Ensemble, Snapshots
from babysit.nn.activations import ACTIVATIONS, Maxout, make_activation
from babysit.nn.init import INITS, apply_init
from babysit.nn.models import MODELS, convnet, mlp, resnet
from babysit.nn.regularize import DROPOUTS, DropConnect, DropPath, FractionalMaxPool, MaxNorm, l1_penalty, max_norm_
from babysit.optim.averaging import AVERAGING, ParameterAveraging
from babysit.optim.optimizers import OPTIMIZERS, build_optimizer
from babysit.optim.schedules import SCHEDULES, LRSchedule, MomentumAnnealing
from babysit.registry import Registry
from babysit.transfer import freeze_all_but_head, param_groups, replace_head
from babysit.tune.pruning import PRUNERS
from babysit.tune.search import STRATEGIES
from babysit.watch.schedule import PROBE_PRESETS

REGISTRIES: dict[str, Registry] = {
    r.kind: r
    for r in (
        ACTIVATIONS, INITS, DROPOUTS, MODELS, OPTIMIZERS, SCHEDULES, AVERAGING, PREPROCESSORS,
        AUGMENTATIONS, DATASETS, PROBE_PRESETS, CHECKS, RULES, STRATEGIES, PRUNERS,
    )
}  # fmt: skip

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
    "REGISTRIES",
    "RULES",
    "SCHEDULES",
    "STRATEGIES",
    "Augment",
    "DropConnect",
    "DropPath",
    "Ensemble",
    "FractionalMaxPool",
    "LRSchedule",
    "MaxNorm",
    "Maxout",
    "MomentumAnnealing",
    "ParameterAveraging",
    "Snapshots",
    "Standardize",
    "apply_init",
    "build_optimizer",
    "convnet",
    "freeze_all_but_head",
    "l1_penalty",
    "load_preprocessor",
    "make_activation",
    "max_norm_",
    "mlp",
    "resnet",
    "param_groups",
    "replace_head",
    "with_augmentation",
]
