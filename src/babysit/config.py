"""Run configuration: composed dataclasses, TOML files and dotted overrides.

A config has three sections, each a dataclass of defaults:

    [data]   DataConfig   which data set, split and preprocessing
    [model]  ModelConfig  which network and its blocks
    [train]  Recipe       optimiser and training settings
    [watch]  WatchConfig  probes and divergence guard of a recorded run (`babysit train`)

Sources merge in order: defaults < TOML file < CLI flags < dotted overrides
(`--train.lr=3e-4`). Unknown keys are rejected with the nearest valid key;
values are type-checked against the dataclass fields.
"""

from __future__ import annotations

import math
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from babysit.data.augment import AUGMENTATIONS
from babysit.data.datasets import DATASETS
from babysit.data.preprocess import PREPROCESSORS
from babysit.errors import ConfigError, did_you_mean
from babysit.nn.activations import ACTIVATIONS
from babysit.nn.init import INITS
from babysit.nn.models import MODELS
from babysit.nn.regularize import DROPOUTS
from babysit.train.state import Recipe
from babysit.watch.schedule import PROBE_PRESETS


@dataclass
class DataConfig:
    """The `[data]` section: data set name, optional local path, validation split, preprocessing, augmentation.

    `label_column` names the label column of an `arrays` CSV file;
    `pca_components` (k, a variance fraction in (0, 1), or all when unset) and
    `whiten_eps` go to the PCA / whitening preprocessors; `augment` lists
    training-only batch augmentations (flip, crop, jitter, affine) with
    `crop_padding`, `jitter` (its strength) and `affine_degrees` / `affine_stretch`;
    `test_augment` averages the test predictions over fixed flips and crops of
    them (the lectures: random crops in training, fixed crops averaged at test).
    """

    name: str = "mnist1d"
    path: str | None = None
    val_fraction: float = 0.1
    seed: int = 0
    preprocess: str = "standardize"
    label_column: str = "label"
    pca_components: int | float | None = None
    whiten_eps: float = 1e-5
    augment: tuple[str, ...] = ()
    crop_padding: int = 4
    jitter: float = 0.4
    affine_degrees: float = 10.0
    affine_stretch: float = 0.1
    test_augment: bool = True

    def __post_init__(self) -> None:
        if self.name not in DATASETS and (Path(self.name).suffix or "/" in self.name):
            raise ConfigError(
                f"data set '{self.name}' is not a built-in name but looks like a file; your own data is read by the arrays data set: "
                f"--data FILE.npz / FILE.csv, or --data arrays --data.path={self.name} (data.name = 'arrays' and data.path in a config)"
            )
        DATASETS.get(self.name)
        PREPROCESSORS.get(self.preprocess)
        for name in self.augment:
            AUGMENTATIONS.get(name)
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")


# The most hidden layers a built-in model is built with: the lectures' deepest demo has 10, a
# ResNet-152 152; 20,000 would take minutes to build and probe before its first step.
MAX_LAYERS = 1000


