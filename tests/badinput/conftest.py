"""The bad-input suite's workspace: every hostile file the table names, written once per session.

Files are written in their real formats (CIFAR-10 python-version batches are
protocol-2 pickles of dicts with bytes keys, as the archive ships them), and
the run folders, checkpoints and tune store are made by real babysit commands,
so a refusal is tested against what a user would actually hold.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from babysit.cli import app

CIFAR_NAMES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def _cifar(folder: Path, rng: np.random.Generator, rows: int = 6) -> None:
    """A well-formed CIFAR-10 python-version folder with `rows` images per batch."""
    folder.mkdir(parents=True)
    for name in CIFAR_NAMES:
        batch = {
            b"batch_label": name.encode(),
            b"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, rows)],
            b"filenames": [f"img{i}.png".encode() for i in range(rows)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_cases_per_batch": rows, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


class _Evil:
    """A pickle that runs a shell command when loaded (what weights_only and the CIFAR unpickler must refuse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write_data(d: Path, marker: Path) -> None:
    d.mkdir()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.arange(40) % 2
    npz = {
        "ok": dict(x=x, y=y),
        "no_x": dict(y=y),
        "no_y": dict(x=x),
        "lengths": dict(x=x, y=y[:30]),
        "nan_x": dict(x=np.where(np.arange(160).reshape(40, 4) == 13, np.nan, x), y=y),
        "inf_x": dict(x=np.where(np.arange(160).reshape(40, 4) == 13, np.inf, x), y=y),
        "neg_labels": dict(x=x, y=y - 1),
        "float_labels": dict(x=x, y=y + 0.5),
        "nan_labels": dict(x=x, y=np.where(y == 0, np.nan, 1.0)),
        "huge_label": dict(x=x, y=np.where(np.arange(40) == 0, 10**12, y)),
        "one_class": dict(x=x, y=np.zeros(40, dtype=np.int64)),
        "str_x": dict(x=np.array(["a"] * 40), y=y),
        "str_y": dict(x=x, y=np.array(["a", "b"] * 20)),
        "complex_x": dict(x=x.astype(np.complex64), y=y),
        "test_lengths": dict(x=x, y=y, x_test=x[:10], y_test=y[:5]),
        "test_shape": dict(x=x, y=y, x_test=x[:10, :3], y_test=y[:10]),
        "test_nan": dict(x=x, y=y, x_test=np.full((10, 4), np.nan, np.float32), y_test=y[:10]),
        "test_labels": dict(x=x, y=y, x_test=x[:10], y_test=y[:10] + 5),
        "only_x_test": dict(x=x, y=y, x_test=x[:10]),
        "y_2d": dict(x=x, y=np.stack([y, y], 1)),
        "x_1d": dict(x=x[:, 0], y=y),
        "x_scalar": dict(x=np.float32(3.0), y=y),
        "y_scalar": dict(x=x, y=np.int64(1)),
        "empty": dict(x=np.zeros((0, 4), np.float32), y=np.zeros(0, np.int64)),
        "few": dict(x=x[:3], y=y[:3]),
    }
    for name, arrays in npz.items():
        np.savez(d / f"{name}.npz", **arrays)
    # Members that are not arrays: a pickled object array (allow_pickle=False must refuse it) and a text member.
    np.savez(d / "object_x.npz", x=np.array([{"a": 1}] * 40, dtype=object), y=y)
    import zipfile

    with zipfile.ZipFile(d / "text_member.npz", "w") as z:
        z.writestr("x.npy", "not an array")
        z.writestr("y.npy", "not an array either")
    (d / "text.npz").write_text("hello")
    (d / "zero.npz").write_bytes(b"")
    csv = {
        "no_label": "a,b\n1,2\n3,4\n",
        "ragged": "a,b,label\n1,2,0\n3,1\n",
        "ragged_long": "a,b,label\n1,2,0\n3,1,1,9\n",
        "non_numeric": "a,b,label\n1,x,0\n3,4,1\n",
        "empty_cell": "a,b,label\n" + "".join(f"{i},,{i % 2}\n" for i in range(20)),
        "empty": "",
        "header_only": "a,b,label\n",
        "nan_cells": "a,b,label\n" + "".join(f"{i},nan,{i % 2}\n" for i in range(20)),
        "inf_cells": "a,b,label\n" + "".join(f"{i},{'inf' if i == 5 else i},{i % 2}\n" for i in range(20)),
        "one_class": "a,b,label\n" + "".join(f"{i},{i},0\n" for i in range(20)),
        "float_labels": "a,b,label\n" + "".join(f"{i},{i},{i % 2 + 0.5}\n" for i in range(20)),
        "neg_labels": "a,b,label\n" + "".join(f"{i},{i},{i % 2 - 1}\n" for i in range(20)),
        "huge_label": "a,b,label\n" + "".join(f"{i},{i},{10**12 if i == 0 else i % 2}\n" for i in range(40)),
        "only_label": "label\n" + "".join(f"{i % 2}\n" for i in range(20)),
        "duplicate_header": "a,a,label\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(20)),
        "blank_label": "a,b,label\n" + "".join(f"{i},{i},{'' if i == 3 else i % 2}\n" for i in range(20)),
        "few": "a,b,label\n1,2,0\n3,4,1\n",
    }
    for name, text in csv.items():
        (d / f"{name}.csv").write_text(text)
    (d / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (d / "latin1.csv").write_bytes("a,é,label\n1,2,0\n3,4,1\n".encode("latin-1"))
    (d / "nul.csv").write_bytes(b"a,b,label\n1,\x002,0\n3,4,1\n")
    (d / "data.txt").write_text("a,b,label\n1,2,0\n")
    (d / "folder.csv").mkdir()
    (d / "folder.npz").mkdir()
    # CIFAR-10 folders: one well-formed, the others each damaged in one way.
    c = d / "cifar"
    c.mkdir()
    _cifar(c / "ok", rng)
    damaged = {
        "truncated": lambda f: (f / "data_batch_1").write_bytes((f / "data_batch_1").read_bytes()[:200]),
        "wrong_keys": lambda f: (f / "data_batch_2").write_bytes(pickle.dumps({b"pixels": np.zeros((6, 3072), np.uint8)}, protocol=2)),
        "wrong_shape": lambda f: (f / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((6, 1024), np.uint8), b"labels": [0] * 6}, protocol=2)),
        "missing_batch": lambda f: (f / "test_batch").unlink(),
        "label_count": lambda f: (f / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((6, 3072), np.uint8), b"labels": [0] * 4}, protocol=2)),
        "label_range": lambda f: (f / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((6, 3072), np.uint8), b"labels": [57] * 6}, protocol=2)),
        "negative_label": lambda f: (f / "data_batch_4").write_bytes(pickle.dumps({b"data": np.zeros((6, 3072), np.uint8), b"labels": [-1] * 6}, protocol=2)),
        "string_labels": lambda f: (f / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((6, 3072), np.uint8), b"labels": ["cat"] * 6}, protocol=2)),
        "not_a_dict": lambda f: (f / "data_batch_5").write_bytes(pickle.dumps([1, 2, 3], protocol=2)),
        "text_file": lambda f: (f / "data_batch_2").write_text("hello"),
        "no_label_names": lambda f: (f / "batches.meta").write_bytes(pickle.dumps({b"num_vis": 3072}, protocol=2)),
        "malicious": lambda f: (f / "data_batch_1").write_bytes(pickle.dumps(_Evil(marker), protocol=2)),
        "nan_pixels": lambda f: (f / "data_batch_1").write_bytes(pickle.dumps({b"data": np.full((6, 3072), np.nan, np.float32), b"labels": [0] * 6}, protocol=2)),
        "batch_is_folder": lambda f: ((f / "data_batch_1").unlink(), (f / "data_batch_1").mkdir()),
    }
    for name, damage in damaged.items():
        shutil.copytree(c / "ok", c / name)
        damage(c / name)


