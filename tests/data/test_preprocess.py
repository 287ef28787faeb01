import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import babysit as bs
from babysit.data.preprocess import PREPROCESSORS, Standardize


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


def test_transform_before_fit_is_refused():
    with pytest.raises(RuntimeError, match="before fit"):
        Standardize().transform(torch.ones(2, 3))


@pytest.mark.parametrize("name", PREPROCESSORS.names())
def test_every_preprocessor_fits_and_keeps_shapes(name):
    x = torch.randn(50, 3, 4) * 5 + 2
    pre = PREPROCESSORS.get(name)().fit(x)
    assert pre.transform(x).shape == x.shape


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
    x = (torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift)
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
