"""Data sets read from a user's local files: CIFAR-10 batches, and .npz / .csv arrays.

Nothing is downloaded: `cifar10` reads the standard CIFAR-10 "python version"
(the extracted `cifar-10-python.tar.gz`), `arrays` reads a user's own arrays.
Both register in `DATASETS` like the built-in sets and return `RawData`; a
missing or malformed file is one `DataError` line naming the file and the fix.
"""

from __future__ import annotations

import csv
import warnings
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from babysit.data.datasets import DATASETS, RawData, as_tensors, carve_test
from babysit.errors import DataError, did_you_mean

CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_CIFAR_HELP = (
    "set data.path to the folder extracted from cifar-10-python.tar.gz "
    "(cifar-10-batches-py, holding data_batch_1..5, test_batch, batches.meta)"
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle plain containers and numpy arrays only: a pickle can run any code, a batch file needs none."""

    _ALLOWED = {
        ("_codecs", "encode"),  # how protocol-2 pickles from Python 3 spell a bytes object
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_file(path: Path) -> dict[str, Any]:
    """One CIFAR-10 pickle as a dict with str keys (the files were written by Python 2, with bytes keys)."""
    if not path.is_file():
        raise DataError(f"cifar10: '{path}' is missing; {_CIFAR_HELP}")
    try:
        with path.open("rb") as f:
            raw = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # any unpickling failure means "not a CIFAR batch file"
        raise DataError(f"cifar10: '{path}' is not a CIFAR-10 python-version batch file ({e}); {_CIFAR_HELP}") from None
    if not isinstance(raw, dict):
        raise DataError(f"cifar10: '{path}' holds a {type(raw).__name__}, not a batch dict; {_CIFAR_HELP}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) from one batch file.

    Each row of `data` is 3072 bytes: the 1024 red values of the 32x32 image in
    row-major order, then green, then blue, so a reshape gives (3, 32, 32).
    """
    batch = _read_cifar_file(path)
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"cifar10: '{path}' has no 'data'/'labels' entries; {_CIFAR_HELP}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"cifar10: '{path}' data must be (N, 3072) rows of pixels, got shape {data.shape}")
    return data.reshape(-1, 3, 32, 32), labels


@DATASETS.register("cifar10")
def cifar10(path: str | None = None) -> RawData:
    """CIFAR-10 from the local python-version batch files: 50,000 train / 10,000 test 3x32x32 images, 10 classes."""
    if path is None:
        raise DataError(f"cifar10 reads local files and is never downloaded: {_CIFAR_HELP}")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"cifar10: folder '{path}' does not exist; {_CIFAR_HELP}")
    if (folder / "cifar-10-batches-py").is_dir():  # the archive's parent folder works too
        folder = folder / "cifar-10-batches-py"
    missing = [name for name in CIFAR_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(f"cifar10: folder '{folder}' lacks {', '.join(missing)}; {_CIFAR_HELP}")
    train = [_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = _cifar_batch(folder / "test_batch")
    meta = _read_cifar_file(folder / "batches.meta")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
    if len(names) < 2:
        raise DataError(f"cifar10: '{folder / 'batches.meta'}' has no label_names; {_CIFAR_HELP}")
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return RawData(x_train, y_train, x_test, y_test, names)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"arrays: '{path}' is not a readable .npz file ({e}); save it with numpy.savez(path, x=..., y=...)") from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"arrays: '{path}' holds {sorted(arrays)}; it needs arrays named 'x' (inputs) and 'y' (labels)")
    return arrays