SCRIPTS = {
    "syntax": "def build_model(input_shape, num_classes)\n    return None\n",
    "no_function": "import torch\n\ndef make(input_shape, num_classes):\n    return torch.nn.Linear(2, num_classes)\n",
    "raises": "def build_model(input_shape, num_classes):\n    raise ValueError('no weights for this shape')\n",
    "not_module": "def build_model(input_shape, num_classes):\n    return 3\n",
    "returns_none": "def build_model(input_shape, num_classes):\n    pass\n",
    "import_error": "import no_such_package_xyz\n",
    "wrong_classes": "import torch\n\ndef build_model(input_shape, num_classes):\n    return torch.nn.Linear(input_shape[-1], num_classes + 2)\n",
    "wrong_shape": (
        "import torch\n\nclass Net(torch.nn.Module):\n    def __init__(self, d, c):\n        super().__init__()\n        self.l = torch.nn.Linear(d, c)\n"
        "    def forward(self, x):\n        return self.l(x).unsqueeze(1)\n\n"
        "def build_model(input_shape, num_classes):\n    return Net(input_shape[-1], num_classes)\n"
    ),
    "forward_raises": (
        "import torch\n\nclass Net(torch.nn.Module):\n    def __init__(self, d, c):\n        super().__init__()\n        self.l = torch.nn.Linear(d, c)\n"
        "    def forward(self, x):\n        raise RuntimeError('forward is not written yet')\n\n"
        "def build_model(input_shape, num_classes):\n    return Net(input_shape[-1], num_classes)\n"
    ),
    "wrong_input": "import torch\n\ndef build_model(input_shape, num_classes):\n    return torch.nn.Linear(input_shape[-1] + 3, num_classes)\n",
    "not_callable": "build_model = 5\n",
}

