"""SIGTERM handled like Ctrl-C: every command flushes what is complete, records "interrupted" and exits 130 or 143.

Python turns SIGINT into `KeyboardInterrupt` on its own; SIGTERM (what `kill`, a
scheduler's time limit or `docker stop` send) kills the process where it stands.
`interrupts_as_exceptions()` makes SIGTERM raise `Terminated`, a subclass of
`KeyboardInterrupt`, in the main thread, so the one path every command already
has for Ctrl-C handles both: a recorded run writes its "interrupted" summary (its
metrics lines and last checkpoint are on disk already), a search trial is failed
and re-queued, caviar workers are stopped. The exit code is the shell's
convention, 128 + the signal number: 130 for SIGINT, 143 for SIGTERM.

A second SIGTERM while the first is being handled gets the default action (the
process ends at once), as a user who sends it twice means.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


def exit_code(error: BaseException | None) -> int:
    """128 + the signal that interrupted: 143 for a `Terminated` anywhere in the chain, else 130 (SIGINT)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, Terminated):
            return 128 + error.signum
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return 128 + signal.SIGINT


def signal_name(error: BaseException | None) -> str:
    """'SIGTERM' or 'SIGINT' (Ctrl-C): which signal `exit_code` read."""
    return signal.Signals(exit_code(error) - 128).name


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated(signum)


@contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` in the main thread; the previous handler comes back after.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
