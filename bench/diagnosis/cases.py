"""The fault-injection cases of the diagnosis benchmark: healthy set-ups and the same set-ups with one fault each.

A *family* is (architecture, data set, optimiser, seed); each family has one
healthy case and `FAULTS_PER_FAMILY` broken ones, the faults assigned by a fixed
rotation over `FAULTS` and the severity alternating, so every fault meets every
architecture, data set and optimiser. `build(case)` returns what a user would
hand to `bs.doctor`: a config, their own module (None for babysit's built-in
mlp / convnet, which the config builds) and a prepared data set; a fault that
babysit refuses at the door (NaN inputs, a wrong number of class scores) is
raised there, as it would be for the user.

`ACCEPTED` is the explicit fault -> rule-id mapping the scores use: a case is
named top-1 when its first root cause is one of its fault's ids, and recalled
when any finding is. `REFUSED` holds the faults that count as detected when the
loader or the checks refuse the set-up with a message naming the problem.

The split: `half(case)` hashes (architecture, seed) once into "tuning" or
"reporting"; thresholds and rules are calibrated on the tuning half only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn

import babysit as bs
from babysit.data.datasets import Dataset, Split

import nets

ARCHITECTURES = ("mlp", "convnet", "sequential", "residual")
DATASETS = ("mnist1d", "digits", "spiral", "tabular")
# Per family k of an (architecture, data) pair: the optimiser and the seed.
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "adam")
# Healthy learning rates per optimiser (what a user would start from).
HEALTHY_LR = {"sgd": 0.1, "momentum": 0.02, "adam": 2e-3, "rmsprop": 1e-3}
EPOCHS = 4
BATCH = 64

# fault -> the rule ids that name it (the first root cause must be one of them for top-1).
ACCEPTED: dict[str, frozenset[str]] = {
    "lr_high": frozenset({"lr_too_high", "loss_explodes", "update_ratio_high"}),
    "lr_low": frozenset({"lr_too_low", "loss_flat", "update_ratio_low"}),
    "init_small": frozenset({"activations_vanish", "gradients_vanish"}),
    "init_large": frozenset({"activations_explode", "initial_loss_high", "gradients_explode", "saturation_at_init"}),
    "symmetric_init": frozenset({"init_symmetry", "regularization_no_effect"}),
    "dead_relu": frozenset({"dead_relu_at_init"}),
    "scores_activation": frozenset({"activation_on_scores"}),
    "feature_scale": frozenset({"data_scales"}),
    "feature_offset": frozenset({"data_not_centred"}),
    "leaky_preprocessing": frozenset({"data_leak"}),
    "labels_shuffled": frozenset({"input_independent"}),
    "weight_decay_huge": frozenset({"regularization_dominates"}),
    "dropout_huge": frozenset({"regularization_too_strong"}),
    "low_capacity": frozenset({"underfitting", "capacity_too_small"}),
    "overfitting": frozenset({"overfitting", "too_few_samples"}),
    "eval_mode": frozenset({"eval_mode"}),
    "nan_inputs": frozenset({"refused"}),
    "wrong_outputs": frozenset({"refused"}),
}
FAULTS = tuple(ACCEPTED)  # the rotation (the coverage faults below are added to ACCEPTED after it)
# Faults babysit refuses before any check: (error type name, a word the message must contain).
REFUSED = {"nan_inputs": ("DataError", "NaN"), "wrong_outputs": ("ConfigError", "classes")}
# Faults with an automatic fix `doctor(fix=True)` can apply and verify against the healthy twin.
REPAIRABLE = frozenset({
    "lr_high", "lr_low", "init_small", "init_large", "symmetric_init", "dead_relu", "feature_scale", "feature_offset",
    "leaky_preprocessing", "weight_decay_huge", "dropout_huge",
})  # fmt: skip
# low_capacity is repairable on babysit's own models only (your module's width is yours to change).
REPAIRABLE_BUILT_IN = frozenset({"low_capacity"})
FAULTS_PER_FAMILY = 3
# Two severities per fault (index 0 milder).
SEVERITY = {
    "lr_high": (300.0, 3000.0), "lr_low": (1e-4, 1e-5), "init_small": (1e-2, 1e-3), "init_large": (1.0, 3.0),
    "symmetric_init": (0.0, 0.05), "dead_relu": (-5.0, -10.0), "scores_activation": ("softmax", "sigmoid"),
    "feature_scale": (1e3, 1e4), "feature_offset": (20.0, 100.0), "leaky_preprocessing": ("all", "val+test"),
    "labels_shuffled": ("train", "train+val"), "weight_decay_huge": (1.0, 10.0), "dropout_huge": (0.9, 0.95),
    "low_capacity": (2, 1), "overfitting": (40, 20), "eval_mode": (0.3, 0.5), "nan_inputs": (0.01, 0.001),
    "wrong_outputs": (1, -1),
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One set-up: its family (architecture, data, optimiser, seed) and the injected fault ("healthy" for none)."""

    id: str
    fault: str
    severity: object
    arch: str
    data: str
    optimizer: str
    seed: int

    @property
    def family(self) -> str:
        """The healthy twin's id: the same set-up without the fault."""
        return f"{self.arch}-{self.data}-{self.optimizer}-s{self.seed}"

    @property
    def half(self) -> str:
        """'tuning' or 'reporting', from a hash of (architecture, seed), fixed once."""
        digest = hashlib.sha256(f"{self.arch}:{self.seed}".encode()).digest()
        return "tuning" if digest[0] % 2 == 0 else "reporting"