CONFIGS = {
    "malformed": "[train\nlr = 1\n",
    "double_equals": "[train]\nlr = = 1\n",
    "duplicate_key": "[train]\nlr = 0.1\nlr = 0.2\n",
    "unknown_section": "[trian]\nlr = 0.1\n",
    "unknown_key": "[train]\nlearning_rate = 0.1\n",
    "typo_key": "[model]\nhiden = [64]\n",
    "section_not_table": "train = 3\n",
    "lr_string": "[train]\nlr = \"fast\"\n",
    "epochs_fraction": "[train]\nepochs = 1.5\n",
    "epochs_string": "[train]\nepochs = \"ten\"\n",
    "bool_string": "[model]\nbatchnorm = \"yes\"\n",
    "hidden_string": "[model]\nhidden = \"wide\"\n",
    "hidden_zero": "[model]\nhidden = [0]\n",
    "hidden_nested": "[model]\nhidden = [[64]]\n",
    "dropout_one": "[model]\ndropout = 1.0\n",
    "val_zero": "[data]\nval_fraction = 0\n",
    "val_big": "[data]\nval_fraction = 1.5\n",
    "divergence_low": "[watch]\ndivergence_factor = 0.5\n",
    "probes_unknown": "[watch]\nprobes = \"max\"\n",
    "name_number": "[model]\nname = 7\n",
    "optimizer_typo": "[train]\noptimizer = \"sgdd\"\n",
    "lr_date": "[train]\nlr = 1979-05-27\n",
    "lr_inf": "[train]\nlr = inf\n",
    "wd_nan": "[train]\nweight_decay = nan\n",
    "seed_huge": "[train]\nseed = 1099511627776\n",
    "preprocess_unknown": "[data]\npreprocess = \"zscore\"\n",
    "script_without_name": "[model]\nname = \"mlp\"\nscript = \"net.py\"\n",
    "path_for_builtin": "[data]\nname = \"spiral\"\npath = \"/tmp/spiral.csv\"\n",
    "lr_table": "[train.lr]\nvalue = 1\n",
    "top_level_key": "lr = 0.1\n",
    "good": "[data]\nname = \"spiral\"\n[model]\nname = \"mlp\"\nhidden = [8]\n[train]\nepochs = 1\n",
}

SEARCHES = {
    "bad_toml": "trials = \n",
    "space_not_table": "space = 3\n",
    "empty_space": "trials = 2\n[space]\n",
    "unknown_setting": "trails = 2\n[space]\n\"train.lr\" = \"log_uniform(1e-3, 1e-1)\"\n",
    "bad_spec": "[space]\n\"train.momentum\" = \"one_minus_log(0.9)\"\n",
}


