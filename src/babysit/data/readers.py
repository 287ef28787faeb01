"""Data sets read from a user's local files: CIFAR-10 batches, and .npz / .csv arrays.

Nothing is downloaded: `cifar10` reads the standard CIFAR-10 "python version"
(the extracted `cifar-10-python.tar.gz`), `arrays` reads a user's own arrays.
Both register in `DATASETS` like the built-in sets and return `RawData`; a
missing or malformed file is one `DataError` line naming the file and the fix.
"""

from __future__ import annotations

import csv
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from babysit.data.datasets import DATASETS, RawData, as_tensors, carve_test, class_indices
from babysit.data.memory import available_memory
from babysit.errors import DataError, did_you_mean, safe_reason

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
        ("numpy.core.multiarray", "scalar"),  # a numpy integer label
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_file(path: Path) -> dict[str, Any]:
    """One CIFAR-10 pickle as a dict with str keys (the files were written by Python 2, with bytes keys)."""
    if path.is_dir():
        raise DataError(f"cifar10: '{path}' is a folder, not a batch file; {_CIFAR_HELP}")
    if not path.is_file():
        raise DataError(f"cifar10: '{path}' is missing; {_CIFAR_HELP}")
    try:
        with path.open("rb") as f:
            raw = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # any unpickling failure means "not a CIFAR batch file"
        raise DataError(f"cifar10: '{path}' is not a CIFAR-10 python-version batch file ({safe_reason(e)}); {_CIFAR_HELP}") from None
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
    if data.dtype != np.uint8:
        raise DataError(f"cifar10: '{path}' pixels must be uint8 (0..255), got dtype {data.dtype}; {_CIFAR_HELP}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"cifar10: '{path}' labels must be a list of class indices, got {labels.dtype} of shape {labels.shape}")
    if len(labels) != len(data):
        raise DataError(f"cifar10: '{path}' has {len(data)} images but {len(labels)} labels; the file is damaged, re-extract it")
    return data.reshape(-1, 3, 32, 32), labels


@DATASETS.register("cifar10")
def cifar10(path: str | None = None) -> RawData:
    """CIFAR-10 from the local python-version batch files: 50,000 train / 10,000 test 3x32x32 images, 10 classes."""
    if path is None:
        raise DataError(f"cifar10 reads local files and is never downloaded: {_CIFAR_HELP}")
    folder = Path(path)
    if folder.is_file():
        raise DataError(f"cifar10: '{path}' is a file, not a folder; {_CIFAR_HELP}")
    if not folder.is_dir():
        raise DataError(f"cifar10: folder '{path}' does not exist; {_CIFAR_HELP}")
    if (folder / "cifar-10-batches-py").is_dir():  # the archive's parent folder works too
        folder = folder / "cifar-10-batches-py"
    missing = [name for name in CIFAR_FILES if not (folder / name).exists()]
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
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        # safe_reason: numpy's refusal of an object array names allow_pickle, which would run the file's code.
        raise DataError(f"arrays: '{path}' is not a readable .npz file ({safe_reason(e)}); save plain numeric arrays with numpy.savez(path, x=..., y=...)") from None
    odd = next((k for k, v in arrays.items() if not isinstance(v, np.ndarray)), None)
    if odd is not None:
        raise DataError(f"arrays: '{path}' is not a readable .npz file (member '{odd}' is not a numpy array); save it with numpy.savez(path, x=..., y=...)")
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"arrays: '{path}' holds {sorted(arrays)}; it needs arrays named 'x' (inputs) and 'y' (labels)")
    for key in ("x", "x_test"):
        if key in arrays and arrays[key].ndim == 0:
            raise DataError(f"arrays: '{path}' {key} must be an array of samples (N, features...), got a single value")
    for key in ("y", "y_test"):
        if key in arrays and arrays[key].ndim == 0:
            raise DataError(f"arrays: '{path}' {key} must be a vector of N labels, got a single value")
    return arrays


# Bounds on a CSV, checked as it is read: a column count past this is not a table of features
# (babysit reads CSVs into memory as Python lists; wider data belongs in an .npz), and a text
# file needs about this many bytes of memory per byte while it is parsed into numbers.
MAX_CSV_COLUMNS = 100_000
CSV_MEMORY_FACTOR = 12


