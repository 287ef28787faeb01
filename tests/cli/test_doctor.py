"""`babysit doctor` driven as a user would: a model script or a built-in model, the report's path, exit codes."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from babysit.cli import app
from babysit.cli.doctor import split_script
from babysit.errors import ConfigError

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_model.py"
QUICK = ("--data", "digits", "--epochs", "2", "--train.device=cpu")


def invoke(tmp_path, *args):
    return runner.invoke(app, ["doctor", *args, "--runs-dir", str(tmp_path)])


def report_path(result):
    return Path(result.stdout.strip().splitlines()[-1])


def test_doctor_on_a_model_script_writes_the_record_the_checks_and_the_report(tmp_path):
    result = invoke(tmp_path, str(EXAMPLE), *QUICK, "--name", "mine")
    assert result.exit_code == 0, result.output
    path = report_path(result)
    run = tmp_path / "mine"
    assert path == run / "report.html" and path.read_text().startswith("<!doctype html>")
    assert {"check.json", "lr_range.png", "probes.jsonl", "metrics.jsonl", "summary.json", "checkpoints"} <= {p.name for p in run.iterdir()}
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == {**config["model"], "name": "script", "script": str(EXAMPLE)} and config["train"]["epochs"] == 2
    assert "no problems found" in result.stdout
    page = path.read_text()
    assert "my_model.py" in page and page.count("data:image/png;base64,") == 8


def test_a_broken_built_in_model_exits_1_and_names_the_problem_first(tmp_path):
    result = invoke(tmp_path, "--model", "mlp", *QUICK, "--model.init=zeros", "--name", "zeros")
    assert result.exit_code == 1, result.output
    assert report_path(result).is_file()
    table = result.stdout[result.stdout.index("findings (most important first)"):]
    assert table.index("init_symmetry") < min(table.index(r) for r in ("loss_flat", "dead_relu_at_init") if r in table)


def test_an_override_before_the_script_is_still_an_override(tmp_path):
    result = invoke(tmp_path, "--train.lr=0.003", str(EXAMPLE), *QUICK, "--name", "lr")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "lr" / "config.json").read_text())
    assert config["train"]["lr"] == 0.003 and config["model"]["name"] == "script"


@pytest.mark.parametrize(
    "args, message",
    [
        (("missing.py",), "model script"),
        ((str(EXAMPLE) + ":make_net",), "defines no function 'make_net'"),
        ((str(EXAMPLE), "--model", "mlp"), "give a MODEL_SCRIPT or --model, not both"),
        (("a.py", "b.py"), "give one MODEL_SCRIPT, got 2"),
        (("--model", "mlp", "--train.learning_rate=0.1"), "did you mean 'train.lr'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_leaves_no_run(tmp_path, args, message):
    result = invoke(tmp_path, *args, "--data", "digits")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not any(tmp_path.iterdir())


def test_split_script_examples():
    assert split_script(["--train.lr", "0.1", "net.py", "--model.x=1"]) == ("net.py", ["--train.lr", "0.1", "--model.x=1"])
    assert split_script([]) == (None, [])
    with pytest.raises(ConfigError, match="give one MODEL_SCRIPT"):
        split_script(["a.py", "b.py"])


override = st.tuples(st.from_regex(r"--[a-z]+\.[a-z_]+", fullmatch=True), st.from_regex(r"[a-z0-9.]{1,5}", fullmatch=True), st.booleans()).map(
    lambda t: [f"{t[0]}={t[1]}"] if t[2] else [t[0], t[1]]
)


@given(st.lists(override, max_size=4), st.lists(override, max_size=4), st.one_of(st.none(), st.from_regex(r"[a-z_/]{1,10}\.py", fullmatch=True)))
def test_split_script_keeps_the_overrides_in_order_wherever_the_script_is(before, after, script):
    tokens = [t for o in before for t in o] + ([script] if script else []) + [t for o in after for t in o]
    assert split_script(tokens) == (script, [t for o in before + after for t in o])
