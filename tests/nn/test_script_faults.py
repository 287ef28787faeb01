"""Model scripts that misbehave: they exit, hang, return a tuple or a dict, or the wrong shape; one line each, never exit 0."""

import json
import time
import warnings

import pytest
import torch
from typer.testing import CliRunner

from babysit.cli import app
from babysit.errors import ConfigError, ModelError
from babysit.nn.script import TIMEOUT_ENV, build_from_script, script_timeout

runner = CliRunner()
HEAD = "import sys, time\nimport torch\nfrom torch import nn\n"
GOOD_BUILD = "def build_model(input_shape, num_classes):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))\n"


def write(tmp_path, body, name="net.py"):
    path = tmp_path / name
    path.write_text(HEAD + body)
    return path


EXITS = {
    "exit-at-import": ("sys.exit(0)\n" + GOOD_BUILD, "called sys.exit(0) while loading (line 4); a model script must define build_model"),
    "exit-3-at-import": ("raise SystemExit(3)\n" + GOOD_BUILD, "called sys.exit(3) while loading (line 4)"),
    "exit-in-build": ("def build_model(input_shape, num_classes):\n    sys.exit()\n", "build_model() in '{path}' called sys.exit() (line 5); it must return the network, not exit"),
}


@pytest.mark.parametrize("case", EXITS)
def test_a_script_that_exits_is_a_model_error(tmp_path, case):
    body, message = EXITS[case]
    path = write(tmp_path, body)
    with pytest.raises(ModelError) as error:
        build_from_script(str(path), (1, 8, 8), 10)
    assert message.format(path=path) in str(error.value) and "\n" not in str(error.value)


def cli_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("case", ["exit-at-import", "exit-in-build"])
def test_doctor_check_and_train_exit_2_with_one_line_on_a_script_that_exits(tmp_path, case):
    path = write(tmp_path, EXITS[case][0])
    script = ["--model", "script", f"--model.script={path}"]
    commands = {
        "doctor": ["doctor", str(path), "--data", "digits", "--runs-dir", str(tmp_path / "runs")],
        "check": ["check", "--data", "digits", *script],
        "train": ["train", "--data", "digits", *script, "--runs-dir", str(tmp_path / "runs")],
    }
    for name, args in commands.items():
        result = runner.invoke(app, args)
        lines = cli_lines(result)
        assert result.exit_code == 2, (name, result.exit_code, result.output)
        assert len(lines) == 1 and "called sys.exit(" in lines[0] and "Traceback" not in result.output, (name, result.output)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())  # no half-made run left behind


def test_a_script_that_hangs_at_import_is_stopped_after_the_timeout(tmp_path, monkeypatch):
    path = write(tmp_path, "time.sleep(20)\n" + GOOD_BUILD)
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"did not finish loading and building in 0.5 s .*raise BABYSIT_SCRIPT_TIMEOUT"):
        build_from_script(str(path), (1, 8, 8), 10, timeout=0.5)
    assert time.monotonic() - start < 15  # stopped by the timeout, long before the script's 20 s sleep ends
    monkeypatch.setenv(TIMEOUT_ENV, "0.5")
    result = runner.invoke(app, ["check", "--data", "digits", "--model", "script", f"--model.script={path}"])
    assert result.exit_code == 2 and len(cli_lines(result)) == 1 and "did not finish loading" in result.stderr


@pytest.mark.parametrize("raw", ["soon", "0", "-3", "nan"])
def test_a_bad_timeout_setting_is_refused(monkeypatch, raw):
    monkeypatch.setenv(TIMEOUT_ENV, raw)
    with pytest.raises(ConfigError, match=f"{TIMEOUT_ENV}={raw!r} must be a positive number of seconds"):
        script_timeout()


def test_the_timeout_setting_is_read(monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, "2.5")
    assert script_timeout() == 2.5
    monkeypatch.delenv(TIMEOUT_ENV)
    assert script_timeout() == 60.0


WRAPPED = (
    "class Net(nn.Module):\n"
    "    def __init__(self, num_classes):\n"
    "        super().__init__()\n"
    "        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))\n"
    "    def forward(self, x):\n"
    "        y = self.body(x)\n"
    "        return {out}\n"
    "def build_model(input_shape, num_classes):\n"
    "    return Net(num_classes)\n"
)


@pytest.mark.parametrize("out, warned", [("(y, y.sum())", "returns a tuple of 2"), ("[y]", "returns a list of 1"),
                                         ("(None, [y, 0])", "returns a tuple of 2"), ("{'aux': 0, 'logits': y}", None),
                                         ("{'output': y, 'logits': 0}", None)])  # fmt: skip
def test_a_tuple_list_or_dict_output_gives_the_class_scores(tmp_path, out, warned):
    path = write(tmp_path, WRAPPED.format(out=out))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = build_from_script(str(path), (1, 8, 8), 10)
    messages = [str(w.message) for w in caught]
    assert (messages == []) if warned is None else (len(messages) == 1 and warned in messages[0] and "uses its first tensor" in messages[0])
    x = torch.randn(5, 1, 8, 8)
    scores = net(x)
    assert isinstance(scores, torch.Tensor) and torch.equal(scores, net.body(x))
    assert list(net.state_dict()) == ["body.1.weight", "body.1.bias"]  # the weights keep their names


@pytest.mark.parametrize("out, message", [
    ("{'aux': 0, 'scores': y}", "returned a dict with keys 'aux', 'scores'; babysit reads the class scores from key 'output' or 'logits'"),
    ("{'logits': 3}", "returned a dict with keys 'logits'"),
    ("(1, 2)", "returned a tuple with no tensor in it"),
    ("y.detach().numpy()", "returned ndarray; it must return the class scores as a tensor of shape (N, 10)"),
    ("y[:, :5]", "returned shape (2, 5) for 2 inputs of shape (1, 8, 8); expected (2, 10): its last layer must have 10 outputs"),
    ("y.reshape(2, 5, 2)", "returned shape (2, 5, 2) for 2 inputs of shape (1, 8, 8); expected (2, 10): flatten to (N, 10)"),
    ("y.sum()", "returned shape () for 2 inputs"),
    ("y + undefined_name", "failed on a batch of 2 inputs of shape (1, 8, 8): NameError: name 'undefined_name' is not defined (line 10)"),
])  # fmt: skip
def test_a_wrong_output_is_one_line_naming_expected_and_got(tmp_path, out, message):
    path = write(tmp_path, WRAPPED.format(out=out))
    with pytest.raises(ModelError) as error:
        build_from_script(str(path), (1, 8, 8), 10)
    assert message in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


def test_the_output_check_leaves_training_unchanged(tmp_path):
    """The check's forward runs in eval mode with torch's RNG restored: BatchNorm statistics and dropout draws are untouched."""
    path = write(tmp_path, "def build_model(input_shape, num_classes):\n"
                           "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Dropout(0.5), nn.Linear(32, num_classes))\n")  # fmt: skip
    torch.manual_seed(0)
    net = build_from_script(str(path), (1, 8, 8), 10)
    after = torch.get_rng_state()
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32), torch.nn.Dropout(0.5), torch.nn.Linear(32, 10))
    assert torch.equal(after, torch.get_rng_state())
    assert net.training and all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), plain.state_dict().values()))


def test_a_model_returning_logits_and_aux_trains_from_the_cli(tmp_path):
    path = write(tmp_path, WRAPPED.format(out="(y, y.sum())"))
    result = runner.invoke(app, ["train", "--data", "digits", "--model", "script", f"--model.script={path}", "--epochs", "1",
                                 "--runs-dir", str(tmp_path / "runs"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "completed"
