"""JSON request bodies, parsed once, strictly, and off the event loop when large.

Refused with 422 ``validation_error``: a JSON object that repeats a key, a NUL
character in a key or string value of an object, more than ``VALUES_MAX`` objects and
numbers or more than ``ARRAYS_MAX`` arrays in one body.

``json.loads`` (and so FastAPI) silently keeps the last of ``{"amount": 1, "amount":
1000}``. A proxy, a log or an auditor reading the same bytes may keep the first, so the
request would mean two different amounts to two readers: for money we refuse it.

A NUL character (U+0000, escaped in JSON) is valid JSON and the event store keeps it,
but PostgreSQL ``text`` cannot: an account named so stalled the read models for good
(the follower failed on that event on every retry). Every other character, control
characters included, is stored as sent.

The largest valid body, a batch of 1,000 transfers each with its metadata, a pending
timeout and an amount, holds 2,001 objects, 2,000 numbers and one array. A body of more
than ``VALUES_MAX`` objects and numbers is refused as soon as the parser meets one too
many, and one of more than ``ARRAYS_MAX`` arrays before it is parsed, so a megabyte of
``{},{},...``, ``1,1,...`` or ``[],[],...`` costs a few milliseconds, not the 70 ms
(objects, numbers) or 230 ms (arrays) of its whole parse, with tens of MiB of objects.

A body sent without ``Content-Type: application/json`` (curl's ``-d`` alone sends
``application/x-www-form-urlencoded``; some clients send none) is 415
``unsupported_media_type``, naming the header (``media_type_refusal``, asked by
api.routing before the body is read): FastAPI would not parse it as JSON and would
answer that the body "should be a valid dictionary". A request without a body (a void,
a post of all of it) needs no content type.

``StrictJsonRequest`` is the request class of every route (see api.routing): FastAPI
reads a JSON body through its ``json()``, which parses with the hooks that see every
key and number. The parse of a body over ``INLINE_PARSE_MAX_BYTES`` runs in a worker
thread, at most ``PARSES_MAX`` at once, so it does not hold the event loop (every
other request) for long: the hooks are Python functions, between whose calls the
interpreter hands the event loop its turn (every 5 ms). What the C parser reads alone,
holding the GIL, is left: a megabyte of ``true``/``null`` or of short strings costs it
2 to 7 ms (on an idle core), and only the batch route takes a megabyte, from an
authorized client.
"""

from __future__ import annotations

import json
from typing import Any

from anyio import CapacityLimiter, to_thread
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request

# Parsed on the event loop at or under this size: under a millisecond even for the
# worst body of this size (5,000 empty objects); a thread hop costs ~0.1 ms.
INLINE_PARSE_MAX_BYTES = 16 * 1024
# Parses running at once in worker threads. They hold the GIL, so more would not be
# faster, only take turns with the event loop more often.
PARSES_MAX = 2
VALUES_MAX = 10_000
ARRAYS_MAX = 1_000


class Refused(ValueError):
    """The body is valid JSON, but not for us; the message says why."""


def loads_strict(body: bytes) -> Any:
    """``json.loads(body)``, refusing what the module docstring lists (``Refused``).
    Invalid JSON raises as ``json.loads`` does, for FastAPI to answer as usual."""
    if body.count(b"[") > ARRAYS_MAX and _arrays_in(body) > ARRAYS_MAX:
        raise Refused(f"the body holds more than {ARRAYS_MAX} JSON arrays")
    values = 0

    def count() -> None:
        nonlocal values
        values += 1
        if values > VALUES_MAX:
            raise Refused(f"the body holds more than {VALUES_MAX} JSON objects and numbers")

    def parse_int(text: str) -> int:
        count()
        return int(text)

    def parse_float(text: str) -> float:
        count()
        return float(text)

    def check_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        count()
        result = dict(pairs)
        if len(result) != len(pairs):
            raise Refused("a JSON object in the body repeats a key; send each key once")
        for key, value in pairs:
            if "\x00" in key or (isinstance(value, str) and "\x00" in value):
                raise Refused("a string in the body holds a NUL character (\\u0000)")
        return result

    return json.loads(
        body, object_pairs_hook=check_object, parse_int=parse_int, parse_float=parse_float
    )


# A media type longer than this is named by its length in a 415's detail.
MEDIA_TYPE_SHOWN_LENGTH_MAX = 40


def media_type_refusal(headers: Headers) -> str | None:
    """Why a request's body will not be read as JSON (its Content-Type), else None. A
    request that declares no body (no length, or 0, and no chunked encoding) passes."""
    declared = headers.get("content-length")
    if "transfer-encoding" not in headers and declared in (None, "0"):
        return None
    sent = headers.get("content-type")
    media_type = None if sent is None else sent.split(";", 1)[0].strip().lower()
    if media_type is not None and _is_json(media_type):
        return None
    shown = "none" if sent is None else _shown(sent)
    return (
        "the body must be JSON sent with the header Content-Type: application/json "
        f"(Content-Type sent: {shown})"
    )


def _is_json(media_type: str) -> bool:
    return media_type.startswith("application/") and (
        media_type.endswith("/json") or media_type.endswith("+json")
    )


def _shown(media_type: str) -> str:
    """The media type as sent when short, else its length: never a long input echoed."""
    if len(media_type) <= MEDIA_TYPE_SHOWN_LENGTH_MAX:
        return repr(media_type)
    return f"{len(media_type)} characters"


def parse_limiter() -> CapacityLimiter:
    """The limiter of one app's parses (create_app keeps it on ``app.state``)."""
    return CapacityLimiter(PARSES_MAX)


def _arrays_in(body: bytes) -> int:
    """The arrays a valid JSON ``body`` opens: its ``[`` outside strings. In valid JSON a
    backslash is found only in a string, as an escape: without the escaped backslashes,
    then the escaped quotes, every quote left opens or closes a string."""
    bare = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(bare.split(b'"')[::2]).count(b"[")


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                if len(body) <= INLINE_PARSE_MAX_BYTES:
                    self._json = loads_strict(body)
                else:
                    limiter: CapacityLimiter = self.app.state.json_parse_limiter
                    self._json = await to_thread.run_sync(loads_strict, body, limiter=limiter)
            except Refused as refused:
                # An HTTPException, which FastAPI lets through as it is (any other error
                # of the parse it turns into a 400).
                raise HTTPException(422, str(refused)) from None
        return self._json
