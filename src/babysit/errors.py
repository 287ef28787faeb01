"""User-facing errors: one clear line naming the problem and the fix.

Anything a user can get wrong (a config key, a file, a label) raises a subclass of
`BabysitError`; the CLI prints its message as one line and exits with code 2
instead of showing a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BabysitError(Exception):
    """Base class of errors caused by user input, not by a bug in babysit."""


class ConfigError(BabysitError, ValueError):
    """A configuration value, key or name is invalid."""


class DataError(BabysitError, ValueError):
    """A data set is missing, malformed or inconsistent."""


class ModelError(BabysitError, RuntimeError):
    """A user's model (a script or module) misbehaves: it exits, hangs, or returns the wrong thing."""


class StoreError(BabysitError, OSError):
    """A file or folder on disk is in the way, unreadable, damaged or unwritable."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
