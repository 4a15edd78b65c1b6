"""Refuses JSON bodies that repeat a key in one object, or hold a NUL character in a
key or string value of an object: 422 ``validation_error``.

``json.loads`` (and so FastAPI) silently keeps the last of ``{"amount": 1, "amount":
1000}``. A proxy, a log or an auditor reading the same bytes may keep the first, so the
request would mean two different amounts to two readers: for money we refuse it.

A NUL character (U+0000, escaped in JSON) is valid JSON and the event store keeps it,
but PostgreSQL ``text`` cannot: an account named so stalled the read models for good
(the follower failed on that event on every retry). Every other character, control
characters included, is stored as sent.

A body sent without ``Content-Type: application/json`` (curl's ``-d`` alone sends
``application/x-www-form-urlencoded``; some clients send none) is 415
``unsupported_media_type``, naming the header: FastAPI would not parse it as JSON and
answer that the body "should be a valid dictionary". A request without a body (a
void, a post of all of it) needs no content type.

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
# A media type longer than this is named by its length in a 415's detail.
MEDIA_TYPE_SHOWN_LENGTH_MAX = 40


class Refused(ValueError):
    """The body is valid JSON, but not for us; the message says why."""


def _check_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise Refused("a JSON object in the body repeats a key; send each key once")
    for key, value in pairs:
        if "\x00" in key or (isinstance(value, str) and "\x00" in value):
            raise Refused("a string in the body holds a NUL character (\\u0000)")
    return result


def refusal_of(body: bytes) -> str | None:
    """Why the JSON ``body`` is refused, else None: for any body that is valid, and
    for any that is not (invalid JSON is the route's to refuse)."""
    try:
        json.loads(body, object_pairs_hook=_check_object)
    except Refused as refused:
        return str(refused)
    except (ValueError, RecursionError):
        return None
    return None


def _refusal(media_type: bytes | None, body: bytes) -> tuple[int, str, str] | None:
    """(status, code, detail) of a refused body, else None."""
    if not _is_json(media_type):
        if not body.strip():
            return None
        sent = "none" if media_type is None else _shown(media_type)
        return (
            415,
            "unsupported_media_type",
            "the body must be JSON sent with the header Content-Type: application/json "
            f"(Content-Type sent: {sent})",
        )
    refusal = refusal_of(body) if b'"' in body else None
    return None if refusal is None else (422, "validation_error", refusal)


def _shown(media_type: bytes) -> str:
    """The media type as sent when short, else its length: never a long input echoed."""
    if len(media_type) <= MEDIA_TYPE_SHOWN_LENGTH_MAX:
        return repr(media_type.decode("latin-1"))
    return f"{len(media_type)} characters"


def _media_type(scope: Scope) -> bytes | None:
    """The request's media type, lower case, without parameters; None when not sent."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type
    return None


def _is_json(media_type: bytes | None) -> bool:
    return (
        media_type is not None
        and media_type.startswith(b"application/")
        and (media_type.endswith(b"/json") or media_type.endswith(b"+json"))
    )


class StrictJsonBodies:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        refusal = _refusal(_media_type(scope), body)
        if refusal is not None:
            status, code, detail = refusal
            response = problem_response(Request(scope), status, code, detail)
            await response(scope, receive, send)
            return
        replay = iter(messages)

        async def replayed_receive() -> Message:
            message = next(replay, None)
            return message if message is not None else await receive()

        await self.app(scope, replayed_receive, send)
