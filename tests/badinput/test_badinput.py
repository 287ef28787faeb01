"""The bad-input suite: one row per kind of bad input, each refused in one line with no changed file.

Every row gives a short id, its area, the command line (or a Python-API call),
the exit code (2: babysit's own errors and usage errors) and a phrase the one
error line must contain. For every row the test checks that the output holds no
traceback, that the exit code is neither 0 nor 1, that exactly one `error:` line
names the problem, and that no file in the workspace (run folders, configs, the
tune store, the data) was created, changed or removed. `python
tests/badinput/test_badinput.py` prints the README's summary of the table.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import babysit as bs
from babysit.cli import app
from babysit.errors import BabysitError
from babysit.train.checkpoint import load_checkpoint
from babysit.tune.space import parse_param

README = Path(__file__).resolve().parents[2] / "README.md"
AREAS = {
    "config": "config files",
    "flags": "command-line flags",
    "csv": "CSV data files",
    "npz": ".npz data files",
    "cifar": "CIFAR-10 batch files",
    "script": "model scripts",
    "runs": "run folders",
    "checkpoint": "checkpoints",
    "tune": "tune spaces and stores",
    "fs": "file-system conditions",
    "api": "the Python API",
}


@dataclass(frozen=True)
class Row:
    """One kind of bad input: `args` for the CLI ({ws} is the workspace) or `api`, a call given the workspace."""

    id: str
    area: str
    phrase: str
    args: tuple[str, ...] = ()
    api: Callable[[Path], object] | None = None
    code: int = 2
    patch: str | None = None  # a fault to inject (see `_inject`)
    trains: bool = False  # the refusal may come once training has started (else starting it fails the row)
    skip: Callable[[], str] | None = None  # returns a reason to skip on this machine, or ""


RUN = ("--train.device=cpu", "--watch.probes=off", "--runs-dir", "{ws}/runs/new")
TRAIN = ("train", "--data", "spiral", "--model", "mlp", "--model.hidden=[8]", "--epochs", "1", *RUN)


def train(*extra: str) -> tuple[str, ...]:
    """A one-epoch spiral MLP run with `extra` flags."""
    return (*TRAIN, *extra)


def config(name: str, *extra: str) -> tuple[str, ...]:
    return ("train", "--config", f"{{ws}}/configs/{name}.toml", "--runs-dir", "{ws}/runs/new", *extra)


def arrays(name: str, *extra: str) -> tuple[str, ...]:
    return ("train", "--data", "arrays", "--data.path", f"{{ws}}/data/{name}", "--model", "mlp", "--epochs", "1", *RUN, *extra)


def cifar(name: str) -> tuple[str, ...]:
    return ("train", "--data", "cifar10", "--data.path", f"{{ws}}/data/cifar/{name}", "--model", "mlp", "--epochs", "1", *RUN)


def script(name: str) -> tuple[str, ...]:
    return ("train", "--data", "spiral", "--model", "script", f"--model.script={{ws}}/scripts/{name}", "--epochs", "1", *RUN)


def tune(*params: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A one-trial search on the workspace's tune store, as a new study: a refusal must leave the journal as it was."""
    params = params or ("train.lr=log_uniform(1e-3, 1e-1)",)
    store = ("--storage", "{ws}/tune/journal.log", "--study", "t", "--report", "{ws}/tune/report.html", "--export", "{ws}/tune/best.toml")
    return ("tune", "--data", "spiral", "--model", "mlp", "--model.hidden=[8]", "--train.device=cpu", "--epochs", "1", "--trials", "1", *(a for p in params for a in ("--param", p)), *store, *extra)


def resume(name: str) -> tuple[str, ...]:
    return ("train", "--resume", f"{{ws}}/runs/{name}", "--runs-dir", "{ws}/runs")


def root_skip() -> str:
    return "running as root, which can write to read-only folders" if os.geteuid() == 0 else ""


def _api_from_arrays(x, y, **kw) -> Callable[[Path], object]:
    return lambda ws: bs.Dataset.from_arrays(x, y, **kw)


_x = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
_y = np.arange(30) % 3

