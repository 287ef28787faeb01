"""The default search space: lr 30x below to 3x above the range test's proposal, weight decay log-uniform."""

import math

import babysit as bs
from babysit.build import load_data
from babysit.tune.defaults import default_space


def test_the_lr_range_is_centred_on_the_proposal_in_log_space():
    cfg = bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp"}})
    found = default_space(cfg, proposal=3e-3)
    lr = found.space["train.lr"]
    assert found.source == "range test" and lr.logarithmic
    low, high = lr.low, lr.high
    assert math.isclose(low, 1e-4) and math.isclose(high, 9e-3)
    wd = found.space["train.weight_decay"]
    assert (wd.low, wd.high) == (1e-6, 1e-2)
    assert "model.dropout" not in found.space and "model.dropout" in default_space(cfg, proposal=3e-3, dropout=True).space


def test_without_a_proposal_the_centre_is_the_optimisers_default():
    cfg = bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp"}, "train": {"optimizer": "sgd"}})
    found = default_space(cfg)
    assert found.source == "optimiser default" and math.isclose(found.centre, 0.1)


def test_with_data_the_range_test_runs_and_its_proposal_is_the_centre():
    cfg = bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [16]}})
    found = default_space(cfg, load_data(cfg.data))
    assert found.source == "range test" and 1e-5 < found.centre < 1.0


def test_adamw_searches_its_decoupled_lambda_around_torchs_default():
    # AdamW decays by lr * lambda per step: the L2 band 1e-6..1e-2 would barely decay at all.
    cfg = bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp"}, "train": {"optimizer": "adamw"}})
    wd = default_space(cfg, proposal=3e-3).space["train.weight_decay"]
    assert wd.logarithmic and (wd.low, wd.high) == (1e-3, 1e-1)
