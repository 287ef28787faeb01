"""Preprocessing against docs/lectures.md §2: training statistics only, the formulas, whitening, saving."""

import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import babysit as bs
from babysit.data.preprocess import PCA, PREPROCESSORS, Center, Standardize, load_preprocessor
from babysit.errors import ConfigError, DataError


def _data(seed: int, n: int = 60, shape=(3, 4), scale: float = 5.0, shift: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(torch.Size(shape).numel(), torch.Size(shape).numel(), generator=g, dtype=torch.float64)
    x = torch.randn(n, torch.Size(shape).numel(), generator=g, dtype=torch.float64) @ mix  # correlated features
    return (x * scale + shift).reshape(n, *shape)


def test_standardisation_uses_training_statistics_only():
    raw = bs.load_dataset("digits")
    data = bs.prepare(raw, "standardize")
    pre = data.preprocessor
    train_mean = raw.train.x.mean(0)
    assert torch.allclose(pre.mean, train_mean)
    # Val and test are transformed with the *train* statistics, unchanged.
    std = raw.train.x.std(0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    assert torch.allclose(data.val.x, (raw.val.x - train_mean) / std)
    assert torch.allclose(data.test.x, (raw.test.x - train_mean) / std)
    # ... so only the training split is exactly centred.
    assert data.train.x.mean(0).abs().max() < 1e-5
    assert data.test.x.mean(0).abs().max() > 1e-3


@pytest.mark.parametrize("name", PREPROCESSORS.names())
def test_every_preprocessor_is_fitted_on_train_only_and_refuses_transform_before_fit(name):
    raw = bs.load_dataset("digits")
    options = {"components": 20} if name.startswith("pca") else {}
    data = bs.prepare(raw, name, **options)
    pre = data.preprocessor
    refit = PREPROCESSORS.get(name)(**options).fit(raw.train.x)
    for split in ("train", "val", "test"):
        assert torch.allclose(getattr(data, split).x, refit.transform(getattr(raw, split).x), atol=1e-5)
    assert data.input_shape == tuple(data.train.x.shape[1:])
    if name != "none":
        with pytest.raises(RuntimeError, match="before fit"):
            PREPROCESSORS.get(name)().transform(raw.train.x)
    assert type(pre).__name__ in repr(pre) and "fitted" in repr(pre)


def test_mean_image_versus_per_channel_mean():
    x = _data(0, shape=(3, 2, 2))
    image = PREPROCESSORS.get("mean")().fit(x)
    channel = PREPROCESSORS.get("channel_mean")().fit(x)
    assert image.mean.shape == (3, 2, 2) and channel.mean.shape == (3, 1, 1)
    assert image.transform(x).mean(0).abs().max() < 1e-10  # every pixel centred
    per_channel = channel.transform(x).mean(dim=(0, 2, 3))
    assert per_channel.abs().max() < 1e-10  # every channel centred as a whole ...
    assert channel.transform(x).mean(0).abs().max() > 1e-3  # ... but not every pixel


def test_minmax_maps_the_training_range_onto_minus_one_one():
    x = _data(1, shape=(5,))
    z = PREPROCESSORS.get("minmax")().fit(x).transform(x)
    ones = torch.ones(5, dtype=z.dtype)
    assert torch.allclose(z.amin(0), -ones) and torch.allclose(z.amax(0), ones)


@pytest.mark.parametrize("name", ["pca_whiten", "zca_whiten"])
def test_whitened_training_data_has_identity_covariance(name):
    x = _data(2, n=500, shape=(6,))
    z = PREPROCESSORS.get(name)(eps=1e-8).fit(x).transform(x)
    cov = z.T @ z / len(z)
    assert torch.allclose(cov, torch.eye(6, dtype=cov.dtype), atol=1e-5)
    assert z.mean(0).abs().max() < 1e-10


def test_pca_decorrelates_sorts_variance_and_keeps_k_or_a_fraction():
    x = _data(3, n=400, shape=(8,))
    z = PCA().fit(x).transform(x)
    cov = z.T @ z / len(z)
    variances = cov.diagonal()
    assert torch.allclose(cov, torch.diag(variances), atol=1e-8)  # decorrelated
    assert torch.all(variances[:-1] >= variances[1:])  # largest first
    assert PCA(3).fit(x).transform(x).shape == (400, 3)
    fraction = (variances.cumsum(0) / variances.sum())
    k = int((fraction < 0.9).sum()) + 1
    assert PCA(0.9).fit(x).transform(x).shape == (400, k)
    # A rotation keeps distances when all components are kept.
    exact = "donot_use_mm_for_euclid_dist"
    assert torch.allclose(torch.cdist(z, z, compute_mode=exact), torch.cdist(x, x, compute_mode=exact), atol=1e-8)


def test_zca_keeps_the_input_shape_and_stays_closest_to_the_input():
    x = _data(4, n=300, shape=(2, 3))
    zca, pca = PCA(whiten=True, eps=1e-8, zca=True).fit(x), PCA(whiten=True, eps=1e-8).fit(x)
    z = zca.transform(x)
    assert z.shape == x.shape
    centred = (x - x.mean(0)).flatten(1)
    # The ZCA matrix U diag(1/sqrt(lambda + eps)) U^T is symmetric.
    matrix = zca.basis * zca.scale @ zca.basis.T
    assert torch.allclose(matrix, matrix.T) and torch.allclose(z.flatten(1), centred @ matrix)
    assert (z.flatten(1) - centred).norm() < (pca.transform(x) - centred).norm()
    with pytest.raises(ConfigError, match="ZCA"):
        PCA(3, whiten=True, zca=True)


@pytest.mark.parametrize("bad", [0, -3, 1.0, 1.5, True, "all"])
def test_bad_component_counts_are_refused(bad):
    with pytest.raises(ConfigError, match="pca_components"):
        PCA(bad)


def test_transforming_other_sized_inputs_is_refused():
    pre = PCA(2).fit(_data(5, shape=(4,)))
    with pytest.raises(DataError, match="fitted on inputs of 4 values"):
        pre.transform(torch.ones(3, 5, dtype=torch.float64))
    with pytest.raises(ConfigError, match="keep 1..4"):
        PCA(9).fit(_data(5, shape=(4,)))


def test_fitted_statistics_are_saved_with_a_model_and_restored_with_weights_only():
    raw = bs.load_dataset("digits")
    data = bs.prepare(raw, "pca_whiten", components=0.95, eps=1e-3)
    model = bs.blocks.mlp(data.input_shape, 10, hidden=(8,))
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "preprocessor": data.preprocessor.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    pre = load_preprocessor(saved["preprocessor"])
    assert repr(pre) == repr(data.preprocessor)
    assert torch.equal(pre.transform(raw.test.x), data.test.x)
    with pytest.raises(ConfigError, match="kind"):
        load_preprocessor({"mean": torch.zeros(2)})


PRE_NAMES = [n for n in PREPROCESSORS.names() if n != "none"]


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(PRE_NAMES),
    n=st.integers(12, 40),
    d=st.integers(1, 6),
    scale=st.floats(1e-2, 1e3),
    shift=st.floats(-1e3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_every_preprocessor_round_trips_its_state_and_maps_train_consistently(name, n, d, scale, shift, seed):
    x = _data(seed, n=n, shape=(d,), scale=scale, shift=shift)
    pre = PREPROCESSORS.get(name)().fit(x)
    z = pre.transform(x)
    clone = load_preprocessor(pre.state_dict())
    assert torch.equal(clone.transform(x), z)
    assert torch.isfinite(z).all()
    if name != "minmax":  # every other transform zero-centres the training split
        assert z.mean(0).abs().max() <= 1e-8 * max(1.0, x.abs().max().item())
    else:
        assert z.amin(0).min() >= -1 - 1e-9 and z.amax(0).max() <= 1 + 1e-9


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(5, 40),
    d=st.integers(1, 6),
    scale=st.floats(1e-2, 1e3),
    shift=st.floats(-1e3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_standardize_centres_scales_and_round_trips_its_state(n, d, scale, shift, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift
    pre = Standardize().fit(x)
    z = pre.transform(x)
    assert z.mean(0).abs().max() < 1e-6
    spread = x.std(0, unbiased=False)
    for j in range(d):
        if spread[j] > 1e-6:
            assert abs(z[:, j].std(unbiased=False) - 1) < 1e-6
    clone = Standardize()
    clone.load_state_dict(pre.state_dict())
    assert torch.equal(clone.transform(x), z)


def test_center_repr_names_its_kind():
    assert "not fitted" in repr(Center(per_channel=True))