@dataclass
class ModelConfig:
    """The `[model]` section: the union of the built-in models' options (each takes its own).

    `script` is the Python file (`path.py` or `path.py:function`) of the model
    named "script": your own network (contract in `babysit.nn.script`).
    `depth`, `pool` and `downsample` shape the convnet and resnet (layers per
    stage, "flatten"/"gap" head, "stride"/"fmp"); `norm` ("bn"/"ln") and
    `drop_path` (stochastic depth) are the resnet's; `dropconnect` the mlp's.
    """

    name: str = "convnet"
    hidden: tuple[int, ...] = (100, 100)
    channels: tuple[int, ...] = (32, 32, 32)
    kernel_size: int = 3
    activation: str = "relu"
    init: str = "he"
    bias: float = 0.0
    batchnorm: bool = False
    dropout: float = 0.0
    slope: float = 0.01
    alpha: float = 1.0
    pieces: int = 2
    init_std: float | None = None
    dropout_kind: str = "inverted"
    script: str | None = None
    depth: int = 1
    pool: str = "flatten"
    downsample: str = "stride"
    norm: str = "bn"
    drop_path: float = 0.0
    dropconnect: float = 0.0

    def __post_init__(self) -> None:
        MODELS.get(self.name)
        DROPOUTS.get(self.dropout_kind)
        ACTIVATIONS.get(self.activation)  # named here, so a tune choice of an unknown one is refused before any trial
        INITS.get(self.init)
        if self.script is not None and self.name != "script":
            raise ConfigError(f"model.script is read by model 'script' only, but model.name is '{self.name}'; set model.name = 'script' (--model script)")
        if any(h < 1 for h in (*self.hidden, *self.channels)):
            raise ConfigError("model.hidden and model.channels must be positive sizes")
        layers = max(len(self.hidden), len(self.channels) * self.depth)
        if layers > MAX_LAYERS:
            raise ConfigError(
                f"the model would have {layers:,} hidden layers (model.hidden has {len(self.hidden):,} entries, "
                f"model.channels {len(self.channels):,} x model.depth {self.depth:,}); babysit builds at most {MAX_LAYERS:,}: use fewer"
            )
        for key in ("kernel_size", "depth", "pieces"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be at least 1, got {getattr(self, key)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class WatchConfig:
    """The `[watch]` section: how `babysit train` watches a run (see docs/run-record.md).

    Args:
        probes: probe preset, 'off', 'light' or 'full' (`PROBE_PRESETS`).
        divergence_factor: stop as "diverged" once the loss exceeds this multiple of
            the initial loss, or is NaN/inf (the lectures' rule is 3x).
        tensorboard: also write TensorBoard event files to RUN_DIR/tensorboard while the run
            trains: metrics, probes, and each finding as it fires (needs the tensorboard extra).
    """

    probes: str = "light"
    divergence_factor: float = 3.0
    tensorboard: bool = False

    def __post_init__(self) -> None:
        PROBE_PRESETS.get(self.probes)
        if not self.divergence_factor > 1.0:
            raise ConfigError(f"watch.divergence_factor must be > 1 (the lectures use 3), got {self.divergence_factor}")


@dataclass
class RunConfig:
    """A whole run: data, model, training recipe and how it is watched."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: Recipe = field(default_factory=Recipe)
    watch: WatchConfig = field(default_factory=WatchConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (TOML/JSON-ready; None values dropped since TOML has no null)."""
        out = asdict(self)
        return {s: {k: (list(v) if isinstance(v, tuple) else v) for k, v in sec.items() if v is not None} for s, sec in out.items()}


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": Recipe, "watch": WatchConfig}

# Names other tools use for our keys; spelling distance alone would not find them.
SYNONYMS = {
    "learning_rate": "lr",
    "wd": "weight_decay",
    "l2": "weight_decay",
    "num_epochs": "epochs",
    "n_epochs": "epochs",
    "batch": "batch_size",
    "bs": "batch_size",
    "optim": "optimizer",
    "opt": "optimizer",
    "act": "activation",
    "dataset": "name",
    "model": "name",
}


def _suggest_key(section: str, key: str, keys: list[str]) -> str:
    if SYNONYMS.get(key) in keys:
        return f" (did you mean '{section}.{SYNONYMS[key]}'?)"
    hint = did_you_mean(key, keys)
    return hint.replace("'", f"'{section}.", 1) if hint else ""


def valid_keys() -> list[str]:
    """Every `section.key` a config may set."""
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)]


# The deepest nesting of arrays and inline tables a config may have: no key takes more than a
# list of numbers, and Python's TOML parser recurses once per level (5,000 levels overflow it).
MAX_NESTING = 32
# A config is a few hundred bytes; past this it is not a config file (a data file passed by mistake).
MAX_CONFIG_BYTES = 10 * 2**20


