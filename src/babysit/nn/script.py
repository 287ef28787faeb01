"""Your own network from a Python file: the model-script contract of `babysit doctor` (and train, check).

Contract: the file defines

    def build_model(input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
        ...

returning any module that maps (N, *input_shape) inputs to (N, num_classes)
class scores; `path.py:make_net` names another function. The file is imported
with importlib from its path (its own folder importable while it loads and
builds, as under `python path.py`), and the function is called with the data
set's input shape, e.g. (1, 40) for MNIST-1D, and class count. Code under
`if __name__ == "__main__":` does not run. Every problem (no such file, no such
function, an exception inside the script, a result that is not a module) is a
`ConfigError` naming the file, and the line for an exception.

In a config this is the model named "script": `[model] name = "script"`,
`script = "nets/my_net.py"`, so a recorded run can be rebuilt and resumed.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from babysit.errors import ConfigError, did_you_mean

DEFAULT_FUNCTION = "build_model"
CONTRACT = f"{DEFAULT_FUNCTION}(input_shape, num_classes) -> nn.Module"


def split_spec(spec: str) -> tuple[Path, str]:
    """'nets/a.py' -> (nets/a.py, 'build_model'); 'nets/a.py:make' -> (nets/a.py, 'make')."""
    path, sep, function = spec.rpartition(":")
    # A colon that belongs to the path (C:\\nets\\a.py) leaves no identifier after it.
    if not sep or not function.isidentifier():
        return Path(spec), DEFAULT_FUNCTION
    return Path(path), function


def _describe(path: Path, error: BaseException) -> str:
    """'NameError: name 'x' is not defined (line 12)': the error's first line and its deepest line in `path`."""
    text = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}".rstrip(": ")
    if isinstance(error, SyntaxError) and error.lineno:
        return f"{text} (line {error.lineno})"
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    return f"{text} (line {lines[-1]})" if lines else text


@contextmanager
def _importable_folder(path: Path) -> Iterator[None]:
    """The script's folder on sys.path while it runs, so it can import its neighbours."""
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)


def _import(path: Path) -> ModuleType:
    """Execute the script as a fresh module (checked to exist by the caller)."""
    name = f"babysit_model_script_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling inside the script look themselves up here
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code: any error becomes one line naming the file and line
        sys.modules.pop(name, None)
        raise ConfigError(f"model script '{path}' failed while loading: {_describe(path, e)}") from None
    return module


def build_from_script(spec: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Import the model script `spec` ('path.py' or 'path.py:function') and build its network.

    Args:
        spec: the file, optionally with ':function' (default `build_model`).
        input_shape: one sample's shape, e.g. (1, 8, 8) for digits.
        num_classes: the number of class scores the network must output.

    Example:
        >>> net = build_from_script("examples/model_script.py", (1, 40), 10)   # doctest: +SKIP
    """
    path, function = split_spec(spec)
    if not path.is_file():
        raise ConfigError(f"model script '{path}' does not exist; pass a Python file that defines {CONTRACT}")
    if path.suffix != ".py":
        raise ConfigError(f"model script '{path}' must be a Python file ending in .py that defines {CONTRACT}")
    with _importable_folder(path):
        module = _import(path)
        builder: Any = getattr(module, function, None)
        if not callable(builder):
            names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
            raise ConfigError(f"model script '{path}' defines no function '{function}'{did_you_mean(function, names)}; define {CONTRACT}")
        try:
            model = builder(tuple(input_shape), num_classes)
        except Exception as e:  # the user's code, as above
            raise ConfigError(f"{function}() in '{path}' raised {_describe(path, e)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{function}() in '{path}' returned {type(model).__name__}, not a torch nn.Module; return the network")
    return model

