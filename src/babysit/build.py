"""From a `RunConfig` to objects: the data it loads, the model it builds, and a trained run (what the CLI, the tuner and the workflows share)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from babysit.config import DataConfig, ModelConfig, RunConfig
from babysit.data.augment import AUGMENTATIONS, with_augmentation
from babysit.data.datasets import DATASETS, Dataset, load_dataset
from babysit.data.preprocess import PREPROCESSORS, prepare
from babysit.nn.models import MODELS, build_model
from babysit.registry import accepted_options, section_options
from babysit.train.trainer import FitResult, fit, seed_everything


def load_data(cfg: DataConfig) -> Dataset:
    """Load the configured data set, fit its preprocessing on the training split, attach its augmentation."""
    default = DataConfig()
    loader = section_options(
        DATASETS.get(cfg.name), {"label_column": cfg.label_column}, section="data",
        defaults={"label_column": default.label_column}, what=f"data set '{cfg.name}'",
    )  # fmt: skip
    data = load_dataset(cfg.name, path=cfg.path, val_fraction=cfg.val_fraction, seed=cfg.seed, **loader)
    pre = section_options(
        PREPROCESSORS.get(cfg.preprocess), {"components": cfg.pca_components, "eps": cfg.whiten_eps}, section="data",
        defaults={"components": default.pca_components, "eps": default.whiten_eps}, what=f"preprocessing '{cfg.preprocess}'",
        keys={"components": "pca_components", "eps": "whiten_eps"},
    )  # fmt: skip
    data = prepare(data, cfg.preprocess, **pre)
    augment = {"padding": cfg.crop_padding, "strength": cfg.jitter, "degrees": cfg.affine_degrees, "stretch": cfg.affine_stretch}
    keys = {"padding": "crop_padding", "strength": "jitter", "degrees": "affine_degrees", "stretch": "affine_stretch"}
    defaults = {k: getattr(default, keys[k]) for k in augment}
    used: dict[str, Any] = {}
    for name in cfg.augment:  # each chosen transform takes its own options; the section holds them all
        used |= accepted_options(AUGMENTATIONS.get(name), augment)
    section_options(
        lambda: None, {k: v for k, v in augment.items() if k not in used}, section="data", defaults=defaults,
        what=f"augmentation {', '.join(cfg.augment) or 'none'}", keys=keys,
    )  # fmt: skip
    return with_augmentation(data, cfg.augment, **used)


def model_from_config(cfg: ModelConfig, data: Dataset, seed: int = 0) -> nn.Module:
    """Build the configured model for `data`'s input shape and classes, seeded for reproducible init."""
    seed_everything(seed)
    options = {k: v for k, v in asdict(cfg).items() if k != "name"}
    defaults = asdict(ModelConfig())
    used = section_options(MODELS.get(cfg.name), options, section="model", defaults=defaults, what=f"model '{cfg.name}'")
    return build_model(cfg.name, data.input_shape, data.num_classes, **used)


@dataclass
class Run:
    """A finished run: its config, data, trained model and result (and its record folder, if recorded)."""

    config: RunConfig
    data: Dataset
    model: nn.Module
    result: FitResult
    record: Path | None = None


def run(
    cfg: RunConfig,
    *,
    callbacks: Sequence[object] = (),
    progress: bool = True,
    data: Dataset | None = None,
    resume_from: dict[str, Any] | None = None,
) -> Run:
    """Load data, build the model and train it as `cfg` says (continuing `resume_from`, a checkpoint, if given)."""
    data = data if data is not None else load_data(cfg.data)
    model = model_from_config(cfg.model, data, seed=cfg.train.seed)
    result = fit(model, data, cfg.train, callbacks=callbacks, progress=progress, resume_from=resume_from)
    return Run(cfg, data, model, result)
