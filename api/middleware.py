"""Pure ASGI middleware: the bounds of request bodies and the request metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so that the body is counted as it streams in,
chunked bodies included, and nothing is buffered beyond the limit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import Metrics

RETRY_AFTER_SECONDS = 1


class BodyTooLarge(HTTPException):
    def __init__(self, size_max_bytes: int) -> None:
        super().__init__(
            413,
            f"the request body is larger than {size_max_bytes} bytes",
            headers={"Connection": "close"},
        )


class BodyTooSlow(HTTPException):
    def __init__(self, timeout_seconds: float) -> None:
        super().__init__(
            408,
            f"the request body did not arrive within {timeout_seconds:g} s",
            headers={"Connection": "close"},
        )


class BodySlotsBusy(HTTPException):
    def __init__(self, in_flight_max: int) -> None:
        super().__init__(
            503,
            f"{in_flight_max} request bodies are being received; retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


@dataclass(frozen=True)
class BodyLimits:
    size_max_bytes: int
    # By route path template (``/v1/transfers/batch``); others get size_max_bytes.
    size_max_bytes_by_route: Mapping[str, int]
    in_flight_max: int
    queue_timeout_seconds: float
    timeout_seconds: float

    def size_max_bytes_of(self, scope: Scope) -> int:
        """The limit of the route the router chose (set in ``scope`` before it runs)."""
        path = getattr(scope.get("route"), "path", "")
        return self.size_max_bytes_by_route.get(path, self.size_max_bytes)


class RequestBodies:
    """Bounds what a request body costs, from the moment the route first reads it.

    The route reads a body only after the request is authorized (api.routing), and
    uvicorn stops reading a connection once 64 KiB of a body wait unread (flow control),
    so until then a body costs at most that, in memory or in time. From its first read:

    - size: a declared Content-Length over the route's limit is refused before a byte is
      read, a longer (or chunked) body as soon as it passes it: 413;
    - concurrency: at most ``in_flight_max`` bodies are received at once; another waits
      up to ``queue_timeout_seconds`` for a slot, then 503 with Retry-After;
    - time: the whole body must arrive within ``timeout_seconds`` of taking its slot:
      408 ``request_timeout``.

    Raised inside the route's body read, these are HTTPExceptions that FastAPI lets
    through to the problem+json handlers. Any answer sent before the body was received
    whole (401, 404, 413, 408...) closes the connection: otherwise uvicorn would keep
    reading, and discarding, what the client still sends, for as long as it sends.
    """

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits
        self.slots = anyio.Semaphore(limits.in_flight_max, fast_acquire=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _declared_length(scope) if scope["type"] == "http" else 0
        if declared == 0:
            await self.app(scope, receive, send)
            return
        body = _Body(self, scope, declared, receive, send)
        try:
            await self.app(scope, body.receive, body.send)
        finally:
            body.release()


class _Body:
    """One request's body, as the route reads it."""

    def __init__(
        self,
        bodies: RequestBodies,
        scope: Scope,
        declared: int | None,
        receive: Receive,
        send: Send,
    ) -> None:
        self.bodies = bodies
        self.scope = scope
        self.declared = declared
        self._receive = receive
        self._send = send
        self.size_max_bytes = 0
        self.received = 0
        self.deadline: float | None = None
        self.ended = False  # received whole, or the client went away
        self.holds_slot = False

    async def receive(self) -> Message:
        if self.ended:
            return await self._receive()
        if self.deadline is None:
            await self._begin()
        assert self.deadline is not None
        with anyio.CancelScope(deadline=self.deadline) as waiting:
            message = await self._receive()
        if waiting.cancelled_caught:
            raise BodyTooSlow(self.bodies.limits.timeout_seconds)
        if message["type"] != "http.request":
            self.ended = True  # http.disconnect
        else:
            self.received += len(message.get("body", b""))
            if self.received > self.size_max_bytes:
                raise BodyTooLarge(self.size_max_bytes)
            self.ended = not message.get("more_body", False)
        if self.ended:
            self.release()
        return message

    async def _begin(self) -> None:
        limits = self.bodies.limits
        self.size_max_bytes = limits.size_max_bytes_of(self.scope)
        if self.declared is not None and self.declared > self.size_max_bytes:
            raise BodyTooLarge(self.size_max_bytes)
        slots = self.bodies.slots
        try:
            slots.acquire_nowait()
        except anyio.WouldBlock:
            with anyio.move_on_after(limits.queue_timeout_seconds) as queueing:
                await slots.acquire()
            if queueing.cancelled_caught:
                raise BodySlotsBusy(limits.in_flight_max) from None
        self.holds_slot = True
        self.deadline = anyio.current_time() + limits.timeout_seconds

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and not self.ended:
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"connection" for name, _ in headers):
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await self._send(message)

    def release(self) -> None:
        if self.holds_slot:
            self.holds_slot = False
            self.bodies.slots.release()


def _declared_length(scope: Scope) -> int | None:
    """The declared Content-Length; None for a chunked body; 0 without a body."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) < 19 else 2**63
        if name == b"transfer-encoding":
            return None
    return 0


class RequestMetrics:
    """Counts requests by route template (never the raw path) and times them."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        status = 500

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if route is not None else "OTHER"
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started_at)
