"""Refuses a request whose header block is too large: 431 ``headers_too_large``.

uvicorn's httptools parser does not bound a header block at all (and its h11 parser
only one that arrives in pieces). ``eventledger serve`` bounds the raw bytes of a head
in the protocol (``HEAD_SIZE_MAX_BYTES``, api.http_protocol), since the app never sees
a head that does not end; the app bounds a complete one more finely, before routing,
auth or the body: at most ``HEADERS_MAX`` headers of ``HEADERS_SIZE_MAX_BYTES`` in all
(names and values).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import problem_response

HEADERS_MAX = 100
HEADERS_SIZE_MAX_BYTES = 16 * 1024
# The request line, the headers above with their separators, and room: what the server
# buffers of one head at most (up to one more read of 256 KiB, see api.http_protocol).
HEAD_SIZE_MAX_BYTES = 64 * 1024


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
