"""`babysit blocks` and choosing blocks by name from the CLI."""

import importlib
import json
import pkgutil

import pytest
from typer.testing import CliRunner

from babysit.cli import app
from babysit.cli.blocks import BLOCKS
from babysit.registry import Registry

runner = CliRunner()


def _table_rows(output: str) -> list[list[str]]:
    """The cells of a rich table's rows, without whitespace (a wrapped description spans several lines)."""
    rows: list[list[str]] = []
    for line in output.splitlines():
        cells = ["".join(c.split()) for c in line.split("│")[1:-1]]
        if len(cells) != 4 or cells[0] == "family":
            continue
        if cells[1]:
            rows.append(cells)
        elif rows:
            rows[-1][2] += cells[2]
    return rows


def test_blocks_lists_every_entry_of_every_registry_with_its_description():
    result = runner.invoke(app, ["blocks"])
    assert result.exit_code == 0, result.output
    rows = _table_rows(result.stdout)
    expected = [
        [family, entry.name, "".join(entry.description.split()), f"--{key}={entry.name}"]
        for family, (registry, key) in BLOCKS.items()
        for entry in registry.entries()
    ]
    assert rows == expected


def test_no_block_registry_is_left_out():
    # Every Registry defined in the block packages appears in `babysit blocks`.
    listed = {id(reg) for reg, _ in BLOCKS.values()}
    for package in ("babysit.nn", "babysit.data", "babysit.optim", "babysit.watch"):
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__, package + "."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if isinstance(value, Registry):
                    assert id(value) in listed, f"{info.name}.{name} is missing from babysit blocks"


def test_blocks_can_show_one_family_and_refuses_unknown_ones():
    result = runner.invoke(app, ["blocks", "optimizer"])
    assert result.exit_code == 0
    assert [row[1] for row in _table_rows(result.stdout)] == ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "lbfgs"]
    bad = runner.invoke(app, ["blocks", "optimiser"])
    assert bad.exit_code == 2
    lines = [l for l in bad.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "did you mean 'optimizer'" in lines[0]


def test_train_with_a_missing_cifar10_folder_prints_one_line_and_exits_2():
    result = runner.invoke(app, ["train", "--data", "cifar10", "--data.path", "missing/"])
    assert result.exit_code == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "cifar10: folder 'missing/' does not exist" in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_every_kind_of_block_is_selectable_from_the_cli():
    args = [
        "train", "--data", "digits", "--model", "mlp", "--json", "--epochs", "3",
        "--data.preprocess=channel_mean", "--data.augment=crop", "--data.crop_padding=1",
        "--model.activation=maxout", "--model.init=normal", "--model.init_std=0.05",
        "--model.dropout=0.2", "--model.dropout_kind=vanilla", "--model.hidden=[32]",
        "--train.optimizer=nesterov", "--train.lr=0.05", "--train.momentum=0.5", "--train.momentum_final=0.9",
        "--train.schedule=step", "--train.period=1", "--train.max_norm=3", "--train.l1=1e-5",
        "--train.averaging=ema", "--train.ema_decay=0.9",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["test_accuracy"] > 0.5


@pytest.mark.parametrize(
    "override, message",
    [
        ("--train.schedule=cosin", "unknown schedule 'cosin'"),
        ("--train.averaging=swa", "unknown averaging 'swa'"),
        ("--data.augment=flop", "did you mean 'flip'"),
        ("--model.dropout_kind=inverse", "did you mean 'inverted'"),
        ("--data.pca_components=1.5", "pca_components"),
    ],
)
def test_bad_block_names_exit_2_with_one_line(override, message):
    result = runner.invoke(app, ["train", "--data", "digits", "--model", "mlp", "--data.preprocess=pca", override])
    assert result.exit_code == 2, result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
