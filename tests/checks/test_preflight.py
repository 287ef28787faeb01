import json

import pytest
import torch
from rich.console import Console
from torch import nn

import babysit as bs
from babysit.checks.base import CHECKS
from babysit.checks.preflight import PIPELINE

from .conftest import FAST


def small(digits, **kw):
    bs.train.seed_everything(0)
    return bs.blocks.mlp(digits.input_shape, digits.num_classes, hidden=(32,), **kw)


def test_the_pipeline_runs_every_registered_check_once():
    assert sorted(PIPELINE) == sorted(CHECKS.names())
    assert all(e.description for e in CHECKS.entries())


@pytest.fixture(scope="module")
def report(digits):
    return bs.check(small(digits), digits, bs.Recipe(device="cpu"), settings=FAST, progress=False)


def test_a_healthy_model_passes_with_numbers_for_every_check(report):
    assert [r.name for r in report.results] == list(PIPELINE)
    assert report.status == "pass" and report.findings == []
    assert {r.status for r in report.results} == {"pass", "skip"}
    assert report.result("initial_loss").evidence["expected"] == pytest.approx(2.302585, abs=1e-6)
    assert report.suggested_lr == report.result("lr_range").evidence["suggested"] > 0
    assert all(r.seconds >= 0 for r in report.results)


def test_the_report_is_strict_json_and_readable(report):
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["status"] == "pass" and [c["name"] for c in d["checks"]] == list(PIPELINE)
    assert "CheckReport(pass" in repr(report)
    console = Console(record=True, width=160)
    report.print(console)
    text = console.export_text()
    assert all(name in text for name in PIPELINE) and "ln(10) = 2.303" in text
    with pytest.raises(KeyError, match="no check 'nope'"):
        report.result("nope")


def test_check_leaves_the_model_untouched(digits):
    net = small(digits, batchnorm=True, dropout=0.3).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    bs.check(net, digits, bs.Recipe(device="cpu"), settings=FAST, progress=False)
    assert not net.training and all(not m._forward_hooks for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_only_runs_the_named_checks_in_pipeline_order(digits):
    r = bs.check(small(digits), digits, bs.Recipe(device="cpu"), only=["initial_loss", "data_leak"], progress=False)
    assert [x.name for x in r.results] == ["data_leak", "initial_loss"] and r.suggested_lr is None
    with pytest.raises(bs.ConfigError, match="did you mean 'initial_loss'"):
        bs.check(small(digits), digits, only=["initial_los"], progress=False)


def test_bad_inputs_are_one_clear_error(digits):
    with pytest.raises(bs.ConfigError, match=r"returns shape \(2, 7\).*10 classes"):
        bs.check(bs.blocks.mlp(digits.input_shape, 7, hidden=(8,)), digits, progress=False)
    with pytest.raises(bs.DataError, match=r"fails on inputs shaped \(2, 1, 8, 8\)"):
        bs.check(nn.Linear(5, 10), digits, progress=False)
    with pytest.raises(bs.DataError, match="needs a babysit Dataset"):
        bs.check(small(digits), (digits.train.x, digits.train.y), progress=False)
    frozen = small(digits).requires_grad_(False)
    with pytest.raises(bs.ConfigError, match="no trainable parameters"):
        bs.check(frozen, digits, progress=False)


@pytest.mark.parametrize("kwargs, message", [({"sweep_steps": 0}, "sweep_steps must be at least 1"), ({"sweep_start": 1.0, "sweep_end": 0.1}, "0 < sweep_start < sweep_end")])
def test_check_settings_refuse_bad_budgets(kwargs, message):
    with pytest.raises(bs.ConfigError, match=message):
        bs.checks.CheckSettings(**kwargs)