def nesting_depth(text: str) -> int:
    """The deepest nesting of [ ] and { } in TOML `text`, outside strings and comments (one linear pass)."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        if c in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n and text[j : j + len(quote)] != quote:
                j += 2 if c == '"' and text[j] == "\\" else 1  # a basic string's escape skips the next character
            i = j + len(quote)
            continue
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """Parse TOML `text` (`where` names it in errors): a leading byte-order mark is skipped, nesting deeper than `MAX_NESTING` refused."""
    text = text.removeprefix("\ufeff")  # Windows editors save UTF-8 with a BOM; TOML itself has none
    depth = nesting_depth(text)
    if depth > MAX_NESTING:
        raise ConfigError(f"{where} nests arrays or tables {depth:,} levels deep; babysit reads at most {MAX_NESTING} (a config needs 2): check the brackets")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where} is not valid TOML: {e}") from None
    except RecursionError:  # nesting_depth missed a form of nesting: still one line
        raise ConfigError(f"{where} nests too deeply to parse; babysit reads at most {MAX_NESTING} levels: check the brackets") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file; a missing, huge, non-UTF-8 or badly nested file or bad syntax is a ConfigError naming it."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file '{p}' is a folder, not a file; pass the path of a TOML file to --config")
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist; pass the path of a TOML file to --config")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file '{p}' is {p.stat().st_size / 2**20:.0f} MiB; a config is a few lines of TOML (at most {MAX_CONFIG_BYTES // 2**20} MiB): check the path")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file '{p}' is not UTF-8 text (byte {e.start} cannot be decoded); save it as UTF-8") from None
    return parse_toml(text, f"config file '{p}'")


def parse_value(text: str) -> Any:
    """A TOML literal when `text` is one (3e-4, true, [64, 64], "x"), else the plain string.

    A bracketed list of bare words (`[flip, crop]`, as a shell user types it) is a
    list of those words, each read the same way.
    """
    if nesting_depth(text) > MAX_NESTING:
        raise ConfigError(f"value {text[:40]!r}... nests arrays or tables {nesting_depth(text):,} levels deep; babysit reads at most {MAX_NESTING}")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        pass
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]") and "[" not in inner[1:-1] and "]" not in inner[1:-1]:
        return [parse_value(item.strip()) for item in inner[1:-1].split(",") if item.strip()]
    return text


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Turn `--section.key=value` / `--section.key value` arguments into a nested dict."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise ConfigError(f"unexpected argument '{arg}'; overrides look like --train.lr=3e-4 (see --help)")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise ConfigError(f"override --{key} needs a value, e.g. --{key}=VALUE")
            value = args[i + 1]
            i += 1
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = parse_value(value)
        i += 1
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Nested dict merge; `update` wins."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a field's type hint, converting the harmless cases (int -> float, list -> tuple)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(value, opt, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, key) for v in value)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # No setting means anything at NaN or infinity; accepting one trains garbage silently.
            if not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number, got {value}")
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a new field type needs a case here
        return value
    expected = {float: "a number", int: "a whole number", bool: "true or false", str: "a string"}[hint]
    shown = value if not isinstance(value, float) or math.isfinite(value) else str(value)
    raise ConfigError(f"{key} must be {expected}, got {shown!r}")


# The model family each built-in data set's inputs call for when model.name is not given:
# signals and images get a convnet; flat features (spiral, CSV arrays) an mlp.
DATA_MODEL = {"mnist1d": "convnet", "digits": "convnet", "cifar10": "convnet"}

# Per data set and model, the defaults of keys a config leaves unset. MNIST-1D's convnet:
# the lectures' recipe with the deeper net (docs/lectures.md): a BN convnet 64-128-128 with
# a stride-1 conv after each stride-2 one (depth 2), +-3 shift augmentation, AdamW with
# decoupled weight decay, one one-cycle schedule over the run, label smoothing 0.1 and an
# EMA of the weights. 25 epochs (about a minute on one CPU thread) reach about 98% test
# accuracy, against the MNIST-1D paper's CNN at 94% (tests/test_config.py); longer runs,
# as `babysit auto` makes them, go further. `lr` and `weight_decay` are AdamW's: a config
# that names another optimiser keeps neither (its scales differ).
PROFILES: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("mnist1d", "convnet"): {
        "data": {"augment": ["crop"], "crop_padding": 3},
        "model": {"channels": [64, 128, 128], "depth": 2, "batchnorm": True},
        "train": {"epochs": 25, "optimizer": "adamw", "schedule": "onecycle", "label_smoothing": 0.1, "averaging": "ema", "lr": 3e-3, "weight_decay": 0.05},
    },
    # The same recipe, not re-tuned, on the 8x8 digits: +-1 pixel of shift (an eighth of the
    # image, as +-3 is of MNIST-1D's 40 samples). 100 epochs (a few CPU-seconds): the EMA
    # needs a few hundred steps to leave the initial weights behind. Measured on one view, seeds 0-2:
    # 0.984 at 100 epochs, 0.992 at 400, against 0.972 for the plain Adam convnet at 400.
    ("digits", "convnet"): {
        "data": {"augment": ["crop"], "crop_padding": 1},
        "model": {"batchnorm": True},
        "train": {"epochs": 100, "optimizer": "adamw", "schedule": "onecycle", "label_smoothing": 0.1, "averaging": "ema", "lr": 3e-3, "weight_decay": 0.05},
    },
}
# MNIST-1D's MLP: the convnet's recipe on a BN MLP 512-512 with dropout 0.2 (the bench's MLP family,
# bench/bench_auto.py): ±3 shift, AdamW, one-cycle over 25 epochs, label smoothing, EMA. The plain
# Adam MLP's 10 epochs gave 43.6% (`babysit train --data mnist1d --model mlp`), under the paper's MLP at 68%.
PROFILES[("mnist1d", "mlp")] = {
    "data": {"augment": ["crop"], "crop_padding": 3},
    "model": {"hidden": [512, 512], "batchnorm": True, "dropout": 0.2},
    "train": {"epochs": 25, "optimizer": "adamw", "schedule": "onecycle", "label_smoothing": 0.1, "averaging": "ema", "lr": 3e-3, "weight_decay": 0.05},
}
# A user's own arrays with an MLP (a table of flat features, as a rule): the tabular recipe: standardised
# inputs (data.preprocess's default), a BN MLP with dropout 0.2, AdamW with decoupled weight decay 0.05
# and one cosine decay over 100 epochs. Measured on scikit-learn's breast-cancer table (seeds 0-2): 0.974
# test accuracy against 0.950 for the plain Adam MLP's 10 epochs (a standardised logistic regression:
# 0.991). `babysit auto` sets the length from its CPU budget (a final run that diverges late is retrained at a lower rate).
PROFILES[("arrays", "mlp")] = {
    "model": {"batchnorm": True, "dropout": 0.2},
    "train": {"epochs": 100, "optimizer": "adamw", "schedule": "cosine", "lr": 3e-3, "weight_decay": 0.05},
}
OPTIMIZER_KEYS = ("lr", "weight_decay")  # a profile's keys that belong to its optimiser


def with_data_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with the model family that its data calls for and that pair's `PROFILES` defaults, where `raw` leaves them unset."""
    data = raw.get("data", {}) if isinstance(raw.get("data"), dict) else {}
    model = raw.get("model", {}) if isinstance(raw.get("model"), dict) else {}
    data_name = data.get("name", DataConfig.name)
    model_name = model.get("name") or DATA_MODEL.get(data_name, "mlp")
    defaults = {s: dict(v) for s, v in PROFILES.get((data_name, model_name), {}).items()}
    train = raw.get("train", {}) if isinstance(raw.get("train"), dict) else {}
    profile_train = defaults.get("train", {})
    if train.get("optimizer", profile_train.get("optimizer")) != profile_train.get("optimizer"):
        for key in OPTIMIZER_KEYS:
            profile_train.pop(key, None)
    return merge(merge(defaults, {"model": {"name": model_name}}), raw)


