"""`babysit blocks`: every building block, by registry, with a one-line description each."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from babysit.cli.app import app, out, user_errors
from babysit.data.augment import AUGMENTATIONS
from babysit.data.datasets import DATASETS
from babysit.data.preprocess import PREPROCESSORS
from babysit.errors import ConfigError, did_you_mean
from babysit.nn.activations import ACTIVATIONS
from babysit.nn.init import INITS
from babysit.nn.models import MODELS
from babysit.nn.regularize import DROPOUTS
from babysit.optim.averaging import AVERAGING
from babysit.optim.optimizers import OPTIMIZERS
from babysit.optim.schedules import SCHEDULES
from babysit.registry import Registry
from babysit.watch.schedule import PROBE_PRESETS

# Each registry with the config key that selects one of its entries.
BLOCKS: dict[str, tuple[Registry, str]] = {
    "data": (DATASETS, "data.name"),
    "preprocess": (PREPROCESSORS, "data.preprocess"),
    "augment": (AUGMENTATIONS, "data.augment"),
    "model": (MODELS, "model.name"),
    "activation": (ACTIVATIONS, "model.activation"),
    "init": (INITS, "model.init"),
    "dropout": (DROPOUTS, "model.dropout_kind"),
    "optimizer": (OPTIMIZERS, "train.optimizer"),
    "schedule": (SCHEDULES, "train.schedule"),
    "averaging": (AVERAGING, "train.averaging"),
    "probes": (PROBE_PRESETS, "watch.probes"),
}


@app.command()
@user_errors
def blocks(kind: Optional[str] = typer.Argument(None, help="Show one family only, e.g. 'optimizer'.")) -> None:
    """List every building block (activations, inits, optimisers, ...) with its config key and a one-line description."""
    if kind is not None and kind not in BLOCKS:
        raise ConfigError(f"unknown block family '{kind}'{did_you_mean(kind, BLOCKS)}; choose one of: {', '.join(BLOCKS)}")
    table = Table()
    for column in ("family", "name", "description", "set with"):
        # In a narrow terminal only descriptions wrap, and never lose text to an ellipsis.
        table.add_column(column, no_wrap=column != "description", overflow="fold")
    for family, (registry, key) in BLOCKS.items():
        if kind is not None and family != kind:
            continue
        for entry in registry.entries():
            table.add_row(family, entry.name, escape(entry.description), f"--{key}={entry.name}")
        table.add_section()
    out.print(table)
