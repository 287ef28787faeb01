"""From a `RunConfig` to objects: the data it loads, the model it builds, and a trained run (what the CLI, the tuner and the workflows share)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

import torch

from babysit.config import DataConfig, ModelConfig, RunConfig
from babysit.data.memory import available_memory
from babysit.data.augment import AUGMENTATIONS, with_augmentation
from babysit.data.datasets import DATASETS, Dataset, load_dataset
from babysit.data.preprocess import PREPROCESSORS, prepare
from babysit.nn.models import MODELS, build_model
from babysit.errors import BabysitError, ConfigError, ModelError
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
    return with_augmentation(data, cfg.augment, average_at_test=cfg.test_augment, **used)


# Bytes per parameter of training: fp32 weights, their gradients and an optimiser's two moments
# (Adam's; SGD keeps fewer, an average of the weights one more). Activations come on top, so a
# model refused here could never train.
BYTES_PER_PARAMETER = 16


def model_from_config(cfg: ModelConfig, data: Dataset, seed: int = 0, *, memory: int | None = None) -> nn.Module:
    """Build the configured model for `data`'s input shape and classes, seeded for reproducible init.

    Before any weight is allocated, the built-in models' sizes are checked against
    the data (a kernel larger than the input) and against `memory` bytes (default:
    what the system has available now): the model is built once on PyTorch's meta
    device, which allocates nothing, and refused with its numbers if training it
    (`BYTES_PER_PARAMETER` per parameter) would not fit. Its depth was bounded by
    the config (`config.MAX_LAYERS`).
    """
    options = {k: v for k, v in asdict(cfg).items() if k != "name"}
    defaults = asdict(ModelConfig())
    used = section_options(MODELS.get(cfg.name), options, section="model", defaults=defaults, what=f"model '{cfg.name}'")
    if cfg.name != "script":  # a user's script runs once, when it is really built
        _check_kernel(cfg, data.input_shape, used)
        limit = available_memory() if memory is None else memory
        # PyTorch's meta device costs seconds of CPU on first use: count exactly only when a rough bound is large.
        rough = _rough_parameters(cfg, data)
        if rough * BYTES_PER_PARAMETER > limit / 8:
            # A model that cannot be built on the meta device is judged by the rough bound: never built blind.
            _check_size(cfg.name, _meta_parameters(cfg.name, data, used) or rough, limit)
    seed_everything(seed)
    model = build_model(cfg.name, data.input_shape, data.num_classes, **used)
    check_outputs(model, data)
    return model


def check_outputs(model: nn.Module, data: Dataset) -> None:
    """Run two training inputs through `model` (eval mode, no gradient) and refuse scores not shaped (N, classes).

    A model with the wrong number of outputs, the wrong shape or a forward that
    raises gets one ModelError line before any training. Eval mode draws no
    random numbers and updates no statistics, so the run's numbers are unchanged.
    A tuple/list output is judged by its first element and a dict by its
    'output' key, as the model-script contract reads them.
    """
    x = data.train.x[:2]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scores = model(x.to(device))
    except BabysitError:
        raise
    except Exception as e:  # noqa: BLE001  (the user's forward: any error is one line naming it)
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(f"the model's forward pass fails on inputs shaped {tuple(x.shape)}: {type(e).__name__}: {text}; make it accept (N, *{data.input_shape})") from None
    finally:
        model.train(was_training)
    if isinstance(scores, (tuple, list)) and scores:
        scores = scores[0]
    elif isinstance(scores, dict) and "output" in scores:
        scores = scores["output"]
    want = (len(x), data.num_classes)
    if not isinstance(scores, torch.Tensor):
        raise ModelError(f"the model returns {type(scores).__name__}, not a tensor of class scores shaped (N, {data.num_classes})")
    if tuple(scores.shape) != want:
        if scores.ndim == 2 and scores.shape[0] == len(x):
            raise ModelError(f"the model returns {scores.shape[1]} class scores per sample but the data has {data.num_classes} classes; make its last layer output {data.num_classes}")
        raise ModelError(f"the model returns scores shaped {tuple(scores.shape)} for {len(x)} inputs; class scores must be (N, {data.num_classes})")


def _check_kernel(cfg: ModelConfig, input_shape: tuple[int, ...], used: dict[str, Any]) -> None:
    """Refuse a convolution kernel larger than every spatial size of the input (it would see mostly padding)."""
    if "kernel_size" not in used or len(input_shape) < 2:
        return
    spatial = input_shape[1:]
    if cfg.kernel_size > max(spatial):
        shown = "x".join(map(str, spatial))
        raise ConfigError(f"model.kernel_size={cfg.kernel_size} is larger than the input ({shown}); use at most {max(spatial)} (3 is usual)")


def _rough_parameters(cfg: ModelConfig, data: Dataset) -> int:
    """A generous bound on the parameter count from the config alone (widths, kernel, depth, maxout pieces)."""
    import math

    shape = data.input_shape
    conv = cfg.name in ("convnet", "resnet") and len(shape) >= 2
    widths = [int(shape[0]) if conv else math.prod(shape), *(cfg.channels if conv else cfg.hidden)]
    kernel = (cfg.kernel_size ** (len(shape) - 1) if conv else 1) * max(cfg.pieces, 1)
    # Each stage: its first layer (in x out), then depth - 1 more at its width (a resnet block holds two convs: x2).
    stages = [a * b + (cfg.depth - 1) * b * b if conv else a * b for a, b in zip(widths, widths[1:])]
    body = 2 * sum(stages) * kernel
    head = widths[-1] * (math.prod(shape[1:]) if conv else 1) * data.num_classes
    return body + head


def _meta_parameters(name: str, data: Dataset, used: dict[str, Any]) -> int:
    """The parameter count of the model built on the meta device (no memory); 0 when it cannot be built there."""
    try:
        with torch.device("meta"):
            sized = build_model(name, data.input_shape, data.num_classes, **used)
    except BabysitError:
        raise
    except Exception:  # noqa: BLE001  (a block that needs real tensors to build: the real build decides)
        return 0
    return sum(p.numel() for p in sized.parameters())


def _check_size(name: str, parameters: int, memory: int) -> None:
    need = parameters * BYTES_PER_PARAMETER
    if need > memory:
        raise ConfigError(
            f"model '{name}' has {parameters:,} parameters: training needs about {need / 2**30:.1f} GiB (fp32 weights, "
            f"gradients and two optimiser moments) but only {memory / 2**30:.1f} GiB of memory is available; "
            "make model.hidden / model.channels smaller"
        )


@dataclass
class Run:
    """A finished run: its config, data, trained model and result (and its record folder, if recorded)."""

    config: RunConfig
    data: Dataset
    model: nn.Module
    result: FitResult
    record: Path | None = None

    def _repr_html_(self) -> str:
        """In a Jupyter notebook: the run record's summary when recorded, else the fit result's."""
        from babysit.report.run_report import fit_html, run_html  # the report (matplotlib) loads only when a notebook asks

        return run_html(self.record) if self.record is not None else fit_html(self.result)


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
    if resume_from is not None:
        _check_same_model(model, resume_from)
    result = fit(model, data, cfg.train, callbacks=callbacks, progress=progress, resume_from=resume_from)
    return Run(cfg, data, model, result)


def _check_same_model(model: nn.Module, checkpoint: dict[str, Any]) -> None:
    """Refuse a checkpoint whose weights do not fit `model` (another architecture's), naming the first mismatch."""
    saved = checkpoint.get("model", {})
    now = model.state_dict()
    missing = [k for k in now if k not in saved]
    extra = [k for k in saved if k not in now]
    shapes = [k for k in now if k in saved and tuple(saved[k].shape) != tuple(now[k].shape)]
    if missing or extra or shapes:
        if shapes:
            k = shapes[0]
            what = f"'{k}' is {tuple(saved[k].shape)} in the checkpoint but {tuple(now[k].shape)} in the model"
        else:
            what = f"the checkpoint {'lacks' if missing else 'has extra'} weights {(missing or extra)[0]!r}"
        raise ModelError(f"the checkpoint does not match the configured model ({what}); it belongs to another architecture: start a new run")
