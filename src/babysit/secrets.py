"""Secrets never reach disk or screen: passwords and tokens are masked in everything babysit writes or prints.

A storage URL carries its password (`postgresql://alice:S3cret@db/optuna`), a data
URL or a flag may carry a token (`?token=...`, `--api-key ...`). `mask` replaces
each secret with `***` and leaves the rest readable (the user, host and database
still say which store it was); `mask_argv` also masks the value after a flag whose
name says it is secret. Every writer of user-visible text goes through these: crash
logs, the error line, run records (env.json's argv, events and summaries), search
studies and reports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

HIDDEN = "***"

# scheme://user:password@host -> scheme://user:***@host (also a password with no user).
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@'\"]*):([^@\s'\"]*)@")
_SECRET_WORDS = r"password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key|auth|credentials?"
# key=value in a query string, an option or an environment-style assignment.
_KEY_VALUE = re.compile(rf"(?i)\b([\w.-]*?(?:{_SECRET_WORDS}))(=|:\s*)([^&\s'\",;]+)")
_SECRET_FLAG = re.compile(rf"(?i)^--?[\w.-]*?(?:{_SECRET_WORDS})$")


def mask(text: str) -> str:
    """`text` with every URL password and every `password=`/`token=`-style value replaced by ***."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{HIDDEN}@", text)
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{HIDDEN}", text)


def mask_argv(argv: Sequence[str]) -> list[str]:
    """A command line with its secrets masked: inside each argument, and the value after `--password`, `--token`, ..."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            out.append(HIDDEN)
            hide_next = False
            continue
        hide_next = bool(_SECRET_FLAG.match(arg))
        out.append(mask(arg))
    return out


def mask_obj(obj: Any) -> Any:
    """Every string inside dicts, lists and tuples masked (keys too); other values unchanged."""
    if isinstance(obj, str):
        return mask(obj)
    if isinstance(obj, dict):
        return {mask_obj(k): mask_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(mask_obj(v) for v in obj)
    return obj
