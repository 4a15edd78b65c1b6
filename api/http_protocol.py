"""uvicorn's HTTP protocol (httptools), with a bounded time and size for a request head.

uvicorn times out only an idle keep-alive connection, between two requests: a
connection that sends nothing, or half a request head, is kept for ever, and httptools
buffers a header that never ends without limit (a 200 MiB header took a server from
75 to 354 MiB). The app never sees such a request, so only the protocol can bound it:

- a request head must be complete within ``head_timeout_seconds`` of the connection
  opening (the first request) or of its first byte (the next ones on a keep-alive
  connection), else 408 ``request_timeout`` and the connection is closed;
- the bytes received for one head may not pass ``HEAD_SIZE_MAX_BYTES`` (the app's own,
  finer limit, api.header_limit, sees only complete heads), else 431
  ``headers_too_large`` and the connection is closed.

The body is bounded in the app, where it is read (api.middleware.RequestBodies). A
head that waits behind a request still being answered (pipelining) gets more time: it
is not the client that is slow.

Memory freed when connections close mostly stays with the C allocator (glibc keeps
fragmented heap pages): 300 connections that each sent the head and a megabyte of a
body left the server 40 MiB larger for good, though nothing held it. So when the last
connection closes, ``MemoryRelease`` asks glibc, a second later and if the server is
still idle, to hand free pages back to the system (``malloc_trim``, in a worker thread:
it takes up to ~20 ms on a large heap, with the GIL released). Elsewhere than glibc it
does nothing.

``eventledger serve`` passes ``http_protocol(settings)`` to uvicorn as its ``http``
protocol factory (a ``functools.partial``, which pickles to ``--workers`` processes).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.errors import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_PREFIX, TITLES_BY_CODE
from api.header_limit import HEAD_SIZE_MAX_BYTES
from infrastructure.settings import Settings

logger = logging.getLogger(__name__)


def http_protocol(settings: Settings) -> functools.partial[HttpProtocol]:
    """The protocol factory uvicorn takes as ``http=``."""
    return functools.partial(
        HttpProtocol,
        head_timeout_seconds=settings.request_head_timeout_seconds,
        memory_release=MemoryRelease(),
    )


class MemoryRelease:
    """Returns the C heap's free pages to the system once the server is idle."""

    DELAY_SECONDS = 1.0

    def __init__(self) -> None:
        self._scheduled = False

    def when_idle(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        if connections or self._scheduled:
            return
        self._scheduled = True
        loop.call_later(self.DELAY_SECONDS, self._release, loop, connections)

    def _release(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        self._scheduled = False
        if not connections:
            loop.run_in_executor(None, _malloc_trim)


def _malloc_trim() -> None:
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return  # not glibc
    trim(0)


class HttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        *args: Any,
        head_timeout_seconds: float,
        memory_release: MemoryRelease,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout_seconds = head_timeout_seconds
        self.memory_release = memory_release
        self._head_timer: asyncio.TimerHandle | None = None
        # Between the first byte of a request (or the connection opening) and the end
        # of its head; the bytes received meanwhile.
        self._head_pending = False
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)
        self.memory_release.when_idle(self.loop, self.connections)

    def data_received(self, data: bytes) -> None:
        pending = self._head_pending
        super().data_received(data)
        # Counted only when the whole chunk was head: one that also ended a body or
        # a head is not, so a chunk at most (256 KiB) passes uncounted.
        if pending and self._head_pending and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > HEAD_SIZE_MAX_BYTES:
                detail = f"a request head is at most {HEAD_SIZE_MAX_BYTES} bytes"
                self._refuse(431, "headers_too_large", detail)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_head()

    def on_headers_complete(self) -> None:
        self._head_pending = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def _await_head(self) -> None:
        """A head is due: the first request's clock starts when the connection opens."""
        self._head_pending = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._answering():
            self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_late)
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request head did not arrive within {self.head_timeout_seconds:g} s",
        )

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _refuse(self, status: int, code: str, detail: str) -> None:
        """Answers a problem document (unless a response is under way) and closes."""
        if self.transport.is_closing():
            return
        logger.debug("closing a connection from %s: %s", self.client, detail)
        if not self._answering():
            self.transport.write(self._problem(status, code, detail))
        self.transport.close()

    def _problem(self, status: int, code: str, detail: str) -> bytes:
        body = json.dumps(
            {
                "type": PROBLEM_TYPE_PREFIX + code,
                "title": TITLES_BY_CODE[code],
                "status": status,
                "detail": detail,
                "instance": "",
                "code": code,
            }
        ).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        return b"".join(head) + body