def _read_rows(path: Path) -> list[list[str]]:
    """Every row of a CSV file, refusing (one line each) a file too large for memory, a field over
    Python's csv field-size limit, a header wider than `MAX_CSV_COLUMNS`, and text that is not UTF-8."""
    size = path.stat().st_size
    if size * CSV_MEMORY_FACTOR > available_memory():
        raise DataError(
            f"arrays: '{path}' is {size / 2**30:.2f} GiB of text, about {size * CSV_MEMORY_FACTOR / 2**30:.1f} GiB to parse, "
            f"more than the {available_memory() / 2**30:.1f} GiB of memory available; save the arrays as .npz (numpy.savez) instead"
        )
    rows: list[list[str]] = []
    reader = None
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            for row in reader:
                if len(row) > MAX_CSV_COLUMNS:
                    raise DataError(
                        f"arrays: '{path}' line {reader.line_num} has {len(row):,} fields; babysit reads CSVs of at most "
                        f"{MAX_CSV_COLUMNS:,} columns: save wider data as .npz (numpy.savez(path, x=..., y=...))"
                    )
                rows.append(row)
    except UnicodeDecodeError as e:
        raise DataError(f"arrays: '{path}' is not a UTF-8 text CSV (byte {e.start} cannot be decoded); save it as UTF-8 CSV text with a header row") from None
    except csv.Error as e:
        line = reader.line_num if reader is not None else 1
        if "field larger than field limit" in str(e):
            raise DataError(
                f"arrays: '{path}' line {line} has a field longer than the CSV field-size limit ({csv.field_size_limit():,} characters); "
                "a CSV of numbers has short fields: check for a missing line break or quote, or save the arrays as .npz"
            ) from None
        raise DataError(f"arrays: '{path}' line {line} is not valid CSV ({e}); save it as CSV text with a header row") from None
    return rows


def _read_csv(path: Path, label_column: str) -> dict[str, np.ndarray]:
    """Features from every column but `label_column`; labels are class indices or class names."""
    rows = _read_rows(path)
    if sum(1 for row in rows if row) < 2:
        raise DataError(f"arrays: '{path}' needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    seen: set[str] = set()
    twice = next((h for h in header if h in seen or seen.add(h)), None)  # one pass: a wide header is not quadratic
    if twice is not None:
        raise DataError(f"arrays: '{path}' header names column '{twice}' twice; give every column its own name")
    if label_column not in header:
        raise DataError(
            f"arrays: '{path}' has no column '{label_column}'{did_you_mean(label_column, header)}; "
            f"set data.label_column to one of: {', '.join(header)}"
        )
    if len(header) < 2:
        raise DataError(f"arrays: '{path}' has no feature columns, only '{label_column}'; add the input columns")
    col = header.index(label_column)
    features, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:  # a blank line holds no sample
            continue
        if len(row) != len(header):
            raise DataError(f"arrays: '{path}' line {line} has {len(row)} fields but the header has {len(header)}")
        if not row[col].strip():
            raise DataError(f"arrays: '{path}' line {line} has no label in column '{label_column}'; give every row a label (or drop the row)")
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
    if file.is_dir():
        raise DataError(f"arrays: '{path}' is a folder, not a file; {usage}")
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
        if key in a and a[key].dtype.kind == "f" and a[key].ndim >= 1 and len(a[key]):
            bad = ~np.isfinite(a[key].reshape(len(a[key]), -1)).all(axis=1)
            if bad.any():
                where = f"line {int(bad.argmax()) + 2}" if file.suffix.lower() == ".csv" else f"sample {int(bad.argmax())}"
                raise DataError(
                    f"arrays: '{file}' {key} has NaN/inf values in {int(bad.sum())} of {len(bad)} samples (first in {where}); "
                    "clean or impute them before training"
                )
    if ("x_test" in a) != ("y_test" in a):
        raise DataError(f"arrays: '{file}' must hold both x_test and y_test, or neither")
    if "x_test" in a:
        x_train, y_train, x_test, y_test = a["x"], a["y"], a["x_test"], a["y_test"]
        unseen = sorted(set(np.ravel(y_test).tolist()) - set(np.ravel(y_train).tolist()))
        if unseen and "class_names" not in a:
            shown = ", ".join(map(str, unseen[:5])) + (", ..." if len(unseen) > 5 else "")
            raise DataError(f"arrays: '{file}' y_test has labels that y never has ({shown}); a model cannot learn classes it never sees in training")
    else:
        if len(a["x"]) != len(a["y"]):
            raise DataError(f"arrays: '{file}' has {len(a['x'])} inputs but {len(a['y'])} labels; they must have the same length")
        x_train, y_train, x_test, y_test = carve_test(a["x"], a["y"])
    _, y_all = as_tensors(np.zeros((0,)), np.concatenate([np.ravel(y_train), np.ravel(y_test)]), f"arrays '{file}'")
    if "class_names" in a:
        names = [str(n) for n in np.ravel(a["class_names"])]
        top = int(y_all.max()) if len(y_all) else -1
        if top >= len(names):
            raise DataError(
                f"arrays: '{file}' class_names has {len(names)} name{'s' if len(names) != 1 else ''} but the labels go up to {top} "
                f"({top + 1} classes); give one name per class, in label order, or drop class_names"
            )
    else:
        names, remap = class_indices(y_all, f"arrays: '{file}'")
        if remap is not None:
            y_train, y_test = remap(y_train), remap(y_test)
    return RawData(x_train, y_train, x_test, y_test, names)
