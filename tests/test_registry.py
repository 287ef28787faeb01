"""No public function silently ignores an option: every registry entry is given an unknown one."""

import warnings

import pytest
import torch
from torch import nn

import babysit as bs
from babysit.blocks import REGISTRIES
from babysit.data.augment import with_augmentation
from babysit.errors import ConfigError
from babysit.nn.activations import make_activation
from babysit.nn.init import apply_init
from babysit.optim.optimizers import build_optimizer

BOGUS = {"bogus_option": 1}


def _digits():
    return bs.prepare(bs.load_dataset("digits"))


# How each registry's entries reach a user, called with one option no entry takes.
STRICT = {
    "activation": lambda name: make_activation(name, **BOGUS),
    "model": lambda name: bs.build_model(name, (1, 8, 8), 10, **BOGUS),
    "optimizer": lambda name: build_optimizer(name, [torch.zeros(2, requires_grad=True)], 0.1, **BOGUS),
    "preprocessing": lambda name: bs.prepare(bs.load_dataset("spiral"), name, **BOGUS),
    "augmentation": lambda name: with_augmentation(bs.load_dataset("digits"), [name], **BOGUS),
    "data set": lambda name: bs.load_dataset(name, **BOGUS),
}
# Registries whose entries take no option from a user, and why.
NO_USER_OPTIONS = {
    "init": "apply_init has one option, std, refused for schemes that derive it (tested below)",
    "dropout": "built by mlp/convnet from model.dropout and the layer's dims; no user options",
    "schedule": "configured through Recipe's keys (period, gamma, decay_rate), which warn when unused (tested below)",
    "averaging": "configured through Recipe's ema_decay, which warns when unused (tested below)",
    "probe preset": "a preset is a name; watch(...) has a fixed signature that Python itself checks",
    "check": "checks take their budgets from CheckSettings, a dataclass that refuses unknown fields",
    "diagnosis rule": "a rule reads the run only; diagnose(record, rules=...) takes names",
    "search strategy": "strategies take no options; search settings go through SearchSettings",
    "pruner": "pruners take no options; they are picked by name in SearchSettings",
}


def test_every_registry_is_covered():
    assert set(REGISTRIES) == set(STRICT) | set(NO_USER_OPTIONS)


@pytest.mark.parametrize("kind,name", [(k, n) for k in STRICT for n in REGISTRIES[k].names()])
def test_an_unknown_option_is_refused(kind, name):
    with pytest.raises(ConfigError, match="has no option 'bogus_option'"):
        STRICT[kind](name)


def test_a_near_miss_gets_a_did_you_mean():
    with pytest.raises(ConfigError, match="no option 'component'.*did you mean 'components'"):
        bs.prepare(_digits(), "pca_whiten", component=0.5)
    with pytest.raises(ConfigError, match="model 'mlp' has no option 'kernel_size'"):
        bs.build_model("mlp", (64,), 10, kernel_size=3)
    with pytest.raises(ConfigError, match="'leaky_relu' has no option 'slop'.*did you mean 'slope'"):
        make_activation("leaky_relu", slop=0.1)


def test_init_std_is_refused_where_it_would_be_ignored():
    for name in REGISTRIES["init"].names():
        if name in ("small", "normal"):
            apply_init(nn.Linear(3, 3), name, std=0.1)
        else:
            with pytest.raises(ConfigError, match="only 'small' and 'normal' take init_std"):
                apply_init(nn.Linear(3, 3), name, std=0.1)


def test_recipe_refuses_l2_the_optimiser_would_drop():
    with pytest.raises(ConfigError, match="'lbfgs' takes no weight_decay.*without L2"):
        bs.Recipe(optimizer="lbfgs", weight_decay=1e-2)
    assert bs.Recipe(optimizer="lbfgs").optimizer_options() == {}
    assert bs.Recipe(optimizer="adam", weight_decay=1e-2).optimizer_options()["weight_decay"] == 1e-2


@pytest.mark.parametrize(
    "kwargs,line",
    [
        ({"optimizer": "adam", "momentum": 0.5}, "optimizer 'adam' does not use train.momentum=0.5"),
        ({"optimizer": "sgd", "beta1": 0.8, "rho": 0.9}, "optimizer 'sgd' does not use train.beta1=0.8, train.rho=0.9"),
        ({"schedule": "exponential", "gamma": 0.3}, "schedule 'exponential' does not use train.gamma=0.3"),
        ({"averaging": "polyak", "ema_decay": 0.5}, "averaging 'polyak' does not use train.ema_decay=0.5"),
    ],
)
def test_config_keys_the_chosen_blocks_do_not_use_are_named_in_one_line(kwargs, line):
    with pytest.warns(UserWarning) as caught:
        bs.Recipe(**kwargs)
    assert [str(w.message).split(";")[0] for w in caught] == [line]


def test_keys_at_their_defaults_are_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bs.Recipe(optimizer="adam")
        bs.Recipe(optimizer="sgd", schedule="step", gamma=0.3)
        from babysit.build import load_data
        from babysit.config import DataConfig

        load_data(DataConfig(name="digits", augment=("crop",), crop_padding=2))
    with pytest.warns(UserWarning, match=r"augmentation flip does not use data.crop_padding=2"):
        load_data(DataConfig(name="digits", augment=("flip",), crop_padding=2))
    with pytest.warns(UserWarning, match=r"preprocessing 'standardize' does not use data.pca_components=5"):
        load_data(DataConfig(name="digits", pca_components=5))
