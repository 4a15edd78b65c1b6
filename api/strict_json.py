"""Refuses JSON bodies that repeat a key in one object: 422 ``validation_error``.

``json.loads`` (and so FastAPI) silently keeps the last of ``{"amount": 1, "amount":
1000}``. A proxy, a log or an auditor reading the same bytes may keep the first, so the
request would mean two different amounts to two readers: for money we refuse it.

A pure ASGI middleware, inside the body-size limit (so the body it reads whole is
bounded): a JSON body of a request with a body is parsed once more with a hook that
sees every key; a body that is not valid JSON passes through untouched, for the route
to refuse as usual. Then the received messages are replayed to the app.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class DuplicateKey(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise DuplicateKey
    return result


def has_duplicate_keys(body: bytes) -> bool:
    """True if some object in the JSON ``body`` repeats a key; False for any other
    body, valid or not (invalid JSON is the route's to refuse)."""
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except DuplicateKey:
        return True
    except (ValueError, RecursionError):
        return False
    return False


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            return media_type.startswith(b"application/") and (
                media_type.endswith(b"/json") or media_type.endswith(b"+json")
            )
    return True  # FastAPI parses a body without a content type as JSON too


class DuplicateKeysRefused:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if b'"' in body and has_duplicate_keys(body):
            response = problem_response(
                Request(scope),
                422,
                "validation_error",
                "a JSON object in the body repeats a key; send each key once",
            )
            await response(scope, receive, send)
            return
        replay = iter(messages)

        async def replayed_receive() -> Message:
            message = next(replay, None)
            return message if message is not None else await receive()

        await self.app(scope, replayed_receive, send)
