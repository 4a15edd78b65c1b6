"""Pure ASGI middleware: the request body limit and the request metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so that the body is counted as it streams in,
chunked bodies included, and nothing is buffered beyond the limit.
"""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response
from api.metrics import Metrics


class BodyTooLarge(HTTPException):
    def __init__(self, size_max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {size_max_bytes} bytes")


class BodySizeLimit:
    """Answers 413 ``payload_too_large`` once a body passes ``size_max_bytes``.

    A declared Content-Length over the limit is refused before reading anything; a
    chunked body is refused as soon as the running total passes the limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        size_max_bytes: int,
        size_max_bytes_by_path: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.size_max_bytes = size_max_bytes
        self.size_max_bytes_by_path = dict(size_max_bytes_by_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size_max_bytes = self.size_max_bytes_by_path.get(scope["path"], self.size_max_bytes)
        too_large = BodyTooLarge(size_max_bytes)
        if _declared_length(scope) > size_max_bytes:
            await self._refuse(scope, receive, send, too_large)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > size_max_bytes:
                    raise too_large
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            # Raised outside a route's exception handling (e.g. by a middleware that
            # read the body). If the answer has begun there is nothing more to say.
            if started:
                raise
            await self._refuse(scope, receive, send, too_large)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, error: BodyTooLarge
    ) -> None:
        request = Request(scope, receive)
        response = problem_response(
            request, 413, "payload_too_large", str(error.detail), headers={"Connection": "close"}
        )
        await response(scope, receive, send)


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) < 19 else 2**63
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
