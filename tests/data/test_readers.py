"""Local-file data sets: CIFAR-10 python batches (a tiny copy in the real format), .npz and .csv arrays."""

import os
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import babysit as bs
from babysit.errors import DataError

NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def _write_batch(path, images: np.ndarray, labels: list[int]) -> None:
    """One batch exactly as the CIFAR-10 python version stores it: a protocol-2 pickle with bytes keys."""
    batch = {
        b"batch_label": path.name.encode(),
        b"labels": labels,
        b"data": images.reshape(len(images), -1),  # (N, 3072) uint8: R plane, G plane, B plane, row-major
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


@pytest.fixture
def cifar_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        images = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
        _write_batch(folder / name, images, [(i + j) % 10 for j in range(4)])
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": NAMES, b"num_cases_per_batch": 4, b"num_vis": 3072}, protocol=2))
    return folder


def test_cifar10_reads_the_python_version_batches(cifar_dir):
    data = bs.load_dataset("cifar10", path=str(cifar_dir), val_fraction=0.25)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert data.class_names[0] == "airplane" and data.class_names[-1] == "truck"
    assert (len(data.train), len(data.val), len(data.test)) == (15, 5, 4)
    # Pixel layout: row r of a batch is the 1024 red, then green, then blue values of one image.
    raw = pickle.loads((cifar_dir / "test_batch").read_bytes(), encoding="bytes")
    first = raw[b"data"][0]
    assert torch.equal(data.test.x[0, 1, 0, :], torch.tensor(first[1024:1056], dtype=torch.float32))
    assert data.test.y.tolist() == raw[b"labels"]
    # The archive's parent folder works too.
    assert bs.load_dataset("cifar10", path=str(cifar_dir.parent)).input_shape == (3, 32, 32)


def test_cifar10_problems_are_one_clear_data_error(cifar_dir, tmp_path):
    with pytest.raises(DataError, match="folder 'missing/' does not exist; set data.path"):
        bs.load_dataset("cifar10", path="missing/")
    with pytest.raises(DataError, match="set data.path"):
        bs.load_dataset("cifar10")
    (cifar_dir / "data_batch_3").unlink()
    with pytest.raises(DataError, match="lacks data_batch_3"):
        bs.load_dataset("cifar10", path=str(cifar_dir))
    (cifar_dir / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3' is not a CIFAR-10"):
        bs.load_dataset("cifar10", path=str(cifar_dir))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_cifar10_never_runs_code_from_a_pickle(cifar_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (cifar_dir / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit()}, protocol=2))
    with pytest.raises(DataError, match="refusing to load"):
        bs.load_dataset("cifar10", path=str(cifar_dir))
    assert not (tmp_path / "pwned.txt").exists()


def test_arrays_from_npz_with_and_without_a_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 2, 3)).astype(np.float32), rng.integers(0, 3, size=50)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = bs.load_dataset("arrays", path=str(tmp_path / "d.npz"))
    assert data.input_shape == (2, 3) and data.num_classes == 3
    assert len(data.train) + len(data.val) + len(data.test) == 50 and len(data.test) == 10
    np.savez(tmp_path / "e.npz", x=x, y=y, x_test=x[:7], y_test=y[:7], class_names=np.array(["a", "b", "c", "d"]))
    data = bs.load_dataset("arrays", path=str(tmp_path / "e.npz"))
    assert len(data.test) == 7 and data.class_names == ("a", "b", "c", "d") and data.num_classes == 4


def test_arrays_from_csv_with_a_named_label_column(tmp_path):
    rows = ["f1,species,f2"] + [f"{i * 0.5},{'cat' if i % 2 else 'dog'},{i}" for i in range(20)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    data = bs.load_dataset("arrays", path=str(tmp_path / "d.csv"), label_column="species")
    assert data.input_shape == (2,) and data.class_names == ("cat", "dog")
    x = torch.cat([data.train.x, data.val.x, data.test.x])
    y = torch.cat([data.train.y, data.val.y, data.test.y])
    assert torch.equal(y, (x[:, 1] % 2 == 0).long())  # odd i: cat (0); features f1, f2 without the label
    with pytest.raises(DataError, match="no column 'specie' \\(did you mean 'species'\\?\\); set data.label_column"):
        bs.load_dataset("arrays", path=str(tmp_path / "d.csv"), label_column="specie")


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.array([[0.0, np.nan]] * 10), "y": np.zeros(10, dtype=int)}, "NaN/inf"),
        ({"x": np.ones((10, 2)), "y": np.array([0, 1, -1] + [0] * 7)}, "negative labels"),
        ({"x": np.ones((10, 2)), "y": np.zeros(9, dtype=int)}, "10 inputs but 9 labels"),
        ({"x": np.ones(10), "y": np.zeros(10, dtype=int)}, "inputs must be (N, features...)"),
        ({"x": np.ones((10, 2)), "y": np.zeros((10, 2), dtype=int)}, "1-D vector"),
        ({"x": np.ones((10, 2)), "y": np.full(10, 0.5)}, "whole class indices"),
        ({"x": np.ones((10, 2)), "y": np.zeros(10, dtype=int), "x_test": np.ones((3, 2))}, "both x_test and y_test"),
        ({"x": np.ones((10, 2)), "y": np.zeros(10), "x_test": np.ones((3, 5)), "y_test": np.zeros(3)}, "same shape"),
        ({"inputs": np.ones((10, 2)), "labels": np.zeros(10)}, "needs arrays named 'x'"),
    ],
)
def test_bad_arrays_are_refused_with_the_problem_named(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as info:
        bs.load_dataset("arrays", path=str(tmp_path / "bad.npz"))
    assert message in str(info.value)


def test_bad_array_files_are_refused(tmp_path):
    (tmp_path / "d.txt").write_text("1,2\n")
    (tmp_path / "d.csv").write_text("a,label\n1,0\nx,1\n")
    (tmp_path / "short.csv").write_text("a,label\n1\n")
    for path, message in [
        ("nope.npz", "does not exist"),
        ("d.txt", "neither .npz nor .csv"),
        ("d.csv", "line 3, column 'a': 'x' is not a number"),
        ("short.csv", "line 2 has 1 fields"),
    ]:
        with pytest.raises(DataError, match=message):
            bs.load_dataset("arrays", path=str(tmp_path / path))


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=3, max_size=3), min_size=10, max_size=30),
    label_at=st.integers(0, 3),
    seed=st.integers(0, 100),
)
def test_csv_round_trip_keeps_every_row_and_label(tmp_path_factory, values, label_at, seed):
    rng = np.random.default_rng(seed)
    x = np.asarray(values, dtype=np.float32)
    y = rng.integers(0, 4, size=len(x))
    y[:4] = np.arange(4)  # every class present
    header = ["a", "b", "c"]
    header.insert(label_at, "target")
    lines = [",".join(header)]
    for row, label in zip(x, y):
        cells = [repr(float(v)) for v in row]
        cells.insert(label_at, str(label))
        lines.append(",".join(cells))
    path = tmp_path_factory.mktemp("csv") / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    data = bs.load_dataset("arrays", path=str(path), label_column="target", val_fraction=0.2)
    got = torch.cat([s.x for s in (data.train, data.val, data.test)])
    labels = torch.cat([s.y for s in (data.train, data.val, data.test)])
    assert data.num_classes == 4 and data.input_shape == (3,)
    # Same multiset of (features, label) rows: the splits only reorder them.
    rows = sorted(zip(map(tuple, got.tolist()), labels.tolist()))
    assert rows == sorted(zip(map(tuple, torch.from_numpy(x).tolist()), y.tolist()))
