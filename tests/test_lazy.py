"""`import babysit` loads its heavy parts on first use; the public API and every registry read as if it did not.

Each check runs in a fresh interpreter: what a module imports depends on what the
process imported before it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import babysit as bs


def fresh(code: str) -> object:
    """What a fresh interpreter running `code` prints last, read as JSON."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# Imports every module of the package but the console entry point and the optional integrations.
IMPORT_ALL = (
    "import importlib, pkgutil, babysit\n"
    "for m in pkgutil.walk_packages(babysit.__path__, 'babysit.'):\n"
    "    if m.name != 'babysit.__main__' and not m.name.startswith('babysit.integrations.'):\n"
    "        importlib.import_module(m.name)\n"
)
MODULES = {"blocks", "checks", "config", "train", "tune", "workflows"}  # the names in __all__ that are sub-packages


def test_every_public_name_imports_by_itself_and_is_what_it_names():
    # One name per `from babysit import X`, in a process that loaded nothing else first; then
    # every module of the package, which must not rebind a top-level name to a sub-package.
    kinds = fresh(
        "import json, types, babysit\n"
        "first = {}\n"
        "for name in babysit.__all__:\n"
        "    exec(f'from babysit import {name} as value')\n"
        "    first[name] = isinstance(value, types.ModuleType)\n"
        + IMPORT_ALL
        + "after = {name: isinstance(getattr(babysit, name), types.ModuleType) for name in babysit.__all__}\n"
        "print(json.dumps([first, after]))"
    )
    expected = {name: name in MODULES for name in bs.__all__}
    assert kinds == [expected, expected]


def test_no_optional_framework_loads_unless_its_integration_is_imported():
    # Every module of the package (the integrations' package itself too): transformers, accelerate and
    # Lightning are optional extras, and the probes recognise Hugging Face's activations by module name alone.
    loaded = fresh(IMPORT_ALL + "import babysit.integrations, sys, json\nprint(json.dumps(sorted(sys.modules)))")
    assert not [m for m in loaded if m.split(".")[0] in ("transformers", "accelerate", "lightning")]
    assert "babysit.integrations" in loaded and "babysit.watch.stats" in loaded


def test_dir_lists_every_public_name_loaded_or_not():
    listed = fresh("import json, babysit; print(json.dumps(dir(babysit)))")
    assert set(bs.__all__) <= set(listed)
    assert "TuneResult" in fresh("import json, babysit.tune; print(json.dumps(dir(babysit.tune)))")  # lazy there too
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        bs.nonesuch  # noqa: B018


# Collects every registry that the loaded babysit modules hold, by kind, with its entries.
REGISTRIES = (
    "import json, sys\n"
    "from babysit.registry import Registry\n"
    "found = {}\n"
    "for name, module in list(sys.modules.items()):\n"
    "    if name.startswith('babysit'):\n"
    "        for value in vars(module).values():\n"
    "            if isinstance(value, Registry):\n"
    "                found[value.kind] = sorted(value.names())\n"
    "print(json.dumps(found))"
)


@pytest.fixture(scope="module")
def every_entry() -> dict[str, list[str]]:
    """Every registry with every entry: each module of the package imported."""
    return fresh(IMPORT_ALL + REGISTRIES)


@pytest.mark.parametrize("use", ["", "babysit.blocks", "babysit.checks", "babysit.lab"])
def test_a_registry_is_complete_whichever_way_it_is_reached(use, every_entry):
    # Some entries register from other modules (checks, local-file data sets, lab experiments):
    # whatever part of babysit a user touches first, a registry it exposes is already whole.
    seen = fresh(f"import babysit\n{'import ' + use if use else ''}\n" + REGISTRIES)
    assert seen, "no registry loaded"
    assert seen == {kind: every_entry[kind] for kind in seen}
