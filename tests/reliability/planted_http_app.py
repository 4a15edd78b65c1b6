"""A deliberately broken build, for showing that the HTTP bank checker catches it.

``create()`` is a uvicorn app factory: the real app (settings from EVENTLEDGER_*),
wrapped so that one POST /v1/transfers in ``DROP_EVERY`` is answered 201 with a
plausible transfer body while nothing is committed: the bug of answering before (and
here, without) the commit. Never used outside tests/reliability/test_http_bank.py.

Plant it by hand: ``EVENTLEDGER_DATABASE_URL=sqlite:///x.db .venv/bin/python -m uvicorn
tests.reliability.planted_http_app:create --factory --port 8001``, run the workload
against it (``ServerProcess(..., app="tests.reliability.planted_http_app:create")``),
and the checker reports the dropped transfers as ``lost``.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.app import create_app_from_environment

DROP_EVERY = 7


class DropSomeCommits:
    def __init__(self, app: ASGIApp, every: int) -> None:
        self.app = app
        self.every = every
        self.counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_transfer = scope["type"] == "http" and (scope["method"], scope["path"]) == (
            "POST",
            "/v1/transfers",
        )
        if not is_transfer or next(self.counter) % self.every:
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message: Message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        request: dict[str, Any] = json.loads(body)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        answer = {
            "id": request["id"], "from_account": request["from_account"],
            "to_account": request["to_account"], "amount": request["amount"],
            "currency": request["currency"], "status": "posted", "description": "",
            "metadata": {}, "created_at": now, "updated_at": now, "position": 1,
            "reverses": None, "reversed_amount": 0, "posted_amount": request["amount"],
            "pending": False, "expires_at": None, "error_code": None, "version": 1,
        }  # fmt: skip
        await JSONResponse(answer, status_code=201)(scope, receive, send)


def create() -> ASGIApp:
    return DropSomeCommits(create_app_from_environment(), DROP_EVERY)
