"""Search ranges: the lectures' sampling scales, the spec parser, and Optuna's view of them."""

import math

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from babysit.errors import ConfigError
from babysit.tune.space import Param, choice, int_uniform, log_uniform, one_minus_log, parse_param, parse_space, uniform

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0.0, max_value=0.999999, allow_nan=False)


def _ordered(a, b):
    lo, hi = sorted((a, b))
    return lo, hi


@st.composite
def params(draw):
    kind = draw(st.sampled_from(["log_uniform", "one_minus_log", "uniform", "int_uniform", "choice"]))
    if kind == "choice":
        items = st.one_of(st.text(max_size=8), st.integers(-100, 100), st.booleans(), finite)
        return choice(draw(st.lists(items, min_size=1, max_size=5, unique_by=repr)))
    if kind == "int_uniform":
        log = draw(st.booleans())
        lo = draw(st.integers(1 if log else -1000, 1000))
        return int_uniform(lo, lo + draw(st.integers(1, 5000)), log=log)
    source = {"log_uniform": positive, "one_minus_log": unit, "uniform": finite}[kind]
    lo, hi = _ordered(draw(source), draw(source))
    if not lo < hi:
        hi = np.nextafter(lo, math.inf)
        if kind == "one_minus_log" and hi >= 1:
            lo, hi = np.nextafter(lo, -math.inf), lo
    return Param(kind, float(lo), float(hi))


@settings(max_examples=300, deadline=None)
@given(params())
def test_spec_text_round_trips(p):
    assert parse_param(str(p)) == p
    assert parse_param(repr(p), "train.x") == p


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_fails_with_one_config_error_naming_the_key(text):
    try:
        parse_param(text, "train.lr")
    except ConfigError as e:
        assert str(e).startswith("train.lr: ") and "\n" not in str(e)


@settings(max_examples=200, deadline=None)
@given(params(), st.integers(0, 2**32 - 1))
def test_samples_stay_in_range_and_are_stored_inside_the_optuna_distribution(p, seed):
    rng = np.random.default_rng(seed)
    for _ in range(5):
        v = p.sample(rng)
        dist = p.distribution()
        stored = p.stored(v)
        assert dist._contains(dist.to_internal_repr(stored))
        if p.numeric:
            assert p.low <= v <= p.high
            assert p.value(stored) == pytest.approx(v, rel=1e-9, abs=1e-12)
        else:
            assert v in p.choices


@settings(max_examples=200, deadline=None)
@given(params(), st.floats(0, 1))
def test_transformed_coordinate_inverts(p, u):
    if not p.numeric or p.kind == "int_uniform":
        return
    lo, hi = p.t_range()
    t = lo + u * (hi - lo)
    assert p.to_t(p.from_t(t)) == pytest.approx(t, rel=1e-6, abs=1e-9)


def test_log_uniform_puts_the_same_share_in_every_decade():
    # r ~ U(-4, 0), lr = 10^r: a quarter of the samples per decade (docs/lectures.md §6).
    rng = np.random.default_rng(0)
    v = np.array([log_uniform(1e-4, 1).sample(rng) for _ in range(20000)])
    shares = [np.mean((v >= 10.0**-k) & (v < 10.0 ** (-k + 1))) for k in (4, 3, 2, 1)]
    assert all(abs(s - 0.25) < 0.015 for s in shares), shares


def test_one_minus_log_samples_the_averaging_window_evenly():
    # 1 - beta = 10^r, r ~ U(-3, -1): beta in [0.9, 0.99] and [0.99, 0.999] are equally likely,
    # where linear sampling would give the second only 10% of the samples.
    rng = np.random.default_rng(1)
    beta = np.array([one_minus_log(0.9, 0.999).sample(rng) for _ in range(20000)])
    assert abs(np.mean(beta > 0.99) - 0.5) < 0.015
    lin = np.array([uniform(0.9, 0.999).sample(rng) for _ in range(20000)])
    assert abs(np.mean(lin > 0.99) - 0.091) < 0.01
    assert one_minus_log(0.9, 0.999).t_range() == pytest.approx((-3, -1))
    assert one_minus_log(0.9, 0.999).study_name("train.momentum") == "log10(1-train.momentum)"


def test_optuna_stores_the_transformed_coordinate():
    # A sampler sees log10(lr) in [-4, 0] and log10(1 - beta) in [-3, -1]: it models the right scale.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    lr = log_uniform(1e-4, 1).suggest(trial, "train.lr")
    beta = one_minus_log(0.9, 0.999).suggest(trial, "train.momentum")
    width = int_uniform(16, 512, log=True).suggest(trial, "model.hidden")
    assert trial.params["log10(train.lr)"] == pytest.approx(math.log10(lr))
    assert trial.params["log10(1-train.momentum)"] == pytest.approx(math.log10(1 - beta))
    assert trial.params["model.hidden"] == width and isinstance(width, int)
    assert trial.distributions["log10(train.lr)"] == optuna.distributions.FloatDistribution(-4.0, 0.0)
    assert trial.distributions["model.hidden"] == optuna.distributions.IntDistribution(16, 512, log=True)


def test_grid_uses_cell_centres_in_transformed_space():
    assert log_uniform(1e-4, 1).grid(4) == pytest.approx([10**-3.5, 10**-2.5, 10**-1.5, 10**-0.5])
    assert one_minus_log(0.9, 0.999).grid(2) == pytest.approx([1 - 10**-1.5, 1 - 10**-2.5])  # ascending in beta
    assert int_uniform(1, 3).grid(10) == [1, 2, 3]  # distinct values only
    assert choice(["a", "b", "c"]).grid(2) == ["a", "c"]


def test_narrowed_and_widened_ranges_keep_their_kind():
    p = int_uniform(16, 256, log=True)
    assert p.with_t_range(1.0, 3.0) == int_uniform(10, 1000, log=True)  # widening past the old edge
    q = one_minus_log(0.9, 0.999).with_t_range(-2.5, -1.5)
    assert (q.low, q.high) == pytest.approx((1 - 10**-1.5, 1 - 10**-2.5))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("log_uniform(0, 1)", "needs low > 0"),
        ("log_uniform(1, 1e-3)", "needs low < high"),
        ("one_minus_log(0.9, 1)", "betas in [0, 1)"),
        ("int_uniform(1.5, 4)", "whole numbers"),
        ("int_uniform(0, 4, log=true)", "needs low >= 1"),
        ("int_uniform(1, 4, log=yes)", "log= must be true or false"),
        ("uniform(0)", "takes (low, high)"),
        ("normal(0, 1)", "unknown search range 'normal'"),
        ("choice(relu, tanh)", "choice takes one list"),
        ("choice([])", "at least one value"),
        ("choice([a, a])", "lists a value twice"),
        ("1e-3", "cannot read search range"),
    ],
)
def test_bad_specs_name_the_key_and_the_fix(spec, message):
    with pytest.raises(ConfigError, match=r"^train\.lr: .*" + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_param(spec, "train.lr")


def test_choice_reads_bare_and_quoted_words_and_numbers():
    assert parse_param('choice([relu, "tanh", 3, 0.5, true])').choices == ("relu", "tanh", 3, 0.5, True)
    assert parse_space({"model.activation": "choice([relu, tanh])"}) == {"model.activation": choice(["relu", "tanh"])}
    with pytest.raises(ConfigError, match="search space is empty"):
        parse_space({})
