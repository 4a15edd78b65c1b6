"""Refuses a request whose header block is too large: 431 ``headers_too_large``.

uvicorn's h11 parser bounds only a header block that arrives in pieces (16 KiB): one
that arrives whole, as a 100 KiB header sent in one write on loopback does, reaches the
app. So the app bounds it itself, before routing, auth or the body: at most
``HEADERS_MAX`` headers of ``HEADERS_SIZE_MAX_BYTES`` in all (names and values).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import problem_response

HEADERS_MAX = 100
HEADERS_SIZE_MAX_BYTES = 16 * 1024


class HeaderSizeLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            size = sum(len(name) + len(value) for name, value in headers)
            if len(headers) > HEADERS_MAX or size > HEADERS_SIZE_MAX_BYTES:
                response = problem_response(
                    Request(scope),
                    431,
                    "headers_too_large",
                    f"send at most {HEADERS_MAX} headers of {HEADERS_SIZE_MAX_BYTES} bytes in all",
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
