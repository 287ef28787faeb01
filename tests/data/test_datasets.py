import numpy as np
import pytest
import torch

import babysit as bs
from babysit.data.datasets import DATASETS, make_spiral, select_classes, validate_arrays
from babysit.errors import ConfigError, DataError


def test_mnist1d_has_paper_sizes_and_carves_val_from_train():
    data = bs.load_dataset("mnist1d", val_fraction=0.1)
    assert (len(data.train), len(data.val), len(data.test)) == (3600, 400, 1000)
    assert data.input_shape == (1, 40) and data.num_classes == 10
    assert data.class_names == tuple(str(i) for i in range(10))


def test_mnist1d_generation_leaves_numpy_rng_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    bs.load_dataset("mnist1d")
    assert np.random.rand() == expected


def test_digits_are_1x8x8_images_with_fixed_test_split():
    a = bs.load_dataset("digits", seed=0)
    b = bs.load_dataset("digits", seed=5)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert torch.equal(a.test.x, b.test.x)  # the user's seed never moves the test set


def test_val_split_is_deterministic_by_seed_and_disjoint_from_train():
    a1, a2, b = (bs.load_dataset("digits", seed=s) for s in (0, 0, 1))
    assert torch.equal(a1.val.x, a2.val.x) and torch.equal(a1.train.y, a2.train.y)
    assert not torch.equal(a1.val.x, b.val.x)
    train_rows = {tuple(r.tolist()) for r in a1.train.x.flatten(1)}
    overlap = sum(tuple(r.tolist()) in train_rows for r in a1.val.x.flatten(1))
    assert overlap <= 2  # digits has a couple of exact duplicate images; index sets are disjoint


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_builtin_dataset_loads_clean(name):
    try:
        data = bs.load_dataset(name)
    except DataError as e:  # data sets that read local files refuse clearly without them
        assert "path" in str(e)
        return
    assert torch.isfinite(data.train.x).all()
    assert data.train.y.dtype == torch.int64 and int(data.train.y.max()) < data.num_classes


@pytest.mark.parametrize(
    "x, y, message",
    [
        (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), torch.tensor([0, 1]), "NaN"),
        (torch.ones(3, 2), torch.tensor([0, 1, 5]), "labels must be integers in 0..2"),
        (torch.ones(3, 2), torch.tensor([0, 1]), "3 inputs but 2 labels"),
        (torch.ones(3), torch.tensor([0, 1, 2]), "inputs must be (N, features...)"),
        (torch.ones(3, 2), torch.tensor([[0], [1], [2]]), "1-D vector"),
    ],
)
def test_bad_arrays_are_refused_with_the_problem_named(x, y, message):
    with pytest.raises(DataError, match=None) as info:
        validate_arrays(x, y, num_classes=3, where="my data")
    assert message in str(info.value) and str(info.value).startswith("my data")


def test_builtin_sets_refuse_a_path_and_bad_val_fraction():
    with pytest.raises(ConfigError, match="takes no data.path"):
        bs.load_dataset("digits", path="somewhere/")
    with pytest.raises(ConfigError, match="val_fraction"):
        bs.load_dataset("digits", val_fraction=1.5)
    with pytest.raises(ConfigError, match="did you mean 'digits'"):
        bs.load_dataset("digit")


def test_spiral_is_the_lecture_spiral_and_needs_a_nonlinear_model():
    x, y = make_spiral(100, classes=3, seed=0)
    assert x.shape == (300, 2) and sorted(set(y.tolist())) == [0, 1, 2]
    radius = np.linalg.norm(x, axis=1)
    assert radius.max() <= 1.0 + 1e-6  # r in [0, 1] (noise moves only the angle)
    data = bs.prepare(bs.load_dataset("spiral"))
    assert data.input_shape == (2,) and data.num_classes == 3
    accuracy = {}
    for hidden in ((), (100,)):
        bs.train.seed_everything(0)
        net = bs.blocks.mlp(data.input_shape, 3, hidden=hidden)
        # Small data, full batch: L-BFGS's home ground (docs/lectures.md §8).
        accuracy[hidden] = bs.fit(net, data, bs.Recipe(optimizer="lbfgs", epochs=5, device="cpu"), progress=False).test_accuracy
    # cs231n's case study: a linear classifier gets ~50%, a 2-layer net ~98%.
    assert accuracy[()] < 0.65 and accuracy[(100,)] > 0.9


def test_select_classes_relabels_a_subset():
    data = bs.load_dataset("digits")
    part = select_classes(data, [7, 3], train_size=40)
    assert part.num_classes == 2 and part.class_names == ("7", "3")
    assert len(part.train) == 40 and set(part.test.y.tolist()) == {0, 1}
    sevens = data.test.x[data.test.y == 7]
    assert torch.equal(part.test.x[part.test.y == 0], sevens)
    with pytest.raises(ConfigError, match="distinct indices"):
        select_classes(data, [1, 1])