def _cli(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


def _build(root: Path) -> None:
    marker = root / "PWNED"
    _write_data(root / "data", marker)
    scripts = root / "scripts"
    scripts.mkdir()
    for name, text in SCRIPTS.items():
        (scripts / f"{name}.py").write_text(text)
    (scripts / "folder.py").mkdir()
    configs = root / "configs"
    configs.mkdir()
    for name, text in CONFIGS.items():
        (configs / f"{name}.toml").write_text(text)
    (configs / "latin1.toml").write_bytes("[train]\noptimizer = \"é\"\n".encode("latin-1"))
    (configs / "folder.toml").mkdir()
    searches = root / "searches"
    searches.mkdir()
    for name, text in SEARCHES.items():
        (searches / f"{name}.toml").write_text(text)

    runs = root / "runs"
    tiny = ["--data", "spiral", "--model", "mlp", "--model.hidden=[8]", "--epochs", "1", "--train.device=cpu", "--watch.probes=off", "--runs-dir", str(runs), "--json"]
    _cli("train", *tiny, "--name", "done")
    _cli("train", *tiny[:4], "--model.hidden=[5,5]", *tiny[5:], "--name", "other")
    _cli("report", str(runs / "done"), "--no-per-class")
    # Killed runs (no summary.json), each with a different problem in checkpoints/last.pt.
    for name in ("otherarch", "corrupt", "malicious", "foreign", "truncated", "nockpt"):
        shutil.copytree(runs / "done", runs / name)
        (runs / name / "summary.json").unlink()
    last = "checkpoints/last.pt"
    shutil.copy(runs / "other" / last, runs / "otherarch" / last)
    (runs / "corrupt" / last).write_bytes(b"\x00garbage" * 100)
    (runs / "malicious" / last).write_bytes(pickle.dumps(_Evil(marker)))
    torch.save({"weights": torch.zeros(3)}, runs / "foreign" / last)
    (runs / "truncated" / last).write_bytes((runs / "done" / last).read_bytes()[:300])
    shutil.rmtree(runs / "nockpt" / "checkpoints")
    (runs / "checkonly").mkdir()  # what `babysit check --out runs/checkonly` leaves: no run record
    (runs / "checkonly" / "check.json").write_text("{}\n")
    (runs / "empty").mkdir()
    (runs / "stranger").mkdir()  # a folder of the user's own files, not a run and not a check's output
    (runs / "stranger" / "notes.txt").write_text("mine\n")
    (root / "a_file").write_text("a file where a folder is expected\n")
    # A real tune store of one trial, which refused tune commands must leave byte-identical.
    _cli(
        "tune", "--data", "spiral", "--model", "mlp", "--model.hidden=[8]", "--train.device=cpu",
        "--param", "train.lr=log_uniform(1e-3, 1e-1)", "--trials", "1", "--epochs", "1",
        "--storage", str(root / "tune" / "journal.log"), "--study", "s", "--report", str(root / "tune" / "report.html"),
        "--export", str(root / "tune" / "best.toml"), "--json",
    )  # fmt: skip


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """The folder holding every file the table refers to as {ws}."""
    root = tmp_path_factory.mktemp("badinput")
    _build(root)
    return root


# -- shared by the bounds, nesting, secrets, signals, full-disk and concurrency tests ----------------

# What a message must never suggest: loading a file in a way that runs the code it holds.
UNSAFE_ADVICE = ("weights_only=False", "weights_only` set to `False", "allow_pickle", "safe_globals")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file under `root` with its size, mtime and bytes (folders by presence)."""
    out: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = ("link", os.readlink(p))
        elif p.is_dir():
            out[str(p.relative_to(root))] = ("dir",)
        else:
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, p.read_bytes())
    return out


@pytest.fixture
def refused(monkeypatch: pytest.MonkeyPatch):
    """`refused(args, phrase, root)`: the CLI refuses `args` with exit 2 and one last `error:` line holding `phrase`,
    no traceback and no unsafe advice, before any training, and nothing under `root` changes."""

    def check(args: list[str], phrase: str, root: Path) -> str:
        def no_training(*a, **k):
            raise AssertionError("training started: the request was accepted")

        monkeypatch.setattr("babysit.build.fit", no_training)
        monkeypatch.chdir(root)
        before = snapshot(root)
        result = CliRunner().invoke(app, [str(a) for a in args])
        text = result.stdout + result.stderr
        assert "Traceback" not in text and not any(u in text for u in UNSAFE_ADVICE), text
        assert result.exit_code == 2, text
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and phrase in errors[0], result.stderr
        assert result.stderr.rstrip().endswith(errors[0]), result.stderr
        assert snapshot(root) == before, "a refused command changed a file"
        return errors[0]

    return check


class Processes:
    """The process table, read from /proc: who is alive, and whose children."""

    @staticmethod
    def _stat(pid: int | str) -> list[str] | None:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None

    def alive(self, pid: int) -> bool:
        fields = self._stat(pid)
        return fields is not None and fields[0] != "Z"

    def children(self, pid: int) -> list[int]:
        """The live children of `pid`."""
        found = []
        for entry in os.listdir("/proc"):
            fields = self._stat(entry) if entry.isdigit() else None
            if fields and int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
        return found


@pytest.fixture
def processes() -> Processes:
    return Processes()
