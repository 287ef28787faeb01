"""Per-layer statistics and probe schedules: invariants checked against plain torch references."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from babysit.watch.schedule import PROBE_PRESETS, Periodic
from babysit.watch.stats import (
    HIST_SAMPLE,
    count_bins,
    describe,
    histogram_on_device,
    hist_range,
    layer_kind,
    measure,
    read_back,
)

BINS = 10


def stats_of(y, kind):
    return describe(read_back(measure(y, kind, BINS)), kind, y.numel(), BINS)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 12),
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-5, 5),
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(["plain", "relu"]),
)
def test_histogram_mean_std_and_dead_units_match_torch(n, d, scale, shift, seed, kind):
    y = torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * scale + shift
    if kind == "relu":
        y = y.clamp_min(0)
    s = stats_of(y, kind)
    assert sum(s["hist_counts"]) == y.numel()  # small layers: every value lands in a bin
    lo, hi = y.min().item(), y.max().item()
    if lo == hi:  # constant data: the range is widened by 1 each way, like torch.histc's
        lo, hi = lo - 1, hi + 1
    assert s["hist_edges"][0] == pytest.approx(lo, abs=1e-6 * scale)
    assert s["hist_edges"][-1] == pytest.approx(hi, abs=1e-5 * scale)
    assert len(s["hist_edges"]) == BINS + 1 and all(b >= a for a, b in zip(s["hist_edges"], s["hist_edges"][1:]))
    assert s["act_mean"] == pytest.approx(y.mean().item(), rel=1e-4, abs=1e-5 * scale)
    assert s["act_std"] == pytest.approx(y.std(unbiased=False).item(), rel=1e-3, abs=1e-5 * scale)
    if kind == "relu":
        assert s["dead_fraction"] == pytest.approx(1.0 - (y > 0).any(0).float().mean().item())
    else:
        assert "dead_fraction" not in s and "saturated_fraction" not in s


@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from([(8, 6, 5), (3, 4, 3, 3), (1, 5, 7), (16, 5)]), seed=st.integers(0, 10_000), layout=st.sampled_from(["contiguous", "strided"]))
def test_a_conv_channel_is_dead_only_when_inactive_at_every_sample_and_position(shape, seed, layout):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(shape, generator=g).relu()
    y[:, 0] = 0.0  # dead
    y[:, 1] = 0.0
    y[-1, 1].view(-1)[-1] = 1e-30  # alive at one position of one sample, by a hair
    y[:, 2] = math.nan  # NaN: not counted dead
    if layout == "strided":  # e.g. channels_last, or a transposed view: the measure must not assume a layout
        y = y.transpose(0, 1).contiguous().transpose(0, 1)
    s = stats_of(y, "relu")
    peak = y.transpose(0, 1).reshape(shape[1], -1).amax(1)
    assert s["dead_fraction"] == pytest.approx((peak <= 0).float().mean().item())
    live = y[:, 3:]
    assert stats_of(live, "relu")["act_std"] == pytest.approx(live.double().std(unbiased=False).item(), rel=1e-4)


def test_an_empty_layer_output_is_described_without_dead_units():
    s = stats_of(torch.zeros(0, 4, 3), "relu")
    assert s["act_mean"] == 0.0 and s["act_std"] == 0.0 and s["dead_fraction"] == 0.0 and sum(s["hist_counts"]) == 0


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), d=st.integers(1, 10), gain=st.floats(0.01, 20), seed=st.integers(0, 10_000))
def test_saturation_matches_the_lecture_thresholds(n, d, gain, seed):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * gain
    t, s = torch.tanh(x), torch.sigmoid(x)
    tanh_stats, sigmoid_stats = stats_of(t, "tanh"), stats_of(s, "sigmoid")
    assert tanh_stats["saturated_fraction"] == pytest.approx((t.abs() > 0.99).float().mean().item())
    assert sigmoid_stats["saturated_fraction"] == pytest.approx(((s < 0.01) | (s > 0.99)).float().mean().item())
    assert sum(tanh_stats["hist_counts"]) == t.numel() and tanh_stats["hist_edges"][0] == -1.0
    assert sum(sigmoid_stats["hist_counts"]) == s.numel() and sigmoid_stats["hist_edges"][-1] == 1.0


def test_large_layers_histogram_a_fixed_sample_that_matches_the_whole():
    y = torch.randn(256, 64, 10, generator=torch.Generator().manual_seed(0)).relu()
    s = stats_of(y, "relu")
    assert sum(s["hist_counts"]) == HIST_SAMPLE
    edges = torch.tensor(s["hist_edges"])
    exact = torch.histogram(y.reshape(-1), bins=edges).hist
    exact = exact / exact.sum()
    sampled = torch.tensor(s["hist_counts"], dtype=torch.float64) / HIST_SAMPLE
    assert (sampled - exact.double()).abs().max() < 0.02  # a 2048-value sample: <= 1.1% standard error per bin
    assert s["act_std"] == pytest.approx(y.std(unbiased=False).item(), rel=1e-4)  # moments use every value
    again = stats_of(y, "relu")
    assert again == s  # the same positions every time: no RNG is drawn


def test_a_constant_layer_output_has_one_full_bin():
    s = stats_of(torch.full((5, 3), 2.0), "plain")
    assert s["act_std"] == 0.0 and s["hist_edges"][0] == 1.0 and s["hist_edges"][-1] == 3.0
    full = [i for i, c in enumerate(s["hist_counts"]) if c]
    assert len(full) == 1 and s["hist_counts"][full[0]] == 15
    assert s["hist_edges"][full[0]] <= 2.0 <= s["hist_edges"][full[0] + 1]


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(math.nan), st.just(math.inf)), min_size=1, max_size=50))
def test_cuda_histogram_path_counts_like_the_cpu_one(values):
    x = torch.tensor(values, dtype=torch.float32)
    lo, hi = torch.aminmax(x)
    host = torch.tensor(count_bins([x.numpy()], [hist_range(lo.item(), hi.item())], BINS)[0], dtype=torch.float32)
    device = histogram_on_device(x, lo, hi, BINS)
    assert host.sum() == device.sum()
    # Float rounding may move a value sitting on a bin edge to the neighbouring bin, no further.
    a, b = hist_range(lo.item(), hi.item())
    if math.isfinite(b - a):
        edges = torch.linspace(a, b, BINS + 1, dtype=torch.float64)[1:-1]
        on_edge = [sum(abs(v - e) <= 1e-5 * (b - a) for v in values if math.isfinite(v)) for e in edges.tolist()]
        drift = (host.cumsum(0) - device.cumsum(0))[:-1].abs()
        assert all(d <= n for d, n in zip(drift.tolist(), on_edge))


@pytest.mark.parametrize(
    "module, kind",
    [
        (nn.Linear(2, 2), "plain"),
        (nn.Conv2d(1, 1, 3), "plain"),
        (nn.BatchNorm1d(2), "plain"),
        (nn.ReLU(), "relu"),
        (nn.ReLU6(), "relu"),
        (nn.LeakyReLU(), "plain"),  # keeps a gradient for x < 0: cannot die
        (nn.ELU(), "plain"),
        (nn.Tanh(), "tanh"),
        (nn.Sigmoid(), "sigmoid"),
        (nn.GELU(), "plain"),
        (nn.Softmax(dim=1), None),
        (nn.Sequential(), None),
        (nn.Dropout(), None),
        (nn.Flatten(), None),
    ],
)
def test_which_layers_are_probed(module, kind):
    assert layer_kind(module) == kind


@given(period=st.integers(0, 60), warmup=st.integers(0, 300), steps=st.integers(1, 2000))
def test_periodic_schedule_probes_exactly_the_doubling_and_periodic_steps(period, warmup, steps):
    schedule = Periodic(period=period, warmup=warmup)
    probed = [s for s in range(1, steps + 1) if schedule(s)]
    doubling = {2**k for k in range(12) if 2**k <= min(warmup, steps)}
    periodic = set(range(period, steps + 1, period)) if period else set()
    assert set(probed) == doubling | periodic
    assert len(probed) <= (steps // period if period else 0) + math.floor(math.log2(max(warmup, 1))) + 1


def test_presets_cost_in_the_expected_order():
    steps = range(1, 10_001)
    counts = {name: sum(PROBE_PRESETS.get(name)()(s) for s in steps) for name in PROBE_PRESETS}
    assert counts["off"] == 0 and counts["full"] == 10_000
    assert counts["light"] == 200 + 7  # every 50th, plus the doubling steps 1..64 (none of them a multiple of 50)
    assert list(PROBE_PRESETS) == ["off", "light", "full"]


def test_a_layer_whose_mean_dwarfs_its_spread_gets_an_accurate_std():
    # One pass (sum and sum of squares) would cancel here; the CPU path takes a second, centred pass.
    g = torch.Generator().manual_seed(3)
    collapsed = 1000.0 + 1e-3 * torch.randn(256, 64, 10, generator=g)
    centred = torch.randn(256, 64, 10, generator=g)
    for y, rel in ((collapsed, 1e-3), (centred, 1e-5), (centred.relu(), 1e-5)):
        s = stats_of(y, "plain")
        assert s["act_std"] == pytest.approx(y.double().std(unbiased=False).item(), rel=rel)
        assert s["act_mean"] == pytest.approx(y.double().mean().item(), rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=5),
    fixed=st.lists(st.booleans(), min_size=5, max_size=5),
    nan_at=st.integers(0, 400),
    seed=st.integers(0, 10_000),
)
def test_histograms_counted_together_match_torch_histc_one_by_one(sizes, fixed, nan_at, seed):
    g = torch.Generator().manual_seed(seed)
    samples, ranges, finite = [], [], []
    for size, is_fixed in zip(sizes, fixed):
        x = torch.tanh(torch.randn(size, generator=g) * 3) if is_fixed else torch.randn(size, generator=g) * 5
        if is_fixed and nan_at < size:  # a tanh layer with a NaN: the NaN is not counted
            x[nan_at] = math.nan
        lo, hi = (-1.0, 1.0) if is_fixed else hist_range(x.min().item(), x.max().item())
        samples.append(x.numpy())
        ranges.append((lo, hi))
        finite.append(x[~x.isnan()])
    together = count_bins(samples, ranges, BINS)
    assert together == [count_bins([s], [r], BINS)[0] for s, r in zip(samples, ranges)]
    for counts, values, (lo, hi) in zip(together, finite, ranges):
        reference = torch.histc(values, BINS, lo, hi)
        assert sum(counts) == reference.sum().item() == len(values)
        # Rounding may move a value sitting on a bin edge to the neighbouring bin, no further.
        edges = torch.linspace(lo, hi, BINS + 1, dtype=torch.float64)[1:-1]
        on_edge = [int(((values.double() - e).abs() <= 1e-5 * (hi - lo)).sum()) for e in edges]
        drift = (torch.tensor(counts).cumsum(0) - reference.cumsum(0))[:-1].abs()
        assert all(d <= n for d, n in zip(drift.tolist(), on_edge))


def test_a_range_that_is_not_finite_counts_nothing():
    x = torch.tensor([1.0, math.inf, 2.0]).numpy()
    assert count_bins([x, x], [(1.0, math.inf), (1.0, 2.0)], 4) == [[0, 0, 0, 0], [1, 0, 0, 1]]
