"""Data from memory: Dataset.from_arrays and Dataset.from_torch."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from babysit import Dataset, DataError
from babysit.data.memory import materialise


def _xy(n=100, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.arange(n) % classes


def test_from_arrays_split_sizes_and_classes():
    x, y = _xy(100)
    data = Dataset.from_arrays(x, y, val_fraction=0.1)
    # 20 test held out (fixed), then floor(80 * 0.1) = 8 validation.
    assert (len(data.train), len(data.val), len(data.test)) == (72, 8, 20)
    assert data.num_classes == 3 and data.input_shape == (4,) and data.class_names == ("0", "1", "2")
    # Every sample lands in exactly one split.
    all_x = torch.cat([data.train.x, data.val.x, data.test.x])
    assert torch.allclose(all_x.sum(0), x.sum(0), atol=1e-4) and len(all_x) == 100


def test_from_arrays_numpy_with_test_split_and_names():
    x, y = _xy(50)
    data = Dataset.from_arrays(
        x.numpy(), y.numpy(), x_test=x[:10].numpy(), y_test=y[:10].numpy(), val_fraction=0.2, class_names=["a", "b", "c"]
    )
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 10)
    assert data.class_names == ("a", "b", "c") and data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64


def test_from_arrays_seed_moves_val_only():
    x, y = _xy(100)
    a, b, c = (Dataset.from_arrays(x, y, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.test.x, c.test.x)
    assert not torch.equal(a.val.x, c.val.x)


def test_from_arrays_refuses_nan_and_bad_labels():
    x, y = _xy(30)
    x[7, 2] = float("nan")
    with pytest.raises(DataError, match="NaN/inf"):
        Dataset.from_arrays(x, y)
    x, y = _xy(30)
    with pytest.raises(DataError, match=r"labels must be integers in 0\.\.1, found 0\.\.2"):
        Dataset.from_arrays(x, y, class_names=["a", "b"])
    with pytest.raises(DataError, match="whole class indices"):
        Dataset.from_arrays(x, y.float() + 0.5)
    with pytest.raises(DataError, match="30 inputs but 29 labels"):
        Dataset.from_arrays(x, y[:29])
    with pytest.raises(DataError, match="both x_test and y_test"):
        Dataset.from_arrays(x, y, x_test=x)


def test_from_arrays_takes_your_own_validation_split_as_it_is():
    x, y = _xy(100)
    xv, yv = _xy(30, seed=1)
    data = Dataset.from_arrays(x, y, x_val=xv, y_val=yv, x_test=x[:10], y_test=y[:10])
    assert torch.equal(data.train.x, x) and torch.equal(data.val.x, xv) and torch.equal(data.val.y, yv)
    with pytest.raises(DataError, match="both x_val and y_val"):
        Dataset.from_arrays(x, y, x_val=xv)
    with pytest.raises(DataError, match="30 validation inputs but 29 labels"):
        Dataset.from_arrays(x, y, x_val=xv, y_val=yv[:29])
    with pytest.raises(DataError, match="validation samples"):
        Dataset.from_arrays(x, y, x_val=torch.randn(30, 5), y_val=yv)


def test_a_loop_that_standardised_its_own_training_split_gets_no_leak_warning():
    """Your own split, standardised on your training samples only: nothing leaks, and the leak check says so."""
    import babysit as bs

    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(600, 6, generator=g) * 5 + 3, torch.randn(150, 6, generator=g) * 5 + 3
    y, yv = (x[:, 0] > 3).long(), (xv[:, 0] > 3).long()
    mean, std = x.mean(0), x.std(0)
    data = Dataset.from_arrays((x - mean) / std, y, x_val=(xv - mean) / std, y_val=yv, x_test=(xv - mean) / std, y_test=yv)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    report = bs.check(model, data, only=["data_leak", "data_centring"], progress=False)
    assert report.findings == [] and report.result("data_leak").summary == "centring statistics match the training split"
    # Carved out of the same standardised arrays, the training split no longer matches its own statistics.
    carved = Dataset.from_arrays((x - mean) / std, y, x_test=(xv - mean) / std, y_test=yv)
    assert [f.rule for f in bs.check(model, carved, only=["data_leak"], progress=False).findings] == ["data_leak"]


def test_from_torch_dataset_and_loader_match_arrays():
    x, y = _xy(60)
    ref = Dataset.from_arrays(x, y, seed=3)
    from_ds = Dataset.from_torch(TensorDataset(x, y), seed=3, progress=False)
    from_loader = Dataset.from_torch(DataLoader(TensorDataset(x, y), batch_size=7), seed=3, progress=False)
    for d in (from_ds, from_loader):
        assert torch.equal(d.train.x, ref.train.x) and torch.equal(d.val.y, ref.val.y) and torch.equal(d.test.x, ref.test.x)


def test_materialise_refuses_what_does_not_fit():
    x, y = _xy(1000)
    # 1000 samples x (4 floats + 1 int64) = 24,000 bytes.
    with pytest.raises(DataError, match="GiB of samples but only"):
        materialise(TensorDataset(x, y), "mine", progress=False, memory=20_000)
    xs, ys = materialise(TensorDataset(x, y), "mine", progress=False, memory=30_000)
    assert xs.shape == (1000, 4) and ys.shape == (1000,)


def test_materialise_refuses_non_pairs():
    with pytest.raises(DataError, match=r"\(input, label\) pair"):
        materialise([np.zeros(3)], "mine", progress=False)
