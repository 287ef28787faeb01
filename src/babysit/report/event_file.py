"""One TensorBoard event file, written in the calling thread: what `report.tensorboard` writes through.

An event file is a TFRecord file: each record is the event's length (uint64, little-endian),
the masked CRC-32C of those 8 bytes, the serialised `Event` proto, and its masked CRC-32C
(the format TensorBoard's reader checks; tensorboard/summary/writer/record_writer.py).

Why not torch's `SummaryWriter`: it hands each event to a thread of its own, which computes
the two checksums in pure Python, 0.8 ms for one probed step's 3 KB event, holding the
interpreter lock the training thread needs: the larger part of what live logging cost. Here
they come from google-crc32c's C code (about 1 µs) when it is installed
(`pip install 'babysit[tensorboard]'` brings it), else from TensorBoard's own Python code;
the live writer calls this from its own thread, off the training thread, already.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

from babysit.errors import ConfigError

try:
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog
    from tensorboard.compat.proto.summary_pb2 import Summary
except ImportError:
    raise ConfigError("writing TensorBoard events needs the tensorboard package: pip install 'babysit[tensorboard]'") from None

try:
    from google_crc32c import value as _crc32c
except ImportError:  # the C checksum is optional: TensorBoard's own is the same function, in Python
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as _crc32c

_MASK_DELTA = 0xA282EAD8  # TFRecord's checksum mask (tensorflow/core/lib/hash/crc32c.h)
_uid = itertools.count()  # files one process opens in the same second get distinct names


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C: the checksum rotated right by 15 bits, plus a constant (mod 2^32)."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class EventFile:
    """A new event file in `log_dir` (TensorBoard reads every `events.out.tfevents.*` file of a folder).

    Args:
        log_dir: the folder; made if missing.
        purge_step: a resumed run's first step: TensorBoard hides what earlier files hold at or after it.
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.log_dir / f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_uid)}"
        self._file = open(self.path, "wb")  # noqa: SIM115 - open for the writer's life, closed by close()
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:  # as SummaryWriter(purge_step=...) marks a restart
            self._write(Event(wall_time=time.time(), step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self._file.flush()

    def add_summary(self, summary: Any, step: int) -> None:
        """One `Summary` proto (any number of values) as one event at `step`."""
        self._write(Event(wall_time=time.time(), step=int(step), summary=summary))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.add_summary(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))]), step)

    def add_text(self, tag: str, text: str, step: int) -> None:
        """Markdown for TensorBoard's Text tab (stored under TAG/text_summary, as torch's add_text does)."""
        from torch.utils.tensorboard.summary import text as text_summary

        self.add_summary(text_summary(tag, text), step)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def _write(self, event: Any) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data)))

    def __repr__(self) -> str:
        return f"EventFile({str(self.path)!r})"