ROWS = [
    # -- config files ---------------------------------------------------------------
    Row("toml-malformed", "config", "is not valid TOML", config("malformed")),
    Row("toml-double-equals", "config", "is not valid TOML", config("double_equals")),
    Row("toml-duplicate-key", "config", "is not valid TOML", config("duplicate_key")),
    Row("toml-not-utf8", "config", "is not UTF-8 text", config("latin1")),
    Row("config-is-folder", "config", "is a folder, not a file", config("folder")),
    Row("config-missing", "config", "does not exist", config("no_such_file")),
    Row("section-unknown", "config", "did you mean 'train'", config("unknown_section")),
    Row("key-synonym", "config", "did you mean 'train.lr'", config("unknown_key")),
    Row("key-typo", "config", "did you mean 'model.hidden'", config("typo_key")),
    Row("section-not-table", "config", "must be a table of keys", config("section_not_table")),
    Row("top-level-key", "config", "unknown config section 'lr'", config("top_level_key")),
    Row("value-is-table", "config", "train.lr must be a number", config("lr_table")),
    Row("lr-string", "config", "train.lr must be a number, got 'fast'", config("lr_string")),
    Row("epochs-fraction", "config", "train.epochs must be a whole number, got 1.5", config("epochs_fraction")),
    Row("epochs-string", "config", "train.epochs must be a whole number", config("epochs_string")),
    Row("bool-string", "config", "model.batchnorm must be true or false", config("bool_string")),
    Row("hidden-string", "config", "model.hidden must be a whole number", config("hidden_string")),
    Row("hidden-zero", "config", "positive sizes", config("hidden_zero")),
    Row("hidden-nested", "config", "model.hidden must be a whole number", config("hidden_nested")),
    Row("dropout-one", "config", "model.dropout must be in [0, 1)", config("dropout_one")),
    Row("val-fraction-zero", "config", "data.val_fraction must be in (0, 1)", config("val_zero")),
    Row("val-fraction-big", "config", "data.val_fraction must be in (0, 1)", config("val_big")),
    Row("divergence-low", "config", "watch.divergence_factor must be > 1", config("divergence_low")),
    Row("probes-unknown", "config", "unknown probe preset 'max'", config("probes_unknown")),
    Row("name-number", "config", "model.name must be a string, got 7", config("name_number")),
    Row("optimizer-typo", "config", "did you mean 'sgd'", config("optimizer_typo")),
    Row("lr-date", "config", "train.lr must be a number", config("lr_date")),
    Row("lr-inf-toml", "config", "train.lr must be a finite number", config("lr_inf")),
    Row("wd-nan-toml", "config", "train.weight_decay must be a finite number", config("wd_nan")),
    Row("seed-huge", "config", "train.seed must be in [0, 2**32)", config("seed_huge")),
    Row("preprocess-unknown", "config", "unknown preprocessing 'zscore'", config("preprocess_unknown")),
    Row("script-without-name", "config", "set model.name = 'script'", config("script_without_name")),
    Row("path-for-builtin", "config", "takes no data.path", config("path_for_builtin")),
    # -- command-line flags ---------------------------------------------------------
    Row("lr-word", "flags", "Invalid value for '--lr'", train("--lr", "fast")),
    Row("epochs-word", "flags", "Invalid value for '--epochs'", train("--epochs", "ten")),
    Row("seed-negative", "flags", "train.seed must be in [0, 2**32), got -1", train("--seed", "-1")),
    Row("seed-word", "flags", "Invalid value for '--seed'", train("--seed", "abc")),
    Row("wd-nan", "flags", "train.weight_decay must be a finite number, got nan", train("--train.weight_decay=nan")),
    Row("lr-inf", "flags", "train.lr must be a finite number", train("--train.lr=inf")),
    Row("lr-negative", "flags", "train.lr must be a positive number", train("--lr", "-0.1")),
    Row("lr-zero", "flags", "train.lr must be a positive number", train("--train.lr=0")),
    Row("l1-nan", "flags", "train.l1 must be a finite number", train("--train.l1=nan")),
    Row("l1-negative", "flags", "train.l1", train("--train.l1=-1")),
    Row("wd-negative", "flags", "train.weight_decay", train("--train.weight_decay=-0.1")),
    Row("momentum-one", "flags", "train.momentum must be in [0, 1)", train("--train.momentum=1")),
    Row("beta2-big", "flags", "train.beta2 must be in [0, 1)", train("--train.beta2=1.5")),
    Row("epochs-zero", "flags", "train.epochs must be at least 1", train("--train.epochs=0")),
    Row("epochs-negative", "flags", "train.epochs must be at least 1", train("--epochs", "-3")),
    Row("batch-zero", "flags", "train.batch_size must be at least 1", train("--train.batch_size=0")),
    Row("batch-float", "flags", "train.batch_size must be a whole number", train("--train.batch_size=2.5")),
    Row("kernel-zero", "flags", "model.kernel_size must be at least 1", ("train", "--data", "digits", "--model", "convnet", "--model.kernel_size=0", "--epochs", "1", *RUN)),
    Row("kernel-too-big", "flags", "model.kernel_size=99 is larger than the input", ("train", "--data", "digits", "--model", "convnet", "--model.kernel_size=99", "--epochs", "1", *RUN)),
    Row("channels-negative", "flags", "positive sizes", ("train", "--data", "digits", "--model", "convnet", "--model.channels=[-1]", *RUN)),
    Row("augment-typo-in-list", "flags", "unknown augmentation 'crp'", train("--data.augment=[flip,crp]")),
    Row("augment-on-flat-data", "flags", "data.augment works on images or signals", train("--data.augment=[flip]")),
    Row("model-unknown", "flags", "unknown model 'nosuch'", train("--model", "nosuch")),
    Row("data-unknown", "flags", "unknown data set 'nosuch'", ("train", "--data", "nosuch", *RUN)),
    Row("optimizer-unknown", "flags", "did you mean 'adam'", train("--optimizer", "adamm")),
    Row("activation-unknown", "flags", "unknown activation 'relu2'", train("--model.activation=relu2")),
    Row("init-unknown", "flags", "unknown init", train("--model.init=xavierr")),
    Row("schedule-unknown", "flags", "unknown schedule 'cosinee'", train("--train.schedule=cosinee")),
    Row("averaging-unknown", "flags", "unknown averaging", train("--train.averaging=swa")),
    Row("override-no-value", "flags", "needs a value", train("--train.lr")),
    Row("stray-argument", "flags", "unexpected argument 'stray'", train("stray")),
    Row("unknown-option", "flags", "unexpected argument '--fast'", train("--fast")),
    Row("override-unknown-section", "flags", "unknown config section 'trian'", train("--trian.lr=0.1")),
    Row("override-unknown-key", "flags", "unknown config key 'train.nosuch'", train("--train.nosuch=1")),
    Row("override-synonym", "flags", "did you mean 'train.lr'", train("--train.learning_rate=0.1")),
    Row("val-fraction-999", "flags", "leaves 1 of 900 training samples for 3 classes", train("--data.val_fraction=0.999")),
    Row("val-fraction-one", "flags", "data.val_fraction must be in (0, 1)", train("--data.val_fraction=1")),
    Row("dropout-negative", "flags", "model.dropout must be in [0, 1)", train("--model.dropout=-0.5")),
    Row("label-smoothing-one", "flags", "train.label_smoothing", train("--train.label_smoothing=1")),
    Row("clip-negative", "flags", "train.clip_grad_norm", train("--train.clip_grad_norm=-1")),
    Row("ema-decay-big", "flags", "train.ema_decay", train("--train.ema_decay=1.5")),
    Row("patience-zero", "flags", "train.patience", train("--train.patience=0")),
    Row("monitor-unknown", "flags", "train.monitor", train("--train.monitor=acc")),
    Row("precision-unknown", "flags", "train.precision", train("--train.precision=fp8")),
    Row("device-unknown", "flags", "train.device", trains=True, args=("train", "--data", "spiral", "--model", "mlp", "--epochs", "1", "--train.device=tpu", "--runs-dir", "{ws}/runs/new")),
    Row("divergence-one", "flags", "watch.divergence_factor must be > 1", train("--watch.divergence_factor=1")),
    Row("model-too-big", "flags", "parameters", train("--model.hidden=[200000,200000,200000]")),
    Row("resume-with-flags", "flags", "--resume continues a run with its saved config; drop --lr", ("train", "--resume", "{ws}/runs/done", "--lr", "0.1")),
    Row("config-no-value", "flags", "requires an argument", ("train", "--config")),
    Row("command-typo", "flags", "No such command 'trian'", ("trian",)),
    Row("check-lr-word", "flags", "Invalid value for '--lr'", ("check", "--data", "spiral", "--lr", "fast")),
    Row("check-seed-negative", "flags", "train.seed must be in [0, 2**32)", ("check", "--data", "spiral", "--model", "mlp", "--seed", "-1")),
    Row("demo-epochs", "flags", "No such option: --epochs", ("demo", "--epochs", "0")),
    Row("auto-budget-zero", "flags", "--budget must be positive", ("auto", "--data", "spiral", "--budget", "0", "--out", "{ws}/runs/auto")),
    Row("auto-budget-negative", "flags", "--budget must be positive", ("auto", "--data", "spiral", "--budget", "-1", "--out", "{ws}/runs/auto")),
    Row("auto-budget-word", "flags", "must be a duration like 10m", ("auto", "--data", "spiral", "--budget", "abc", "--out", "{ws}/runs/auto")),
    Row("auto-budget-unit", "flags", "must be a duration like 10m", ("auto", "--data", "spiral", "--budget", "10y", "--out", "{ws}/runs/auto")),
    Row("auto-budget-nan", "flags", "--budget", ("auto", "--data", "spiral", "--budget", "nans", "--out", "{ws}/runs/auto")),
    Row("tune-trials-zero", "flags", "tune.trials must be at least 1", tune(extra=("--trials", "0"))),
    Row("tune-trials-negative", "flags", "tune.trials must be at least 1", tune(extra=("--trials", "-3"))),
    Row("tune-trials-word", "flags", "Invalid value for '--trials'", tune(extra=("--trials", "many"))),
    Row("tune-strategy-unknown", "flags", "unknown search strategy 'bayes'", tune(extra=("--strategy", "bayes"))),
    Row("tune-prune-unknown", "flags", "prune", tune(extra=("--prune", "always"))),
    Row("tune-grace-zero", "flags", "tune.grace must be at least 1 epoch", tune(extra=("--prune", "halving", "--grace", "0"))),
    Row("tune-mode-unknown", "flags", "unknown execution mode 'koala'", tune(extra=("--mode", "koala"))),
    Row("tune-epoch-growth-zero", "flags", "epoch_growth", tune(extra=("--epoch-growth", "0"))),
    Row("tune-stages-zero", "flags", "tune.stages", tune(extra=("--stages", "0"))),
    Row("tune-workers-zero", "flags", "--workers", tune(extra=("--mode", "caviar", "--workers", "0"))),
    # -- CSV data files -------------------------------------------------------------
    Row("csv-no-label-column", "csv", "has no column 'label'", arrays("no_label.csv")),
    Row("csv-label-column-typo", "csv", "did you mean 'label'", arrays("few.csv", "--data.label_column=labl")),
    Row("csv-ragged-short", "csv", "line 3 has 2 fields but the header has 3", arrays("ragged.csv")),
    Row("csv-ragged-long", "csv", "line 3 has 4 fields but the header has 3", arrays("ragged_long.csv")),
    Row("csv-non-numeric", "csv", "'x' is not a number", arrays("non_numeric.csv")),
    Row("csv-empty-cell", "csv", "'' is not a number", arrays("empty_cell.csv")),
    Row("csv-empty", "csv", "needs a header row and at least one data row", arrays("empty.csv")),
    Row("csv-header-only", "csv", "needs a header row and at least one data row", arrays("header_only.csv")),
    Row("csv-nan-cells", "csv", "NaN/inf", arrays("nan_cells.csv")),
    Row("csv-inf-cell", "csv", "line 7", arrays("inf_cells.csv")),
    Row("csv-one-class", "csv", "a classifier needs at least 2 classes", arrays("one_class.csv")),
    Row("csv-float-labels", "csv", "labels must be whole class indices", arrays("float_labels.csv")),
    Row("csv-negative-labels", "csv", "negative", arrays("neg_labels.csv")),
    Row("csv-huge-label", "csv", "labels up to 1000000000000 for 40 samples", arrays("huge_label.csv")),
    Row("csv-only-label", "csv", "no feature columns", arrays("only_label.csv")),
    Row("csv-duplicate-header", "csv", "names column 'a' twice", arrays("duplicate_header.csv")),
    Row("csv-blank-label", "csv", "line 5", arrays("blank_label.csv")),
    Row("csv-binary", "csv", "is not a UTF-8 text CSV", arrays("binary.csv")),
    Row("csv-latin1", "csv", "is not a UTF-8 text CSV", arrays("latin1.csv")),
    Row("csv-nul-byte", "csv", "arrays:", arrays("nul.csv")),
    Row("csv-too-few-rows", "csv", "samples", arrays("few.csv")),
    Row("csv-is-folder", "csv", "is a folder, not a file", arrays("folder.csv")),
    Row("csv-missing", "csv", "does not exist", arrays("no_such.csv")),
    Row("data-wrong-suffix", "csv", "is neither .npz nor .csv", arrays("data.txt")),
    Row("arrays-no-path", "csv", "arrays reads your local file", ("train", "--data", "arrays", "--model", "mlp", *RUN)),
    # -- .npz data files ------------------------------------------------------------
    Row("npz-missing-x", "npz", "it needs arrays named 'x' (inputs) and 'y' (labels)", arrays("no_x.npz")),
    Row("npz-missing-y", "npz", "it needs arrays named 'x' (inputs) and 'y' (labels)", arrays("no_y.npz")),
    Row("npz-lengths", "npz", "has 40 inputs but 30 labels", arrays("lengths.npz")),
    Row("npz-nan-x", "npz", "NaN/inf values in 1 of 40 samples (first in sample 3)", arrays("nan_x.npz")),
    Row("npz-inf-x", "npz", "NaN/inf values in 1 of 40 samples (first in sample 3)", arrays("inf_x.npz")),
    Row("npz-negative-labels", "npz", "negative", arrays("neg_labels.npz")),
    Row("npz-float-labels", "npz", "labels must be whole class indices", arrays("float_labels.npz")),
    Row("npz-nan-labels", "npz", "labels must be whole class indices", arrays("nan_labels.npz")),
    Row("npz-huge-label", "npz", "labels up to 1000000000000 for 40 samples", arrays("huge_label.npz")),
    Row("npz-one-class", "npz", "a classifier needs at least 2 classes", arrays("one_class.npz")),
    Row("npz-string-x", "npz", "x must be numeric", arrays("str_x.npz")),
    Row("npz-string-y", "npz", "labels must be integer class indices", arrays("str_y.npz")),
    Row("npz-complex-x", "npz", "x must be numeric", arrays("complex_x.npz")),
    Row("npz-object-member", "npz", "is not a readable .npz file", arrays("object_x.npz")),
    Row("npz-text-members", "npz", "is not a readable .npz file", arrays("text_member.npz")),
    Row("npz-text-file", "npz", "is not a readable .npz file", arrays("text.npz")),
    Row("npz-zero-bytes", "npz", "is not a readable .npz file", arrays("zero.npz")),
    Row("npz-test-lengths", "npz", "10 inputs but 5 labels", arrays("test_lengths.npz")),
    Row("npz-test-shape", "npz", "train samples have shape (4,) but test samples (3,)", arrays("test_shape.npz")),
    Row("npz-test-nan", "npz", "x_test", arrays("test_nan.npz")),
    Row("npz-test-labels", "npz", "y_test", arrays("test_labels.npz")),
    Row("npz-only-x-test", "npz", "must hold both x_test and y_test, or neither", arrays("only_x_test.npz")),
    Row("npz-y-2d", "npz", "labels must be a 1-D vector", arrays("y_2d.npz")),
    Row("npz-x-1d", "npz", "inputs must be (N, features...)", arrays("x_1d.npz")),
    Row("npz-x-scalar", "npz", "x must be an array of samples", arrays("x_scalar.npz")),
    Row("npz-y-scalar", "npz", "y must be", arrays("y_scalar.npz")),
    Row("npz-empty", "npz", "no samples", arrays("empty.npz")),
    Row("npz-too-few", "npz", "samples", arrays("few.npz")),
    Row("npz-is-folder", "npz", "is a folder, not a file", arrays("folder.npz")),
    Row("npz-convnet-flat", "npz", "convnet needs inputs shaped", arrays("ok.npz", "--model", "convnet")),
    # -- CIFAR-10 batch files -------------------------------------------------------
    Row("cifar-truncated", "cifar", "is not a CIFAR-10 python-version batch file", cifar("truncated")),
    Row("cifar-wrong-keys", "cifar", "has no 'data'/'labels' entries", cifar("wrong_keys")),
    Row("cifar-wrong-shape", "cifar", "data must be (N, 3072) rows of pixels, got shape (6, 1024)", cifar("wrong_shape")),
    Row("cifar-missing-batch", "cifar", "lacks test_batch", cifar("missing_batch")),
    Row("cifar-label-count", "cifar", "6 images but 4 labels", cifar("label_count")),
    Row("cifar-label-range", "cifar", "labels must be integers in 0..9", cifar("label_range")),
    Row("cifar-negative-label", "cifar", "labels must be integers in 0..9", cifar("negative_label")),
    Row("cifar-string-labels", "cifar", "labels", cifar("string_labels")),
    Row("cifar-not-a-dict", "cifar", "holds a list, not a batch dict", cifar("not_a_dict")),
    Row("cifar-text-file", "cifar", "is not a CIFAR-10 python-version batch file", cifar("text_file")),
    Row("cifar-no-label-names", "cifar", "has no label_names", cifar("no_label_names")),
    Row("cifar-malicious-pickle", "cifar", "refusing to load", cifar("malicious")),
    Row("cifar-nan-pixels", "cifar", "uint8", cifar("nan_pixels")),
    Row("cifar-batch-is-folder", "cifar", "data_batch_1", cifar("batch_is_folder")),
    Row("cifar-no-path", "cifar", "cifar10 reads local files and is never downloaded", ("train", "--data", "cifar10", "--model", "mlp", *RUN)),
    Row("cifar-path-is-file", "cifar", "is a file, not a folder", ("train", "--data", "cifar10", "--data.path", "{ws}/data/ok.npz", "--model", "mlp", *RUN)),
    Row("cifar-path-missing", "cifar", "does not exist", ("train", "--data", "cifar10", "--data.path", "{ws}/data/nowhere", "--model", "mlp", *RUN)),
    # -- model scripts --------------------------------------------------------------
    Row("script-syntax-error", "script", "SyntaxError", script("syntax.py")),
    Row("script-no-function", "script", "build_model", script("no_function.py")),
    Row("script-named-function-missing", "script", "make_net", script("no_function.py:make_net")),
    Row("script-raises", "script", "no weights for this shape", script("raises.py")),
    Row("script-not-module", "script", "not a torch nn.Module", script("not_module.py")),
    Row("script-returns-none", "script", "NoneType", script("returns_none.py")),
    Row("script-import-error", "script", "no_such_package_xyz", script("import_error.py")),
    Row("script-wrong-classes", "script", "must have 3 outputs (num_classes)", script("wrong_classes.py")),
    Row("script-wrong-shape", "script", "(N, 3)", script("wrong_shape.py")),
    Row("script-forward-raises", "script", "forward is not written yet", script("forward_raises.py")),
    Row("script-wrong-input", "script", "input", script("wrong_input.py")),
    Row("script-not-callable", "script", "build_model", script("not_callable.py")),
    Row("script-missing", "script", "does not exist", script("nowhere.py")),
    Row("script-is-folder", "script", "folder", script("folder.py")),
    Row("script-unset", "script", "model.script", ("train", "--data", "spiral", "--model", "script", *RUN)),
    # -- run folders ----------------------------------------------------------------
    Row("resume-not-a-run", "runs", "is not a run record", resume("empty")),
    Row("resume-missing", "runs", "is not a run record", resume("nowhere")),
    Row("resume-completed", "runs", "already completed", resume("done")),
    Row("resume-other-architecture", "runs", "does not match", resume("otherarch")),
    Row("resume-check-folder", "runs", "holds no run record", resume("checkonly")),
    Row("name-taken-by-other-files", "runs", "is not a run", train("--name", "stranger", "--runs-dir", "{ws}/runs")),
    Row("name-taken-completed", "runs", "pick another --name", train("--name", "done", "--runs-dir", "{ws}/runs")),
    Row("name-too-long", "runs", "characters", train("--name", "a" * 300)),
    Row("name-dotdot", "runs", "no slashes", train("--name", "x/../..")),
    Row("name-dot", "runs", "run name", train("--name", "..")),
    Row("name-empty", "runs", "run name", train("--name", "")),
    Row("report-missing", "runs", "is not a run record", ("report", "{ws}/runs/nowhere")),
    Row("report-empty", "runs", "is not a run record", ("report", "{ws}/runs/empty")),
    Row("report-out-folder", "runs", "is a folder", ("report", "{ws}/runs/done", "--no-per-class", "--out", "{ws}/runs")),
    Row("export-not-a-run", "runs", "is not a run record", ("export", "tensorboard", "{ws}/runs/empty")),
    # -- checkpoints ----------------------------------------------------------------
    Row("checkpoint-corrupt", "checkpoint", "cannot be read", resume("corrupt")),
    Row("checkpoint-truncated", "checkpoint", "cannot be read", resume("truncated")),
    Row("checkpoint-malicious", "checkpoint", "cannot be read", resume("malicious")),
    Row("checkpoint-foreign", "checkpoint", "is not a babysit checkpoint", resume("foreign")),
    Row("checkpoint-missing", "checkpoint", "does not exist", resume("nockpt")),
    Row("checkpoint-api-malicious", "checkpoint", "cannot be read", api=lambda ws: load_checkpoint(ws / "runs/malicious/checkpoints/last.pt")),
    # -- tune spaces and stores -----------------------------------------------------
    Row("param-no-equals", "tune", "must look like KEY=SPEC", tune("train.lr")),
    Row("param-empty-key", "tune", "must look like KEY=SPEC", tune("=log_uniform(1e-3, 1)")),
    Row("param-unknown-kind", "tune", "unknown search range 'foo'", tune("train.lr=foo(1, 2)")),
    Row("param-unreadable", "tune", "cannot read search range", tune("train.lr=1e-3..1")),
    Row("param-one-bound", "tune", "takes (low, high)", tune("train.lr=log_uniform(1e-3)")),
    Row("param-reversed", "tune", "needs low < high", tune("train.lr=uniform(1, 0)")),
    Row("param-log-zero", "tune", "needs low > 0", tune("train.lr=log_uniform(0, 1)")),
    Row("param-nan", "tune", "needs two finite numbers", tune("train.lr=log_uniform(nan, 1)")),
    Row("param-words", "tune", "needs two finite numbers", tune("train.lr=uniform(a, b)")),
    Row("param-int-fraction", "tune", "needs whole numbers", tune("model.hidden=int_uniform(1.5, 3)")),
    Row("param-int-log-zero", "tune", "needs low >= 1", tune("model.hidden=int_uniform(0, 8, log=true)")),
    Row("param-beta-one", "tune", "is for betas in [0, 1)", tune("train.momentum=one_minus_log(0.9, 1.5)")),
    Row("param-bad-keyword", "tune", "takes (low, high)", tune("train.lr=log_uniform(1e-3, 1, log=true)")),
    Row("choice-empty", "tune", "needs at least one value", tune("model.activation=choice([])")),
    Row("choice-not-list", "tune", "choice takes a list", tune("model.activation=choice(relu)")),
    Row("choice-duplicate", "tune", "lists a value twice", tune("model.activation=choice([relu, relu])")),
    Row("choice-invalid-value", "tune", "unknown activation 'nosuch'", tune("model.activation=choice([relu, nosuch])")),
    Row("choice-invalid-type", "tune", "model.hidden must be a whole number", tune("model.hidden=choice([wide, narrow])")),
    Row("choice-invalid-optimizer", "tune", "unknown optimizer 'adamx'", tune("train.optimizer=choice([adam, adamx])")),
    Row("range-invalid-values", "tune", "model.dropout must be in [0, 1)", tune("model.dropout=uniform(0.5, 2)")),
    Row("param-unknown-key", "tune", "did you mean 'train.lr'", tune("train.lrr=log_uniform(1e-3, 1)")),
    Row("param-unknown-section", "tune", "unknown config section", tune("trian.lr=log_uniform(1e-3, 1)")),
    Row("search-bad-toml", "tune", "is not valid TOML", tune(extra=("--search", "{ws}/searches/bad_toml.toml"))),
    Row("search-space-not-table", "tune", "[space] must be a table", tune(extra=("--search", "{ws}/searches/space_not_table.toml"))),
    Row("search-empty-space", "tune", "the search space is empty", tune(extra=("--search", "{ws}/searches/empty_space.toml"))),
    Row("search-unknown-setting", "tune", "did you mean 'tune.trials'", tune(extra=("--search", "{ws}/searches/unknown_setting.toml"))),
    Row("search-bad-spec", "tune", "takes (low, high)", tune(extra=("--search", "{ws}/searches/bad_spec.toml"))),
    Row("search-missing", "tune", "does not exist", tune(extra=("--search", "{ws}/searches/nowhere.toml"))),
    Row("storage-is-folder", "tune", "folder", ("tune", "--data", "spiral", "--model", "mlp", "--epochs", "1", "--trials", "1", "--param", "train.lr=log_uniform(1e-3, 1e-1)", "--storage", "{ws}/tune", "--report", "{ws}/runs/new/r.html")),
    # -- file-system conditions -----------------------------------------------------
    Row("runs-dir-is-file", "fs", "is a file, not a folder", train("--runs-dir", "{ws}/a_file")),
    Row("runs-dir-under-file", "fs", "a_file", train("--runs-dir", "{ws}/a_file/runs")),
    Row("check-out-is-file", "fs", "is a file, not a folder", ("check", "--data", "spiral", "--model", "mlp", "--out", "{ws}/a_file")),
    Row("report-out-under-file", "fs", "a_file", ("report", "{ws}/runs/done", "--no-per-class", "--out", "{ws}/a_file/report.html")),
    Row("export-under-file", "fs", "a_file", ("export", "tensorboard", "{ws}/runs/done", "--out", "{ws}/a_file/tb")),
    Row("disk-full", "fs", "No space left on device", ("report", "{ws}/runs/done", "--no-per-class"), patch="enospc"),
    Row("read-only-runs-dir", "fs", "Permission denied", train("--runs-dir", "{ws}/readonly/runs"), patch="readonly", skip=root_skip),
    # -- the Python API -------------------------------------------------------------
    Row("api-from-arrays-nan", "api", "NaN/inf", api=_api_from_arrays(np.where(_x > 1.5, np.nan, _x), _y)),
    Row("api-from-arrays-one-class", "api", "at least 2 classes", api=_api_from_arrays(_x, np.zeros(30, int))),
    Row("api-from-arrays-lengths", "api", "30 inputs but 20 labels", api=_api_from_arrays(_x, _y[:20])),
    Row("api-from-arrays-huge-label", "api", "labels up to 1000000000000", api=_api_from_arrays(_x, np.where(np.arange(30) == 0, 10**12, _y))),
    Row("api-from-arrays-val-fraction", "api", "data.val_fraction must be in (0, 1)", api=_api_from_arrays(_x, _y, val_fraction=1.0)),
    Row("api-from-arrays-test-pair", "api", "pass both x_test and y_test", api=_api_from_arrays(_x, _y, x_test=_x)),
    Row("api-load-dataset-option", "api", "has no option 'label_col'", api=lambda ws: bs.load_dataset("arrays", path=str(ws / "data/ok.npz"), label_col="y")),
    Row("api-build-config-section", "api", "did you mean 'train'", api=lambda ws: bs.build_config({"trian": {}})),
    Row("api-parse-param", "api", "needs at least one value", api=lambda ws: parse_param("choice([])")),
    Row("api-recipe-nan-lr", "api", "train.lr must be a positive number, got nan", api=lambda ws: bs.Recipe(lr=float("nan"))),
]


