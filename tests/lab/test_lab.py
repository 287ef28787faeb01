"""Each lab experiment reproduces its lecture claim, with numbers (fast variants here, full ones slow)."""

import json

import pytest
from typer.testing import CliRunner

from babysit.cli import app
from babysit.errors import ConfigError
from babysit.lab import EXPERIMENTS, run_experiment

# Smaller-than-default options that keep each claim's mechanism intact, for the default suite.
FAST = {
    "activations": {"samples": 20_000},
    "init": {"units": 300, "samples": 400},
    "lr": {},  # the good rate needs its 15 epochs to overtake the high one
    "batchnorm": {"epochs": 5, "depth": 6},
    "optimizers": {},
    "search": {"repeats": 50, "real_per_axis": 3, "real_epochs": 1},
    "regularization": {"epochs": 30},
    "transfer": {},
}


def claims(result):
    return {c.text: c for c in result.claims}


def test_every_experiment_has_a_fast_variant():
    assert set(FAST) <= set(EXPERIMENTS.names())


@pytest.mark.parametrize("name", sorted(FAST))
def test_fast_variant_reproduces_every_claim(name, tmp_path):
    result = run_experiment(name, out_dir=tmp_path, **FAST[name])
    assert result.claims, "an experiment must check at least one lecture claim"
    failing = [c for c in result.claims if not c.holds]
    assert not failing, failing
    saved = json.loads((tmp_path / name / "results.json").read_text())
    assert saved["claims"] and all(c["holds"] for c in saved["claims"])
    assert (tmp_path / name / "index.html").stat().st_size > 1000
    assert list((tmp_path / name).glob("*.png"))


def test_init_numbers_match_the_lecture(tmp_path):
    result = run_experiment("init", out_dir=None, units=300, samples=400)
    std = {row[0]: row[1:] for row in result.tables[0].rows}  # without batch norm
    assert std["tanh, 0.01·N(0,1)"][-1] < 1e-3
    assert 0.2 <= std["tanh, Xavier"][-1] <= 1.0
    he = std["ReLU, He"]
    assert 0.5 <= he[-1] / he[0] <= 2.0


def test_activation_zero_gradient_fractions():
    result = run_experiment("activations", out_dir=None, samples=50_000)
    rows = {r[0]: r for r in result.tables[0].rows}
    assert 0.48 < rows["relu"][1] < 0.52  # half of N(0,1) is negative
    assert rows["tanh"][1] == 0.0 and rows["tanh"][2] < 0.01
    assert rows["leaky_relu"][1] == 0.0


def test_options_are_checked():
    with pytest.raises(ConfigError, match="has no option 'unit'.*did you mean 'units'"):
        run_experiment("init", out_dir=None, unit=3)
    with pytest.raises(ConfigError, match="whole number"):
        run_experiment("init", out_dir=None, layers=2.5)
    with pytest.raises(ConfigError, match="unknown lab experiment"):
        run_experiment("nope", out_dir=None)


def test_cli_lists_and_runs_experiments(tmp_path):
    runner = CliRunner()
    listing = runner.invoke(app, ["lab"])
    assert listing.exit_code == 0
    for name in EXPERIMENTS.names():
        assert name in listing.stdout
    ran = runner.invoke(app, ["lab", "activations", "--samples", "5000", "--out", str(tmp_path)])
    assert ran.exit_code == 0, ran.output
    assert "claims checked" in ran.stdout and "NO" not in ran.stdout
    assert (tmp_path / "activations" / "index.html").exists()
    bad = runner.invoke(app, ["lab", "activations", "--sample", "5"])
    assert bad.exit_code == 2 and "did you mean 'samples'" in bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS.names())
def test_full_experiment_reproduces_every_claim(name, tmp_path):
    result = run_experiment(name, out_dir=tmp_path)
    assert result.claims and result.all_hold, [c for c in result.claims if not c.holds]


def test_regularization_adds_the_noise_regularizers_each_against_its_plain_network():
    result = run_experiment("regularization", out_dir=None, **FAST["regularization"])
    mlp_rows = {r[0] for r in result.tables[0].rows}
    assert "DropConnect 0.5" in mlp_rows
    noise = result.tables[2]
    assert [r[1] for r in noise.rows] == ["stride-2 downsampling", "fractional max pooling", "none", "stochastic depth 0.5"]
    for plain, noisy in zip(noise.rows[::2], noise.rows[1::2]):
        assert plain[0] == noisy[0]  # the same network, with and without the noise
        assert noisy[3] > 0.3  # and the noisy one still learns (ten classes: chance is 0.1)
    stride, fmp = noise.rows[:2]
    assert fmp[4] < stride[4] - 0.1  # FMP narrows the gap (train accuracy in eval mode - val accuracy) by far
    held = claims(result)
    assert all(held[t].holds for t in held if "narrows" in t)
