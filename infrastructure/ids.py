"""Random ids without a system call per id.

``uuid4()`` reads 16 bytes with ``os.urandom``, a system call that releases the GIL;
getting it back can take a whole switch interval (5 ms) while the group-commit writer
or a projection runs Python. On the event loop that wait is every request's latency.
``new_id()`` draws the same kind of ids (version 4, from the OS's cryptographic
random source) out of a buffer refilled once per 4,096 ids.
"""

from __future__ import annotations

import os
import threading
from uuid import UUID

_IDS_PER_REFILL = 4096
_BYTES_PER_ID = 16


class _RandomIds:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0
        # A forked child must not hand out the ids its parent will also hand out.
        os.register_at_fork(after_in_child=self._discard)

    def _discard(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def next(self) -> UUID:
        with self._lock:
            if self._offset >= len(self._buffer):
                self._buffer = os.urandom(_BYTES_PER_ID * _IDS_PER_REFILL)
                self._offset = 0
            start = self._offset
            self._offset = start + _BYTES_PER_ID
            chunk = self._buffer[start : start + _BYTES_PER_ID]
        return UUID(bytes=chunk, version=4)


_ids = _RandomIds()


def new_id() -> UUID:
    """A random (version 4) UUID, as ``uuid.uuid4()`` makes."""
    return _ids.next()