# What a message must never suggest: loading the file in a way that runs the code it holds.
UNSAFE_ADVICE = ("weights_only=False", "weights_only` set to `False", "allow_pickle", "safe_globals")


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under `root`: a file's size, mtime and SHA-256, a folder's presence."""
    out: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = ("dir",)
        else:
            st = p.stat()
            out[rel] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _inject(kind: str | None, ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if kind == "enospc":  # a full disk: the atomic write's fsync fails as on a full file system
        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr("babysit.io.os.fsync", full)
    elif kind == "readonly":
        (ws / "readonly").mkdir(exist_ok=True)
        os.chmod(ws / "readonly", 0o555)


def _no_training(*args, **kwargs):
    raise AssertionError("training started: the bad input was accepted")


def _fill(args: tuple[str, ...], ws: Path) -> list[str]:
    return [a.replace("{ws}", str(ws)) for a in args]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_refused_in_one_line_and_changes_nothing(row: Row, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = row.skip() if row.skip else ""
    if reason:
        pytest.skip(reason)
    _inject(row.patch, workspace, monkeypatch)
    if not row.trains:  # a refusal must come before any epoch: a row that starts training fails fast instead of running
        monkeypatch.setattr("babysit.build.fit", _no_training)
    monkeypatch.chdir(workspace)  # a command that writes into the current folder shows up in the snapshot
    before = _snapshot(workspace)
    if row.api is not None:
        with pytest.raises(BabysitError) as caught:
            row.api(workspace)
        message = str(caught.value)
        assert "\n" not in message and row.phrase in message, message
        assert not any(unsafe in message for unsafe in UNSAFE_ADVICE), message
    else:
        result = CliRunner().invoke(app, _fill(row.args, workspace))
        text = result.stdout + result.stderr
        assert "Traceback" not in text, text
        assert not any(unsafe in text for unsafe in UNSAFE_ADVICE), text  # never "load it unsafely" (numpy's, torch's advice)
        assert result.exit_code not in (0, 1) and result.exit_code == row.code, text
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and row.phrase in errors[0], result.stderr
        assert result.stderr.rstrip().endswith(errors[0]), f"the error must be one line, and the last: {result.stderr}"
    assert _snapshot(workspace) == before, "a refused command changed the workspace"
    assert not (workspace / "PWNED").exists(), "a malicious pickle ran its code"


def test_the_table_has_150_kinds_in_every_area() -> None:
    counts = Counter(r.area for r in ROWS)
    assert len({r.id for r in ROWS}) == len(ROWS), "row ids must be unique"
    assert len(ROWS) >= 150 and set(counts) == set(AREAS), counts


def readme_section() -> str:
    """The README's 'Bad input' summary, generated from the table."""
    counts = Counter(r.area for r in ROWS)
    lines = [f"| {AREAS[a]} | {counts[a]} |" for a in AREAS]
    return "\n".join(["| area | kinds |", "|---|---|", *lines, f"| **total** | **{len(ROWS)}** |"])


def test_readme_summarises_the_table() -> None:
    text = README.read_text(encoding="utf-8")
    assert readme_section() in text, "README's Bad input table is out of date; print it with python tests/badinput/test_badinput.py"


# A handful of rows through the real console entry point: the exit code a shell sees.
SUBPROCESS = [("lr-word", 2), ("seed-negative", 2), ("toml-malformed", 2), ("npz-huge-label", 2)]


@pytest.mark.parametrize("row_id, code", SUBPROCESS)
def test_the_real_process_exits_with_the_code(row_id: str, code: int, workspace: Path) -> None:
    row = next(r for r in ROWS if r.id == row_id)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "babysit", *_fill(row.args, workspace)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert re.search(re.escape(row.phrase), done.stderr), done.stderr


if __name__ == "__main__":
    print(readme_section())