def _read_csv(path: Path, label_column: str) -> dict[str, np.ndarray]:
    """Features from every column but `label_column`; labels are class indices or class names."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"arrays: '{path}' is not a UTF-8 text CSV ({e.__class__.__name__}); save it as CSV text with a header row") from None
    if len(rows) < 2:
        raise DataError(f"arrays: '{path}' needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise DataError(
            f"arrays: '{path}' has no column '{label_column}'{did_you_mean(label_column, header)}; "
            f"set data.label_column to one of: {', '.join(header)}"
        )
    col = header.index(label_column)
    features, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"arrays: '{path}' line {line} has {len(row)} fields but the header has {len(header)}")
        labels.append(row[col].strip())
        try:
            features.append([float(v) for i, v in enumerate(row) if i != col])
        except ValueError:
            bad = next(i for i, v in enumerate(row) if i != col and not _is_number(v))
            raise DataError(f"arrays: '{path}' line {line}, column '{header[bad]}': {row[bad]!r} is not a number") from None
    out = {"x": np.asarray(features, dtype=np.float32)}
    if all(_is_number(v) for v in labels):
        out["y"] = np.asarray([float(v) for v in labels])
    else:  # class names: index them in sorted order
        names = sorted(set(labels))
        out["y"] = np.asarray([names.index(v) for v in labels])
        out["class_names"] = np.asarray(names)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@DATASETS.register("arrays")
def arrays(path: str | None = None, label_column: str = "label") -> RawData:
    """Your own data: a .npz with x, y (optionally x_test, y_test, class_names), or a .csv with a label column."""
    usage = "set data.path to a .npz file with arrays x, y or a .csv file with a header and a label column"
    if path is None:
        raise DataError(f"arrays reads your local file: {usage}")
    file = Path(path)
    if not file.is_file():
        raise DataError(f"arrays: file '{path}' does not exist; {usage}")
    if file.suffix.lower() == ".npz":
        a = _read_npz(file)
    elif file.suffix.lower() == ".csv":
        a = _read_csv(file, label_column)
    else:
        raise DataError(f"arrays: '{file}' is neither .npz nor .csv; {usage}")
    for key in ("x", "x_test"):
        if key in a and a[key].dtype.kind not in "fiub":
            raise DataError(f"arrays: '{file}' {key} must be numeric, got dtype {a[key].dtype}")
    if ("x_test" in a) != ("y_test" in a):
        raise DataError(f"arrays: '{file}' must hold both x_test and y_test, or neither")
    if "x_test" in a:
        x_train, y_train, x_test, y_test = a["x"], a["y"], a["x_test"], a["y_test"]
    else:
        if len(a["x"]) != len(a["y"]):
            raise DataError(f"arrays: '{file}' has {len(a['x'])} inputs but {len(a['y'])} labels; they must have the same length")
        x_train, y_train, x_test, y_test = carve_test(a["x"], a["y"])
    _, y_all = as_tensors(np.zeros((0,)), np.concatenate([np.ravel(y_train), np.ravel(y_test)]), f"arrays '{file}'")
    if "class_names" in a:
        names = [str(n) for n in a["class_names"]]
    else:
        names, remap = _class_indices(y_all, file)
        if remap is not None:
            y_train, y_test = remap(y_train), remap(y_test)
    return RawData(x_train, y_train, x_test, y_test, names)


# A label range this much larger than the sample count is a corrupt file, not a class layout;
# building that many output units would exhaust memory before any message.
MAX_RANGE_PER_SAMPLE = 100
MIN_RANGE_LIMIT = 1000


def _class_indices(y: Any, file: Path) -> tuple[list[str], Callable[[np.ndarray], np.ndarray] | None]:
    """Class names for integer labels, and a remapping to 0..C-1 when the labels skip values (with a warning)."""
    if not len(y):
        return [], None
    top, n = int(y.max()), len(y)
    limit = max(MIN_RANGE_LIMIT, MAX_RANGE_PER_SAMPLE * n)
    if top + 1 > limit:
        raise DataError(
            f"arrays: '{file}' has labels up to {top} for {n} samples: a label range far larger than the number of "
            f"samples (limit {limit}); labels must be class indices 0..C-1"
        )
    present = sorted(int(v) for v in np.unique(np.asarray(y)))
    # Negative labels (often -1 for "unlabelled") are refused by validate_arrays, not remapped away.
    if present[0] < 0 or present == list(range(len(present))):
        return [str(i) for i in range(top + 1)], None
    mapping = {old: new for new, old in enumerate(present)}
    shown = ", ".join(f"{old}->{new}" for old, new in mapping.items())
    warnings.warn(f"arrays: '{file}' labels are not 0..{len(present) - 1}; remapped {shown}", stacklevel=2)
    lookup = np.vectorize(lambda v: mapping[int(v)], otypes=[np.int64])
    return [str(old) for old in present], lambda labels: lookup(np.asarray(labels)) if np.size(labels) else np.asarray(labels, dtype=np.int64)
