from dataclasses import replace

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import babysit as bs
from babysit.checks.data_checks import class_balance, data_centring, data_leak, duplicates, feature_scales, group_stats
from babysit.data.datasets import Split
from babysit.diagnose.findings import rank

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
    # float32 centring leaves ~1e-7 std per std of mean, so a mean 1e3 std from 0 leaves ~1e-4, the
    # check's tolerance for a single feature (documented at FITTED_TOL): keep a tenth of that limit.
    assume(abs(shift) / scale < 1e2)
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


def test_a_handful_of_samples_per_class_is_named_as_the_cause_of_what_it_leaves_behind():
    x = gaussian(30, 4, 0)
    few = tabular(x, gaussian(200, 4, 1), gaussian(200, 4, 2), classes=10)
    few = replace(few, train=Split(x, torch.arange(30) % 9))  # 3 or 4 per class, class 9 absent
    r = run(class_balance, few)
    by_rule = {f.rule: f for f in r.findings}
    assert set(by_rule) == {"class_missing", "too_few_samples"}
    assert by_rule["too_few_samples"].evidence == {"train_samples": 30, "classes": 10, "per_class": 3.0, "needed": 100}
    assert "30 samples for 10 classes" in by_rule["too_few_samples"].title
    # The missing class is a consequence of drawing so few: it is listed under the small training split.
    ranked = rank(r.findings)
    assert [f.rule for f in ranked] == ["too_few_samples", "class_missing"] and ranked[1].explained_by == "too_few_samples"
    # Ten per class is enough not to be flagged.
    enough = replace(few, train=Split(gaussian(100, 4, 3), torch.arange(100) % 10))
    assert "too_few_samples" not in {f.rule for f in run(class_balance, enough).findings}


def test_an_offset_within_the_sampling_noise_of_a_small_split_is_not_called_uncentred():
    # 20 samples of a centred population: a feature's mean sits ~1/sqrt(20) = 0.22 std from 0 by chance.
    pop = gaussian(20, 1, 0)
    pop = (pop - pop.mean()) / pop.std(unbiased=False)
    x = torch.cat([pop + 0.6, gaussian(20, 3, 1)], dim=1)  # one feature 0.6 std off: within 4 standard errors of 20
    small = tabular(x, x, x)
    r = run(data_centring, small)
    assert r.status == "pass" and r.evidence["sampling_noise_in_std"] == pytest.approx(4 / 20**0.5)
    big = tabular(torch.cat([x] * 100), x, x)  # the same offset on 2,000 samples is far beyond noise
    assert run(data_centring, big).status == "warn"


def test_one_channel_centred_by_chance_is_not_a_leak():
    # MNIST-1D-like: one channel, 40 positions. Train and val are not centred (the statistics came from a
    # larger set); the test split's one channel mean is 3e-4 std from 0: within 1% of its sampling noise,
    # which a single mean hits about 1 time in 100 by chance.
    g = torch.Generator().manual_seed(0)
    train, val, test = (torch.randn(n, 1, 40, generator=g) + 0.2 for n in (20, 450, 300))
    test = test - test.mean() + 3e-4 * test.std()
    r = run(data_leak, tabular(train, val, test))
    assert r.status == "pass" and r.findings == []
    # Centred exactly (float rounding): that is a fit on the test split, one channel or not.
    exact = test - test.double().mean().float()
    assert run(data_leak, tabular(train, val, exact)).findings[0].rule == "data_leak"


def test_held_out_copies_of_training_samples_are_counted_and_warned_beyond_the_standard_error():
    train, val, test = gaussian(400, 5, 0), gaussian(400, 5, 1), gaussian(100, 5, 2)
    assert run(duplicates, tabular(train, val, test)).findings == []
    leaked = tabular(train, torch.cat([train[:40], val[40:]]), torch.cat([train[:1], test[1:]]))  # 10% of val, 1 test sample
    r = run(duplicates, leaked)
    assert r.evidence["copies_of_train"] == {"validation": 40, "test": 1} and r.evidence["samples"] == {"validation": 400, "test": 100}
    (f,) = r.findings
    assert f.rule == "duplicate_samples" and f.severity == "warning" and "40 of 400 validation samples (10.0%)" in f.title
    # One copy in 400 moves the accuracy by 0.25 points, below its standard error (2.5 points): said, not warned.
    one = tabular(train, torch.cat([train[:1], val[1:]]), test)
    assert [g.severity for g in run(duplicates, one).findings] == ["info"]
