"""The learning-rate range test: the sweep, the smoothing, the proposal, and its validation against a grid."""

import io
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import babysit as bs
from babysit.checks.base import CheckSettings
from babysit.checks.lr_range import Sweep, lr_range, plot_lr_range, run_sweep, smooth, suggest

from .conftest import make_ctx


def test_smooth_removes_an_isolated_spike_and_keeps_a_constant():
    values = [1.0] * 20
    spiky = list(values)
    spiky[3] = 50.0
    assert smooth(values, 5) == values
    assert max(smooth(spiky, 5)) == pytest.approx(1.0)


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60), st.integers(1, 9))
def test_smooth_keeps_a_monotone_curve_monotone(values, window):
    out = smooth(sorted(values), window)
    assert len(out) == len(values)
    assert all(a <= b + 1e-9 for a, b in zip(out, out[1:]))
    assert min(values) - 1e-9 <= min(out) and max(out) <= max(values) + 1e-9


def synthetic_sweep(spike_at=None, noise=0.05, diverge_from=1e-1, seed=0):
    """A valley: flat at 2.3 until 1e-4, falls to 0.3 around 1e-2, diverges past `diverge_from`."""
    g = torch.Generator().manual_seed(seed)
    lrs = [1e-7 * 10 ** (8 * i / 99) for i in range(100)]
    losses = []
    for i, lr in enumerate(lrs):
        x = math.log10(lr)
        loss = 0.3 + 2.0 / (1 + math.exp(2.5 * (x + 2.7)))
        if lr > diverge_from:
            loss += 10 * (x - math.log10(diverge_from)) ** 2
        loss *= 1 + noise * float(torch.randn((), generator=g))
        if spike_at is not None and i == spike_at:
            loss = 40.0
        losses.append(loss)
    return Sweep(lrs, losses, None)


def test_proposal_sits_where_the_loss_enters_the_bottom_of_the_valley():
    s = suggest(synthetic_sweep(), steps_per_decade=99 / 8)
    low, high = s["range"]
    assert 1e-4 < low < 1e-3 and 1e-2 < high <= 1.5e-1
    assert 3e-3 < s["lr"] < 3e-2 and low < s["lr"] < high


@pytest.mark.parametrize("spike_at", [2, 5, 30])
def test_proposal_is_robust_to_early_spikes(spike_at):
    clean = suggest(synthetic_sweep(), 99 / 8)["lr"]
    assert suggest(synthetic_sweep(spike_at=spike_at), 99 / 8)["lr"] == pytest.approx(clean, rel=0.35)


@pytest.mark.parametrize("seed", range(5))
def test_proposal_is_robust_to_noise(seed):
    lr = suggest(synthetic_sweep(noise=0.15, seed=seed), 99 / 8)["lr"]
    assert 2e-3 < lr < 4e-2


def test_a_sweep_without_descent_has_no_trusted_proposal():
    flat = Sweep([1e-7 * 10 ** (i / 10) for i in range(80)], [2.3 + 0.01 * (i % 2) for i in range(80)])
    s = suggest(flat, 10)
    assert s["lr"] is None and s["descent"] < 0.01 and s["confidence"] == "none"


def shallow_sweep():
    """A loss that falls only 6% (2.30 -> 2.16, steepest at 1e-3) before exploding past 1e-2."""
    lrs = [1e-7 * 10 ** (8 * i / 99) for i in range(100)]
    losses = []
    for lr in lrs:
        x = math.log10(lr)
        loss = 2.16 + 0.14 / (1 + math.exp(4 * (x + 3)))
        losses.append(loss + (20 * (x + 2) ** 2 if x > -2 else 0.0))
    return Sweep(lrs, losses, None)


def test_a_shallow_descent_falls_back_to_the_steepest_slope_rule():
    s = suggest(shallow_sweep(), 99 / 8)
    assert s["rule"] == "steepest" and s["confidence"] == "medium" and 0.05 < s["descent"] < 0.07
    assert s["lr"] == pytest.approx(1e-3, rel=0.3)  # the inflection of the sigmoid, where it falls fastest
    low, high = s["range"]
    assert low < s["lr"] < high


