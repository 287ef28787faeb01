"""User-facing errors: one clear line naming the problem and the fix.

Anything a user can get wrong (a config key, a file, a label) raises a subclass of
`BabysitError`; the CLI prints its message as one line and exits with code 2
instead of showing a traceback.
"""

from __future__ import annotations

import difflib
import re
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


# Advice third-party loaders give on refusing a file ("re-run with weights_only=False",
# "load it with allow_pickle=True") that would run whatever code the file holds.
_UNSAFE_ADVICE = ("weights_only", "allow_pickle", "safe_globals", "trust")
PICKLED = "it holds pickled Python objects{}, which babysit never loads: loading them can run any code"


def safe_reason(error: BaseException) -> str:
    """The first line of an error's text for a one-line message, never advice to load a file unsafely.

    torch's weights_only refusal suggests `weights_only=False` and numpy's object-array
    refusal names `allow_pickle`; a babysit message must not relay either, so such a
    reason is replaced by what it means (`PICKLED`), naming the offending global when
    torch does.
    """
    text = str(error).strip()
    if not any(word in text for word in _UNSAFE_ADVICE):
        return text.splitlines()[0] if text else type(error).__name__
    global_name = re.search(r"GLOBAL ([\w.]+)", text)
    return PICKLED.format(f" ({global_name.group(1)})" if global_name else "")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