def pairs() -> list[tuple[str, str]]:
    """(architecture, data) pairs: the convnet needs inputs with a channel axis (MNIST-1D, digits)."""
    return [(a, d) for a in ARCHITECTURES for d in DATASETS if a != "convnet" or d in ("mnist1d", "digits")]


# Faults outside the rotation, each drawn once in each half (seed 2 of mlp and 3 of sequential are tuning, 1 and 0
# reporting): the set-ups that produce the declared kinds the rotation never does (a test checks every kind is
# produced by some case). Not scored for repair: most change the architecture, so no healthy family is their twin.
COVERAGE: dict[str, tuple[str, str, str, tuple[int, int], frozenset[str]]] = {
    # a tanh net at std-1.0 init: saturated at initialisation (docs/lectures.md §3)
    "tanh_init_large": ("mlp", "digits", "sgd", (2, 1), frozenset({"saturation_at_init", "activations_explode", "initial_loss_high", "gradients_vanish"})),
    # log of a linear layer's output: NaN scores from finite inputs
    "nan_forward": ("sequential", "digits", "adam", (3, 0), frozenset({"scores_not_finite"})),
    # a custom autograd ReLU whose backward is 10x too small (found with the opt-in gradient check)
    "wrong_backward": ("sequential", "digits", "adam", (3, 0), frozenset({"gradcheck_failed"})),
    # the first layer's weights 1000x below torch's default: vanishing signal, exploding relative gradient, dead ReLUs
    "first_layer_tiny": ("sequential", "digits", "sgd", (3, 0), frozenset({"activations_vanish", "gradients_explode", "dead_relu_at_init"})),
    # six ReLU layers at N(0, 0.07): a loss that sits flat for epochs, then drops (docs/lectures.md §7)
    "deep_small_init": ("mlp", "digits", "momentum", (2, 1), frozenset({"activations_vanish", "gradients_vanish", "flat_then_drop"})),
    # SGD with momentum at 1.0 (50x the healthy rate) on the tabular set: a loss that drops, then bounces on a plateau
    "lr_high_momentum": ("mlp", "tabular", "momentum", (2, 1), frozenset({"lr_too_high", "plateau", "update_ratio_high", "loss_explodes"})),
}
# Healthy set-ups outside the rotation: a model pretrained on the same data (its loss at init is below ln C: information).
HEALTHY_EXTRA = {"healthy_pretrained": ("sequential", "digits", "adam", (3, 0))}
ACCEPTED.update({fault: spec[4] for fault, spec in COVERAGE.items()})


