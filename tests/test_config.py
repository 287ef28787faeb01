import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from babysit.config import build_config, load_toml, parse_overrides, parse_value, valid_keys
from babysit.errors import ConfigError


def test_overrides_parse_typed_values_in_both_forms():
    raw = parse_overrides(["--train.lr=3e-4", "--model.hidden", "[64, 32]", "--model.activation=tanh", "--data.path", "some/dir/"])
    assert raw == {"train": {"lr": 3e-4}, "model": {"hidden": [64, 32], "activation": "tanh"}, "data": {"path": "some/dir/"}}
    cfg = build_config(raw | {"data": {"name": "digits"}})
    assert cfg.train.lr == 3e-4 and cfg.model.hidden == (64, 32)


def test_unknown_keys_and_sections_suggest_the_nearest_valid_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.learning_rat'"):
        build_config({"train": {"learning_rat": 1.0}})
    with pytest.raises(ConfigError, match=r"did you mean 'train.epochs'"):
        build_config({"train": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"did you mean 'train'"):
        build_config({"trian": {}})


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"lr": "fast"}}, "train.lr must be a number"),
        ({"train": {"epochs": 2.5}}, "train.epochs must be a whole number"),
        ({"model": {"batchnorm": "yes"}}, "model.batchnorm must be true or false"),
        ({"model": {"hidden": ["a"]}}, "model.hidden must be a whole number"),
        ({"train": {"lr": -0.1}}, "train.lr must be a positive number"),
        ({"data": {"val_fraction": 0}}, "data.val_fraction"),
        ({"model": {"name": "resnt"}}, "unknown model 'resnt'"),
    ],
)
def test_wrong_values_name_the_key_and_expectation(raw, message):
    with pytest.raises(ConfigError) as info:
        build_config(raw)
    assert message in str(info.value)


def test_toml_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1")
    with pytest.raises(ConfigError, match="bad.toml' is not valid TOML"):
        load_toml(bad)


def test_config_round_trips_through_its_dict():
    cfg = build_config({"model": {"name": "mlp", "hidden": [10]}, "train": {"optimizer": "sgd"}})
    assert build_config(cfg.to_dict()) == cfg
    assert "train.lr" in valid_keys()


@given(st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False), st.booleans()))
def test_parse_value_reads_back_toml_scalars(value):
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    parsed = parse_value(text)
    assert parsed == value or (isinstance(value, float) and math.isclose(parsed, value))


@given(st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="/_-."), min_size=1))
def test_parse_value_never_fails_on_plain_words(text):
    parse_value(text)  # a bare word is either a TOML literal or kept as a string; never an exception


@pytest.mark.parametrize("data, model", [("mnist1d", "convnet"), ("digits", "convnet"), ("spiral", "mlp")])
def test_the_model_family_follows_the_data_when_not_given(data, model):
    assert build_config({"data": {"name": data}}).model.name == model
    assert build_config({"data": {"name": data}, "model": {"name": "mlp"}}).model.name == "mlp"


def test_the_mnist1d_convnet_profile_fills_only_unset_keys():
    cfg = build_config({"data": {"name": "mnist1d"}, "model": {"name": "convnet"}})
    t = cfg.train
    assert (t.epochs, t.optimizer, t.schedule, t.averaging, t.lr, t.weight_decay, t.label_smoothing) == (25, "adamw", "onecycle", "ema", 3e-3, 0.05, 0.1)
    assert cfg.data.augment == ("crop",) and cfg.model.channels == (64, 128, 128) and cfg.model.depth == 2 and cfg.model.batchnorm
    mine = build_config({"data": {"name": "mnist1d"}, "train": {"epochs": 3, "optimizer": "sgd"}, "model": {"channels": [8]}})
    # sgd keeps its own default lr and no decay: AdamW's decoupled lambda would be a huge L2 for it.
    assert (mine.train.epochs, mine.train.lr, mine.train.weight_decay, mine.model.channels) == (3, 0.1, 0.0, (8,))
    mlp = build_config({"data": {"name": "mnist1d"}, "model": {"name": "mlp"}})  # the MLP's own profile: the same recipe on a BN MLP
    assert (mlp.train.schedule, mlp.model.hidden, mlp.model.batchnorm, mlp.data.augment) == ("onecycle", (512, 512), True, ("crop",))
    assert build_config({"data": {"name": "spiral"}, "model": {"name": "mlp"}}).train.schedule == "none"


def test_the_digits_convnet_gets_the_same_recipe_with_a_one_pixel_shift():
    cfg = build_config({"data": {"name": "digits"}})
    t = cfg.train
    assert (cfg.model.name, cfg.model.batchnorm, cfg.data.augment, cfg.data.crop_padding) == ("convnet", True, ("crop",), 1)
    assert (t.epochs, t.optimizer, t.schedule, t.averaging, t.lr, t.weight_decay, t.label_smoothing) == (100, "adamw", "onecycle", "ema", 3e-3, 0.05, 0.1)
    assert build_config({"data": {"name": "digits"}, "model": {"name": "mlp"}}).train.optimizer == "adam"
