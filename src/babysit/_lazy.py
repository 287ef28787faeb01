"""Names a package imports on first use (PEP 562), so `import babysit` stays close to `import torch`.

Plotting (matplotlib), search (Optuna and its SQL store) and the workflows that use
them cost more than torch's own import; most scripts (a loop with `bs.record`, `bs.fit`)
never touch them. A package lists such names with the module that defines each:

    __getattr__, __dir__ = lazy(__name__, {"doctor": "babysit.workflows.doctor", "tune": "babysit.tune"}, __all__)

`babysit.doctor` then imports `babysit.workflows.doctor` the first time it is read
and keeps the function as a plain attribute; a name that is a module's own name
("tune" -> "babysit.tune") is that module. `from babysit import doctor` works too,
and `dir(babysit)` lists every public name, loaded or not.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy(package: str, names: dict[str, str], public: list[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level `__getattr__` and `__dir__` of `package` for the lazily imported `names`.

    Args:
        package: the package's `__name__`.
        names: public name -> the module that defines it (or the module itself, for a sub-package).
        public: the package's `__all__`, which `dir()` lists whether loaded or not.
    """

    def __getattr__(name: str) -> Any:
        try:
            source = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module = importlib.import_module(source)
        value = module if source == f"{package}.{name}" else getattr(module, name)
        # Kept as an ordinary attribute: the next look-up does not come back here.
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