def all_cases() -> list[Case]:
    """Every case, healthy ones first within each family, in a fixed order; then the coverage cases."""
    cases, turn = [], 0
    for arch, data in pairs():
        for k, opt in enumerate(OPTIMIZERS):
            family = dict(arch=arch, data=data, optimizer=opt, seed=k)
            cases.append(Case(f"{arch}-{data}-{opt}-s{k}-healthy", "healthy", None, **family))
            for j in range(FAULTS_PER_FAMILY):
                fault = FAULTS[(turn + j) % len(FAULTS)]
                sev = SEVERITY[fault][(turn // len(FAULTS) + j) % 2]
                cases.append(Case(f"{arch}-{data}-{opt}-s{k}-{fault}-{sev}", fault, sev, **family))
            turn += FAULTS_PER_FAMILY
    for fault, (arch, data, opt, seeds) in {**{k: v[:4] for k, v in COVERAGE.items()}, **HEALTHY_EXTRA}.items():
        for seed in seeds:
            cases.append(Case(f"{arch}-{data}-{opt}-s{seed}-{fault}", fault, None, arch, data, opt, seed))
    return cases


# ----------------------------------------------------------------------------- data


def _tabular(seed: int = 0, n: int = 1800, features: int = 12, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A tabular set: Gaussian features, labels from a fixed random two-layer teacher (learnable, not linear)."""
    rng = np.random.default_rng(1234 + seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    w1, w2 = rng.normal(size=(features, 16)), rng.normal(size=(16, classes))
    y = np.argmax(np.tanh(x @ w1) @ w2, axis=1)
    return x, y


@lru_cache(maxsize=None)
def raw_arrays(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, x_test, y_test) of a data set, subsampled so that a look takes seconds: at most 1500 + 300 samples."""
    if name == "tabular":
        x, y = _tabular()
        return x[:1500], y[:1500], x[1500:], y[1500:]
    d = bs.load_dataset(name)
    x = torch.cat([d.train.x, d.val.x]).numpy()
    y = torch.cat([d.train.y, d.val.y]).numpy()
    order = np.random.default_rng(0).permutation(len(x))[:1500]
    return x[order], y[order], d.test.x[:300].numpy(), d.test.y[:300].numpy()


def raw_data(name: str, seed: int = 0) -> Dataset:
    """The unprocessed data set: 30% of the training samples held out for validation (enough to judge accuracies)."""
    x, y, xt, yt = raw_arrays(name)
    return Dataset.from_arrays(x, y, x_test=xt, y_test=yt, val_fraction=0.3, seed=seed, name=name)


def _map_inputs(data: Dataset, fn) -> Dataset:
    from dataclasses import replace

    return replace(data, train=Split(fn(data.train.x), data.train.y), val=Split(fn(data.val.x), data.val.y), test=Split(fn(data.test.x), data.test.y))


def _data(case: Case) -> Dataset:
    from dataclasses import replace

    if case.fault == "nan_inputs":
        x, y, xt, yt = raw_arrays(case.data)
        x = x.copy()
        flat = x.reshape(len(x), -1)
        rng = np.random.default_rng(case.seed)
        flat[rng.random(flat.shape) < float(case.severity)] = np.nan
        return Dataset.from_arrays(x, y, x_test=xt, y_test=yt, val_fraction=0.3, seed=case.seed, name=case.data)  # refused here
    raw = raw_data(case.data, case.seed)
    if case.fault == "leaky_preprocessing":
        parts = [raw.train.x, raw.val.x, raw.test.x] if case.severity == "all" else [raw.val.x, raw.test.x]
        pool = torch.cat(parts)
        mean, std = pool.mean(0, keepdim=True), pool.std(0, keepdim=True).clamp_min(1e-8)
        return _map_inputs(raw, lambda x: (x - mean) / std)
    data = bs.prepare(raw, "standardize")
    if case.fault == "feature_scale":
        factor = float(case.severity)
        if data.train.x.ndim >= 3:  # one channel: the whole input on a scale of `factor`
            return _map_inputs(data, lambda x: x * factor)
        cols = torch.arange(data.train.x.shape[1]) % 2 == 0
        return _map_inputs(data, lambda x: torch.where(cols, x * factor, x))
    if case.fault == "feature_offset":
        return _map_inputs(data, lambda x: x + float(case.severity))
    if case.fault == "labels_shuffled":
        g = torch.Generator().manual_seed(case.seed)
        train = Split(data.train.x, data.train.y[torch.randperm(len(data.train.y), generator=g)])
        val = Split(data.val.x, data.val.y[torch.randperm(len(data.val.y), generator=g)]) if case.severity == "train+val" else data.val
        return replace(data, train=train, val=val)
    if case.fault == "overfitting":
        n = int(case.severity)
        return replace(data, train=Split(data.train.x[:n], data.train.y[:n]))
    return data


# ----------------------------------------------------------------------------- models


def _init_weights(model: nn.Module, fill) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            fill(m)


def _hidden_linear(model: nn.Module) -> list[nn.Module]:
    """Every affine layer but the last (the head)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    return layers[:-1]


def _own_model(case: Case, data: Dataset) -> nn.Module:
    shape, classes = data.input_shape, data.num_classes
    width = int(case.severity) if case.fault == "low_capacity" else 64
    dropout = float(case.severity) if case.fault == "dropout_huge" else 0.0
    if case.fault == "wrong_outputs":
        classes += int(case.severity)
    torch.manual_seed(case.seed)
    if case.arch == "sequential":
        return nets.sequential(shape, classes, width=width, dropout=dropout)
    return nets.ResidualMLP(shape, classes, width=width, norm="ln" if case.seed % 2 == 0 else "bn", dropout=dropout)


def _inject_model(case: Case, model: nn.Module) -> nn.Module:
    """The model faults on a module (your own, or a built-in one wrapped by the user)."""
    f, sev = case.fault, case.severity
    torch.manual_seed(case.seed)
    if f == "init_small" or f == "init_large":
        _init_weights(model, lambda m: (nn.init.normal_(m.weight, 0.0, float(sev)), nn.init.zeros_(m.bias) if m.bias is not None else None))
    elif f == "symmetric_init":
        _init_weights(model, lambda m: (nn.init.constant_(m.weight, float(sev)), nn.init.zeros_(m.bias) if m.bias is not None else None))
    elif f == "dead_relu":
        for m in _hidden_linear(model):
            nn.init.constant_(m.bias, float(sev))
    elif f == "scores_activation":
        return nn.Sequential(model, nn.Softmax(dim=1) if sev == "softmax" else nn.Sigmoid())
    elif f == "eval_mode":
        return nn.Sequential(nets.AlwaysDropout(float(sev)), model)
    return model


_BUILT_IN_CONFIG = {
    "init_small": lambda sev: {"init": "small", "init_std": float(sev)},
    "init_large": lambda sev: {"init": "normal", "init_std": float(sev)},
    "dead_relu": lambda sev: {"bias": float(sev)},
    "dropout_huge": lambda sev: {"dropout": float(sev)},
    "low_capacity": lambda sev: {"hidden": [int(sev)]},
}
# Faults a built-in model carries only as a module the user wrapped or built themselves.
_WRAPPED = ("scores_activation", "eval_mode", "wrong_outputs")


def _pretrained(data: Dataset, seed: int) -> nn.Module:
    """`nets.sequential` trained with Adam for 5 epochs on the training split: a model its user fine-tunes."""
    torch.manual_seed(seed)
    model = nets.sequential(data.input_shape, data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(5):
        for idx in torch.randperm(len(data.train.y)).split(BATCH):
            opt.zero_grad()
            nn.functional.cross_entropy(model(data.train.x[idx]), data.train.y[idx]).backward()
            opt.step()
    return model


def _build_coverage(case: Case, data: Dataset) -> tuple[dict, dict, nn.Module | None]:
    """(model config, train overrides, own module) of a coverage case (`COVERAGE`, `HEALTHY_EXTRA`)."""
    shape, classes, f = data.input_shape, data.num_classes, case.fault
    torch.manual_seed(case.seed)
    mlp: dict = {"name": "mlp", "hidden": [64, 64]}
    if f == "tanh_init_large":
        return {**mlp, "activation": "tanh", "init": "normal", "init_std": 1.0}, {}, None
    if f == "deep_small_init":
        return {**mlp, "hidden": [64] * 6, "init": "normal", "init_std": 0.07}, {"lr": 0.1, "epochs": 12}, None
    if f == "lr_high_momentum":
        return mlp, {"lr": 1.0, "epochs": 8}, None
    if f == "nan_forward":
        return mlp, {}, nets.LogNet(shape, classes)
    if f == "wrong_backward":
        return mlp, {}, nets.wrong_backward(shape, classes)
    if f == "first_layer_tiny":
        model = nets.sequential(shape, classes)
        with torch.no_grad():
            model[1].weight.mul_(1e-3)
        return mlp, {}, model
    if f == "healthy_pretrained":
        return mlp, {}, _pretrained(data, case.seed)
    raise ValueError(f"not a coverage case: {f}")


def build(case: Case) -> tuple[bs.RunConfig, nn.Module | None, Dataset]:
    """(config, your own module or None for the config's built-in model, prepared data) of a case, with its fault injected."""
    data = _data(case)
    if case.fault in COVERAGE or case.fault in HEALTHY_EXTRA:
        model_cfg, overrides, own = _build_coverage(case, data)
        train = {"optimizer": case.optimizer, "lr": HEALTHY_LR[case.optimizer], "epochs": EPOCHS, "batch_size": BATCH,
                 "seed": case.seed, "device": "cpu", **overrides}  # fmt: skip
        cfg = bs.build_config({"data": {"name": "arrays" if case.data == "tabular" else case.data}, "model": model_cfg, "train": train})
        return _pinned(cfg), own, data
    lr = HEALTHY_LR[case.optimizer]
    train = {"optimizer": case.optimizer, "lr": lr, "epochs": EPOCHS, "batch_size": BATCH, "seed": case.seed, "device": "cpu"}
    if case.fault == "lr_high":
        train["lr"] = lr * float(case.severity)
    elif case.fault == "lr_low":
        train["lr"] = lr * float(case.severity)
    elif case.fault == "weight_decay_huge":
        train["weight_decay"] = float(case.severity)
    elif case.fault == "overfitting":
        train["epochs"] = 40
    model_cfg: dict = {"name": "mlp", "hidden": [64, 64]} if case.arch != "convnet" else {"name": "convnet", "channels": [16, 16]}
    model: nn.Module | None = None
    if case.arch in ("mlp", "convnet"):
        if case.fault == "symmetric_init" and float(case.severity) == 0.0:
            model_cfg["init"] = "zeros"
        elif case.fault in _BUILT_IN_CONFIG:
            model_cfg.update(_BUILT_IN_CONFIG[case.fault](case.severity))
            if case.fault == "low_capacity" and case.arch == "convnet":
                model_cfg = {"name": "convnet", "channels": [int(case.severity)]}
            if case.fault == "dead_relu" and case.arch == "convnet":
                # batch norm follows each convolution and its layers carry no bias: the biases only exist without it
                model_cfg["batchnorm"] = False
        if case.fault in _WRAPPED or case.fault == "symmetric_init" and float(case.severity) != 0.0:
            classes = data.num_classes + (int(case.severity) if case.fault == "wrong_outputs" else 0)
            opts = {k: v for k, v in model_cfg.items() if k != "name"}
            torch.manual_seed(case.seed)
            model = _inject_model(case, bs.build_model(case.arch, data.input_shape, classes, **opts))
    else:
        model = _inject_model(case, _own_model(case, data))
    cfg = bs.build_config({"data": {"name": "arrays" if case.data == "tabular" else case.data}, "model": model_cfg, "train": train})
    return _pinned(cfg), model, data


# Profiles babysit gained after the benchmark's set-ups were fixed: each would change what a case trains (the
# MNIST-1D MLP's batch norm masks an init fault), so the cases keep the section defaults for their keys.
_LATER_PROFILES = (("mnist1d", "mlp"), ("arrays", "mlp"))


def _pinned(cfg: bs.RunConfig) -> bs.RunConfig:
    """`cfg` without the recipe of a profile added after the benchmark was defined (`_LATER_PROFILES`)."""
    from babysit.config import without_profile

    return without_profile(cfg)[0] if (cfg.data.name, cfg.model.name) in _LATER_PROFILES else cfg


def repairable(case: Case) -> bool:
    """Whether `doctor(fix=True)` has an automatic fix for this case's fault on this architecture."""
    return case.fault in REPAIRABLE or (case.fault in REPAIRABLE_BUILT_IN and case.arch in ("mlp", "convnet"))


def smoke_cases(n: int = 20) -> list[Case]:
    """A fixed subset of `n` cases for `make test`: spread over faults, architectures and data sets (every k-th case)."""
    cases = [c for c in all_cases() if c.data != "mnist1d" or c.arch != "convnet"]  # the slowest pair stays out of the smoke run
    step = max(1, len(cases) // n)
    return cases[::step][:n]

