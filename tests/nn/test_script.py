"""The model-script contract: build_model(input_shape, num_classes) from a Python file, every mistake one line."""

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import babysit as bs
from babysit.errors import ConfigError
from babysit.nn.script import DEFAULT_FUNCTION, build_from_script, split_spec
from babysit.build import model_from_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_model.py"


def write(tmp_path, text, name="net.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_example_script_builds_a_network_for_the_data_shapes():
    for shape in [(1, 8, 8), (1, 40)]:
        net = build_from_script(str(EXAMPLE), shape, 10)
        assert net(torch.zeros(3, *shape)).shape == (3, 10)


def test_the_builder_gets_the_input_shape_and_class_count(tmp_path):
    path = write(tmp_path, (
        "from torch import nn\n"
        "def make(input_shape, num_classes):\n"
        "    net = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1], num_classes))\n"
        "    net.called_with = (input_shape, num_classes)\n"
        "    return net\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit('the main block must not run')\n"
    ))
    net = build_from_script(f"{path}:make", (2, 3), 4)
    assert net.called_with == ((2, 3), 4) and net(torch.zeros(5, 2, 3)).shape == (5, 4)


def test_a_script_can_import_a_module_beside_it(tmp_path):
    write(tmp_path, "from torch import nn\nclass Net(nn.Linear):\n    pass\n", name="helpers_for_net.py")
    path = write(tmp_path, "from helpers_for_net import Net\ndef build_model(input_shape, num_classes):\n    return Net(input_shape[0], num_classes)\n")
    assert isinstance(build_from_script(str(path), (6,), 2), nn.Linear)
    assert str(tmp_path) not in sys.path  # the folder is importable only while the script runs


@pytest.mark.parametrize(
    "text, message",
    [
        ("def build_modle(input_shape, num_classes):\n    pass\n", "defines no function 'build_model' (did you mean 'build_modle'?)"),
        ("build_model = 3\n", "defines no function 'build_model'"),
        ("import torch\n\ndef build_model(input_shape, num_classes)\n    pass\n", "failed while loading: SyntaxError"),
        ("x = 1\nundefined_name\n", "failed while loading: NameError: name 'undefined_name' is not defined (line 2)"),
        ("def build_model(input_shape, num_classes):\n    raise ValueError('bad width\\nsecond line')\n",
         "build_model() in '{path}' raised ValueError: bad width (line 2)"),
        ("def build_model(input_shape, num_classes):\n    return 42\n", "returned int, not a torch nn.Module"),
    ],
)
def test_every_mistake_in_a_script_is_one_line_naming_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        build_from_script(str(path), (4,), 2)
    assert message.format(path=path) in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_or_non_python_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="'nowhere.py' does not exist; pass a Python file that defines build_model"):
        build_from_script("nowhere.py", (4,), 2)
    with pytest.raises(ConfigError, match="must be a Python file ending in .py"):
        build_from_script(str(write(tmp_path, "x = 1\n", name="net.txt")), (4,), 2)


def test_the_script_model_in_a_config(tmp_path, digits):
    cfg = bs.build_config({"model": {"name": "script", "script": str(EXAMPLE)}})
    net, again = model_from_config(cfg.model, digits, seed=0), model_from_config(cfg.model, digits, seed=0)
    # Seeded like the built-in models: the same seed gives the same initial weights.
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert net(digits.train.x[:2]).shape == (2, 10)
    with pytest.raises(ConfigError, match="model.script is read by model 'script' only"):
        bs.build_config({"model": {"name": "mlp", "script": str(EXAMPLE)}})
    with pytest.raises(ConfigError, match="model 'script' needs model.script"):
        model_from_config(bs.build_config({"model": {"name": "script"}}).model, digits)


@given(
    st.text(alphabet=st.characters(blacklist_characters=":\x00", blacklist_categories=("Cs",)), min_size=1, max_size=30),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
)
def test_spec_parsing(path, function):
    assert split_spec(f"{path}:{function}") == (Path(path), function)
    assert split_spec(path) == (Path(path), DEFAULT_FUNCTION)