def test_the_check_proposes_a_rate_even_for_a_shallow_descent(digits):
    # A sweep that stops at 1e-4: Adam's loss barely moves, so no valley, but still a (low-confidence) rate.
    bs.train.seed_everything(0)
    ctx = make_ctx(bs.blocks.mlp(digits.input_shape, 10, hidden=(32,)), digits, settings=CheckSettings(sweep_steps=60, sweep_start=1e-7, sweep_end=1e-4))
    r = lr_range(ctx)
    assert r.evidence["suggested"] is not None and ctx.lr == r.evidence["suggested"]
    assert (r.evidence["rule"], r.evidence["confidence"]) == ("steepest", "low") and "low confidence" in r.summary
    assert len(r.evidence["lrs"]) == 120  # the second sweep: twice as long, half the batch


def test_the_sweep_grows_the_rate_geometrically_and_stops_on_divergence(digits):
    bs.train.seed_everything(0)
    net = bs.blocks.mlp(digits.input_shape, 10, hidden=(32,))
    sweep = run_sweep(make_ctx(net, digits, settings=CheckSettings(sweep_steps=80)))
    ratios = [b / a for a, b in zip(sweep.lrs, sweep.lrs[1:])]
    assert sweep.lrs[0] == pytest.approx(1e-7) and max(ratios) == pytest.approx(min(ratios))
    assert ratios[0] == pytest.approx((10 / 1e-7) ** (1 / 79))
    assert sweep.diverged_at is not None and len(sweep.lrs) < 80
    assert sweep.diverged_at == sweep.lrs[-1]


@pytest.mark.parametrize("lr, rule", [(1e-7, "lr_too_low"), (10.0, "lr_too_high"), (1e-3, None)])
def test_the_configured_rate_is_judged_against_the_sweep(digits, lr, rule):
    bs.train.seed_everything(0)
    ctx = make_ctx(bs.blocks.mlp(digits.input_shape, 10, hidden=(32,)), digits, bs.Recipe(lr=lr, device="cpu"))
    r = lr_range(ctx)
    assert [f.rule for f in r.findings] == ([rule] if rule else [])
    if rule:
        assert r.findings[0].severity == "error" and f"{ctx.lr:.2g}" in r.findings[0].fix
    assert ctx.lr == r.evidence["suggested"]


def test_plot_has_a_log_axis_and_the_proposal(digits):
    bs.train.seed_everything(0)
    r = lr_range(make_ctx(bs.blocks.mlp(digits.input_shape, 10, hidden=(32,)), digits))
    fig = plot_lr_range(r.evidence)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert "smoothed" in labels and any(l.startswith("proposed") for l in labels)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def grid_vs_proposal(data, make, optimizer, epochs, grid):
    """Final metric at the proposed rate, and the best over a log grid (same init, same data order)."""
    proposal = bs.check(make(), data, bs.Recipe(optimizer=optimizer, device="cpu"), only=["lr_range"], progress=False).suggested_lr
    def score(lr):
        r = bs.fit(make(), data, bs.Recipe(optimizer=optimizer, lr=lr, epochs=epochs, device="cpu"), callbacks=[bs.train.DivergenceGuard()], progress=False)
        return r.test_accuracy if r.status == "completed" else 0.0
    return proposal, score(proposal), {lr: score(lr) for lr in grid}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_proposed_rate_trains_digits_within_3_points_of_the_best_grid_rate(digits, optimizer):
    def make():
        bs.train.seed_everything(0)
        return bs.blocks.mlp(digits.input_shape, 10, hidden=(100, 100))

    grid = [10.0 ** k for k in range(-5, 1)]
    lr, at_proposal, scores = grid_vs_proposal(digits, make, optimizer, 10, grid)
    best = max(scores.values())
    assert at_proposal >= best - 0.03, (lr, at_proposal, scores)


@pytest.mark.slow
def test_proposed_rate_trains_mnist1d_within_5_points_of_the_best_grid_rate(mnist1d):
    def make():
        bs.train.seed_everything(0)
        return bs.blocks.convnet(mnist1d.input_shape, 10, kernel_size=5)

    grid = [10.0 ** (k / 2) for k in range(-10, 1)]  # 1e-5 .. 1, half decades
    lr, at_proposal, scores = grid_vs_proposal(mnist1d, make, "adam", 15, grid)
    best = max(scores.values())
    assert at_proposal >= best - 0.05, (lr, at_proposal, scores)