def without_profile(cfg: RunConfig) -> tuple[RunConfig, list[str]]:
    """`cfg` with the keys its data set's `PROFILES` entry filled in set back to the section defaults, and their names.

    A profile is a recipe tuned on its data set (the MNIST-1D convnet's one-cycle schedule,
    label smoothing, EMA, shift augmentation); on other data (a user's `Dataset` passed
    beside a config whose data name was left at its default) it is not the user's choice.
    A key whose value differs from the profile's was set by the user and is kept.
    """
    profile = PROFILES.get((cfg.data.name, cfg.model.name))
    if not profile:
        return cfg, []
    plain = {s: dict(v) for s, v in RunConfig().to_dict().items()}
    current = cfg.to_dict()
    removed = []
    for section, values in profile.items():
        for key, value in values.items():
            now = current[section].get(key)
            if (list(now) if isinstance(now, tuple) else now) == value and plain[section].get(key) != value:
                removed.append(f"{section}.{key}")
                if key in plain[section]:
                    current[section][key] = plain[section][key]
                else:
                    current[section].pop(key, None)
    sections = {section: build_section(section, cls, current.get(section, {})) for section, cls in SECTIONS.items()}
    return RunConfig(**sections), removed


def check_sections(raw: dict[str, Any]) -> None:
    """Refuse a top-level name that is not a section, or a section that is not a table of keys.

    Called on a config file before flags merge into it, so `train = 3` in the file is
    named even when a `--train.x=` flag would replace it.
    """
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section '{section}'{did_you_mean(section, SECTIONS)}; sections are {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"config section '{section}' must be a table of keys, e.g. [{section}]")


def build_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a nested dict (from TOML and overrides) into a `RunConfig`, filling data-dependent defaults (`with_data_defaults`)."""
    sections = {}
    check_sections(raw)
    raw = with_data_defaults(raw)
    for section, cls in SECTIONS.items():
        sections[section] = build_section(section, cls, raw.get(section, {}))
    return RunConfig(**sections)


def build_section(section: str, cls: type, values: dict[str, Any]) -> Any:
    """Validate one table of keys into the dataclass `cls` (unknown keys and wrong types are ConfigErrors)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"unknown config key '{section}.{key}'{_suggest_key(section, key, list(hints))}")
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    return cls(**kwargs)
