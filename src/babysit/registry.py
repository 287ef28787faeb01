"""Name -> factory registries shared by the Python API, the CLI and config files.

Every pluggable family (activations, inits, models, data sets, optimisers, ...)
is a `Registry`, so the CLI can list it, a TOML file can name an entry, and the
tests can parametrize over all of it.

    ACTIVATIONS = Registry("activation")

    @ACTIVATIONS.register("relu")
    def relu() -> nn.Module:
        \"\"\"max(0, x): no saturation for x > 0; units can die.\"\"\"
        return nn.ReLU()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from babysit.errors import ConfigError, did_you_mean

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[F]):
    """One registered factory with the one-line description shown by the CLI."""

    name: str
    factory: F
    description: str


class Registry(Generic[F]):
    """A named family of factories; `get` fails with a suggestion for typos."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[F]] = {}

    def register(self, name: str, description: str | None = None) -> Callable[[F], F]:
        """Decorator adding `factory` under `name`; the description defaults to its docstring's first line."""

        def decorator(factory: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            doc = description or (factory.__doc__ or "").strip().splitlines()[0:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._entries[name] = Entry(name, factory, text)
            return factory

        return decorator

    def get(self, name: str) -> F:
        """The factory registered as `name`; a ConfigError naming the choices otherwise."""
        try:
            return self._entries[name].factory
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"choose one of: {', '.join(self._entries)}"
            ) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry[F]]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


def accepted_options(factory: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """The subset of `options` that `factory` takes as keywords.

    Config sections hold the union of every entry's options (e.g. `train.momentum`
    is read only by momentum-type optimisers); each entry receives its own.
    """
    import inspect

    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def check_options(factory: Callable[..., Any], options: dict[str, Any], what: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """`options` unchanged when `factory` takes every one as a keyword; a ConfigError with a did-you-mean otherwise.

    The Python API is as strict as the config: `prepare(data, "pca_whiten", component=0.5)`
    names `components` instead of keeping every feature. `skip` lists the
    parameters the caller passes itself (e.g. an optimiser's params and lr).
    """
    import inspect

    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    valid = [n for n, p in params.items() if n not in skip and p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in options:
        if key not in valid:
            takes = f"it takes {', '.join(valid)}" if valid else "it takes no options"
            raise ConfigError(f"{what} has no option '{key}'{did_you_mean(key, valid)}; {takes}")
    return dict(options)


def section_options(
    factory: Callable[..., Any],
    options: dict[str, Any],
    *,
    section: str,
    defaults: dict[str, Any],
    what: str,
    keys: dict[str, str] | None = None,
    stacklevel: int = 3,
) -> dict[str, Any]:
    """The options of a config section that `factory` takes; one warning line names the others set away from their defaults.

    A config section holds every entry's options (`train.momentum` is read only by
    momentum-type optimisers), so a key the chosen entry does not use is not an
    error; but a value the user changed and that has no effect deserves a word.

    Args:
        options, defaults: by the factory's option names.
        keys: the config key of an option whose name differs (e.g. components -> pca_components).
        stacklevel: the frame the warning names, counted from this function (3: its caller's caller).
    """
    import warnings

    used = accepted_options(factory, options)
    keys = keys or {}
    ignored = [f"{section}.{keys.get(k, k)}={v!r}" for k, v in options.items() if k not in used and k in defaults and v != defaults[k]]
    if ignored:
        warnings.warn(f"{what} does not use {', '.join(ignored)}; remove {'it' if len(ignored) == 1 else 'them'} or pick a block that does", UserWarning, stacklevel=stacklevel)
    return used
