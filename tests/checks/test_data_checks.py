from dataclasses import replace

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import babysit as bs
from babysit.checks.data_checks import class_balance, data_centring, data_leak, feature_scales, group_stats
from babysit.data.datasets import Split

from .conftest import make_ctx, tabular


def gaussian(n, d, seed, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * scale + shift


def standardized(mean, std, *xs):
    return [(x - mean) / std for x in xs]


def run(check, data):
    return check(make_ctx(torch.nn.Linear(1, 1), data))


def test_group_stats_are_per_channel_for_images_and_per_feature_for_vectors():
    img = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    mean, std = group_stats(img)
    assert mean.shape == (3,) and mean[1] == pytest.approx(img[:, 1].mean().item())
    vec = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
    mean, std = group_stats(vec)
    assert mean.tolist() == [1.0, 20.0] and std.tolist() == [1.0, 10.0]


def test_centred_data_passes_and_an_offset_is_flagged_with_its_size(digits):
    assert run(data_centring, digits).status == "pass"
    raw = bs.load_dataset("digits")  # pixels 0..16: mean about 0.8 std
    r = run(data_centring, raw)
    assert r.status == "warn" and r.findings[0].rule == "data_not_centred"
    mean, std = raw.train.x.mean(), raw.train.x.std(unbiased=False)
    assert r.evidence["max_offset_in_std"] == pytest.approx((mean / std).item(), rel=1e-4)
    far = tabular(*(gaussian(300, 4, s, shift=50.0) for s in range(3)))
    assert run(data_centring, far).findings[0].severity == "error"


@pytest.mark.parametrize("spread, status", [(3.0, "pass"), (30.0, "warn"), (1e4, "fail")])
def test_feature_scale_ratio_bands(spread, status):
    scales = torch.tensor([1.0, spread, 2.0])
    data = tabular(*(gaussian(2000, 3, s) * scales for s in range(3)))
    r = run(feature_scales, data)
    assert r.status == status
    assert r.evidence["ratio"] == pytest.approx(spread, rel=0.1)


def test_images_share_one_scale_per_channel(digits):
    # Digit border pixels are nearly constant; per channel there is one scale, so nothing to compare.
    assert run(feature_scales, bs.load_dataset("digits")).status == "pass"


@pytest.mark.parametrize("factor, status", [(1.0, "pass"), (30.0, "warn"), (1e3, "fail"), (1e-3, "fail")])
def test_inputs_far_from_unit_scale_are_flagged_even_with_one_channel(digits, factor, status):
    data = bs.prepare(bs.load_dataset("digits")).map(lambda x: x * factor)
    r = run(feature_scales, data)
    assert r.status == status
    if status != "pass":
        assert r.findings[0].rule == "data_scales" and r.findings[0].evidence["median_std"] == pytest.approx(factor, rel=0.05)


def test_statistics_fitted_on_train_are_not_a_leak():
    tr, va, te = (gaussian(400, 5, s, scale=3.0, shift=2.0) for s in range(3))
    data = tabular(*standardized(tr.mean(0), tr.std(0), tr, va, te))
    r = run(data_leak, data)
    assert r.status == "pass" and "training split" in r.summary


@pytest.mark.parametrize("fitted_on, leaked, severity", [("all", "all data", "error"), ("test", "test", "error"), ("train+val", "train+validation", "warning"), ("val+test", "validation+test", "error")])
def test_statistics_fitted_on_other_splits_are_a_leak(fitted_on, leaked, severity):
    tr, va, te = (gaussian(400, 5, s, scale=3.0, shift=2.0) for s in range(3))
    source = {"all": torch.cat([tr, va, te]), "test": te, "train+val": torch.cat([tr, va]), "val+test": torch.cat([va, te])}[fitted_on]
    data = tabular(*standardized(source.mean(0), source.std(0), tr, va, te))
    r = run(data_leak, data)
    assert r.findings[0].rule == "data_leak" and r.findings[0].severity == severity
    assert f"the {leaked} statistics" in r.findings[0].title


def test_per_channel_centring_of_images_is_recognised():
    tr, va, te = (gaussian(200, 2 * 16, s, shift=5.0).reshape(200, 2, 16) for s in range(3))
    mean = torch.cat([tr, va, te]).mean((0, 2), keepdim=True)  # VGG-style per-channel mean, from all data
    data = tabular(tr - mean, va - mean, te - mean)
    r = run(data_leak, data)
    assert r.findings and "per channel" in r.findings[0].title


def test_uncentred_data_has_nothing_to_leak():
    data = tabular(*(gaussian(300, 4, s, shift=3.0) for s in range(3)))
    assert run(data_leak, data).status == "pass"


@settings(max_examples=25, deadline=None)
@given(n=st.integers(50, 400), d=st.integers(1, 6), shift=st.floats(-100, 100), scale=st.floats(0.01, 100), seed=st.integers(0, 10_000))
def test_leak_check_separates_train_fitted_from_whole_data_fitted(n, d, shift, scale, seed):
    # float32 centring of a mean 1e4 std from 0 leaves ~1e-3 std: beyond what the check can see (documented).
    assume(abs(shift) / scale < 1e3)
    tr, va, te = (gaussian(n, d, seed + s, scale=scale, shift=shift) for s in range(3))
    clean = tabular(*standardized(tr.mean(0), tr.std(0), tr, va, te))
    assert run(data_leak, clean).status == "pass"
    whole = torch.cat([tr, va, te])
    leaky = tabular(*standardized(whole.mean(0), whole.std(0), tr, va, te))
    assert run(data_leak, leaky).status == "fail"


def test_class_balance(digits):
    assert run(class_balance, digits).status == "pass"
    x = gaussian(110, 2, 0)
    y = torch.tensor([0] * 100 + [1] * 10)
    imbalanced = replace(tabular(x, x, x, classes=2), train=Split(x, y))
    r = run(class_balance, imbalanced)
    assert r.status == "warn" and r.evidence["ratio"] == 10.0 and r.evidence["train_counts"] == [100, 10]
    missing = replace(imbalanced, train=Split(x, torch.zeros(110, dtype=torch.long)))
    r = run(class_balance, missing)
    assert r.status == "fail" and r.findings[0].rule == "class_missing"
