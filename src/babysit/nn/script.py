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

A script that misbehaves is a `ModelError`, one line, never a silent exit:
  - it calls `sys.exit()` (or raises SystemExit) while loading or building;
  - loading and building take longer than `timeout` seconds (default 60, or the
    environment variable BABYSIT_SCRIPT_TIMEOUT): the import runs in a daemon
    thread that is joined with that timeout. Python cannot stop a thread, so a
    hung script keeps its thread until the process exits, which the error then
    makes the CLI do at once; the script's module is removed from sys.modules;
  - its forward pass on a batch of two zero inputs (in eval mode, without
    gradients, with torch's RNG restored, so training is unchanged) fails, or
    returns anything but (2, num_classes) class scores.
A forward that returns a tuple or list (`(logits, aux)`) is accepted with a
warning: its first tensor is used. One that returns a dict is accepted when it
has an "output" or "logits" key (`OUTPUT_KEYS`, first found wins). Both are done
by a forward hook that replaces the output, so the weights' names are unchanged.

In a config this is the model named "script": `[model] name = "script"`,
`script = "nets/my_net.py"`, so a recorded run can be rebuilt and resumed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from babysit.errors import ConfigError, ModelError, did_you_mean

DEFAULT_FUNCTION = "build_model"
CONTRACT = f"{DEFAULT_FUNCTION}(input_shape, num_classes) -> nn.Module"
TIMEOUT_S = 60.0
TIMEOUT_ENV = "BABYSIT_SCRIPT_TIMEOUT"
OUTPUT_KEYS = ("output", "logits")


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


def _module_name(path: Path) -> str:
    return f"babysit_model_script_{abs(hash(str(path.resolve())))}"


def _import(path: Path) -> ModuleType:
    """Execute the script as a fresh module (checked to exist by the caller)."""
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling inside the script look themselves up here
    try:
        spec.loader.exec_module(module)
    except SystemExit as e:
        sys.modules.pop(name, None)
        raise ModelError(f"model script '{path}' called sys.exit({_code(e)}) while loading{_line(path, e)}; a model script must define {CONTRACT}, not exit") from None
    except Exception as e:  # the user's code: any error becomes one line naming the file and line
        sys.modules.pop(name, None)
        raise ConfigError(f"model script '{path}' failed while loading: {_describe(path, e)}") from None
    return module


def _code(e: SystemExit) -> str:
    return "" if e.code is None else repr(e.code)


def _line(path: Path, error: BaseException) -> str:
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    return f" (line {lines[-1]})" if lines else ""


def script_timeout() -> float:
    """The seconds a script may take to load and build: BABYSIT_SCRIPT_TIMEOUT, else TIMEOUT_S."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r} must be a positive number of seconds, e.g. {TIMEOUT_ENV}=60")
    return value


def _load_and_build(path: Path, function: str, input_shape: tuple[int, ...], num_classes: int) -> Any:
    """Import the script and call its builder (in the worker thread of `build_from_script`)."""
    with _importable_folder(path):
        module = _import(path)
        builder: Any = getattr(module, function, None)
        if not callable(builder):
            names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
            raise ConfigError(f"model script '{path}' defines no function '{function}'{did_you_mean(function, names)}; define {CONTRACT}")
        try:
            return builder(tuple(input_shape), num_classes)
        except SystemExit as e:
            raise ModelError(f"{function}() in '{path}' called sys.exit({_code(e)}){_line(path, e)}; it must return the network, not exit") from None
        except Exception as e:  # the user's code, as above
            raise ConfigError(f"{function}() in '{path}' raised {_describe(path, e)}") from None


def _with_timeout(path: Path, timeout: float, work: Any) -> Any:
    """Run `work()` in a daemon thread; its result, its error re-raised, or a ModelError after `timeout` s."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as e:  # noqa: BLE001  (carried to the caller's thread)
            box["error"] = e

    thread = threading.Thread(target=target, name=f"model-script-{path.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        sys.modules.pop(_module_name(path), None)
        raise ModelError(
            f"model script '{path}' did not finish loading and building in {timeout:g} s (does it wait for input, "
            f"a lock or the network at import?); move slow work under `if __name__ == \"__main__\":`, or raise {TIMEOUT_ENV}"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


def _first_tensor(output: Any) -> Any:
    """The first tensor of a tuple or list (nested ones too), or None."""
    for item in output:
        if isinstance(item, torch.Tensor):
            return item
        if isinstance(item, (tuple, list)):
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _pick_tuple(module: nn.Module, args: Any, output: Any) -> Any:
    """Forward hook: the first tensor of a tuple or list output."""
    return _first_tensor(output)


def _pick_key(module: nn.Module, args: Any, output: Any) -> Any:
    """Forward hook: the class scores of a dict output (its first OUTPUT_KEYS key)."""
    return next(output[k] for k in OUTPUT_KEYS if k in output)


def _adapt_output(model: nn.Module, path: Path, function: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Run one forward on zeros; hook a tuple or dict output to its class scores; refuse any other shape."""
    where = f"the network from {function}() in '{path}'"
    rng = torch.get_rng_state()
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            output = model(torch.zeros(2, *input_shape))
    except Exception as e:  # the user's forward: one line naming its error and line
        raise ModelError(f"{where} failed on a batch of 2 inputs of shape {tuple(input_shape)}: {_describe(path, e)}") from None
    finally:
        model.train(was_training)
        torch.set_rng_state(rng)
    if isinstance(output, (tuple, list)):
        first = _first_tensor(output)
        if first is None:
            raise ModelError(f"{where} returned a {type(output).__name__} with no tensor in it; return the class scores, shape (N, {num_classes})")
        warnings.warn(f"{where} returns a {type(output).__name__} of {len(output)}; babysit uses its first tensor as the class scores", stacklevel=3)
        model.register_forward_hook(_pick_tuple)
        output = first
    elif isinstance(output, dict):
        key = next((k for k in OUTPUT_KEYS if k in output), None)
        if key is None or not isinstance(output[key], torch.Tensor):
            keys = ", ".join(repr(k) for k in output) or "none"
            raise ModelError(f"{where} returned a dict with keys {keys}; babysit reads the class scores from key 'output' or 'logits': name one of them so, or return the tensor")
        model.register_forward_hook(_pick_key)
        output = output[key]
    if not isinstance(output, torch.Tensor):
        raise ModelError(f"{where} returned {type(output).__name__}; it must return the class scores as a tensor of shape (N, {num_classes})")
    if tuple(output.shape) != (2, num_classes):
        hint = f"its last layer must have {num_classes} outputs (num_classes)" if output.dim() == 2 and output.shape[0] == 2 else f"flatten to (N, {num_classes})"
        raise ModelError(f"{where} returned shape {tuple(output.shape)} for 2 inputs of shape {tuple(input_shape)}; expected (2, {num_classes}): {hint}")


def build_from_script(spec: str, input_shape: tuple[int, ...], num_classes: int, *, timeout: float | None = None) -> nn.Module:
    """Import the model script `spec` ('path.py' or 'path.py:function') and build its network.

    Args:
        spec: the file, optionally with ':function' (default `build_model`).
        input_shape: one sample's shape, e.g. (1, 8, 8) for digits.
        num_classes: the number of class scores the network must output.
        timeout: seconds the script may take to load and build (None: `script_timeout()`).

    Example:
        >>> net = build_from_script("examples/model_script.py", (1, 40), 10)   # doctest: +SKIP
    """
    path, function = split_spec(spec)
    if not path.is_file():
        raise ConfigError(f"model script '{path}' does not exist; pass a Python file that defines {CONTRACT}")
    if path.suffix != ".py":
        raise ConfigError(f"model script '{path}' must be a Python file ending in .py that defines {CONTRACT}")
    model = _with_timeout(path, script_timeout() if timeout is None else timeout, lambda: _load_and_build(path, function, input_shape, num_classes))
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{function}() in '{path}' returned {type(model).__name__}, not a torch nn.Module; return the network")
    _adapt_output(model, path, function, tuple(input_shape), num_classes)
    return model

