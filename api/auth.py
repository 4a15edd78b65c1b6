"""Bearer API keys with scopes, as FastAPI dependencies other routers reuse.

``Depends(require_scope("write"))`` on a route lets a request through when its key
grants the scope (``admin`` grants every scope). With no active key in the store, the
API is open, but only if the server may run open: bound to a loopback address, or
started with ``--insecure-no-auth``.

FastAPI reads a request's body before it solves the dependencies, so the route class
(``api.routing.LedgerRoute``) runs ``authorize`` first: a request without a valid key
is answered 401 before any byte of its body is read.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import Problem
from api.ratelimit import enforce_rate_limit
from infrastructure.api_keys import SCOPES, KeyRecord, KeyStore, authenticate
from infrastructure.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer elk_...`")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="eventledger"'}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def may_run_open(settings: Settings) -> bool:
    """Without keys, serve only where nobody else can reach us, or when told to."""
    return is_loopback(settings.host) or settings.insecure_no_auth


class ActiveKeys:
    """Whether any unrevoked key exists, read from the store at most once per TTL.

    Asked on every request without a key, to decide whether the API is open. The
    first key created (or the last one revoked) takes effect within ``ttl_seconds``.
    """

    def __init__(
        self,
        keystore: KeyStore,
        ttl_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keystore = keystore
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._answer: tuple[float, bool] | None = None

    def cached(self) -> bool | None:
        """The last answer if still fresh, else None."""
        answer = self._answer
        if answer is None or self.clock() >= answer[0]:
            return None
        return answer[1]

    def refresh(self) -> bool:
        has_active = self.keystore.has_active()
        self._answer = (self.clock() + self.ttl_seconds, has_active)
        return has_active


async def authorize(request: Request, scope: str) -> KeyRecord | None:
    """The one check of a request's key: its record (None in open mode), else 401
    without a valid key, 403 without ``scope``, 429 from the rate limiter (Problem).

    ``api.routing.LedgerRoute`` calls it before reading the request's body; the
    route's ``require_scope`` dependency then returns what it found.
    """
    # Async, so a request reaches the thread pool only for a key lookup: the
    # open-mode question is answered from a cache refreshed at most once a second.
    # The key store comes from app.state, not from a dependency of its own: each
    # dependency costs FastAPI tens of microseconds per request to solve.
    credentials = await _bearer(request)
    record: KeyRecord | None = None
    if credentials is None:
        active_keys: ActiveKeys = request.app.state.active_keys
        has_active = active_keys.cached()
        if has_active is None:
            has_active = await run_in_threadpool(active_keys.refresh)
        if has_active or not may_run_open(request.app.state.settings):
            raise Problem(
                401,
                "unauthorized",
                "send an API key: Authorization: Bearer <key>",
                headers=CHALLENGE,
            )
        enforce_rate_limit(request, None)
    else:
        keystore: KeyStore = request.app.state.keystore
        record = await run_in_threadpool(authenticate, keystore, credentials.credentials)
        if record is None:
            raise Problem(
                401, "unauthorized", "the API key is not valid or was revoked", headers=CHALLENGE
            )
        enforce_rate_limit(request, record.key_id)
        if not record.grants(scope):
            raise Problem(403, "forbidden", f"the API key lacks the {scope!r} scope")
        request.state.key_id = record.key_id
    request.state.authorized = (scope, record)
    return record


def require_scope(scope: str) -> Callable[..., Awaitable[KeyRecord | None]]:
    """A dependency that answers 401 without a valid key and 403 without ``scope``.

    Its ``required_scope`` tells ``LedgerRoute`` what to check before the body is read;
    the ``credentials`` parameter declares the bearer scheme in the OpenAPI document.
    """
    assert scope in SCOPES, scope

    async def check(request: Request, credentials: BearerDep) -> KeyRecord | None:
        authorized: tuple[str, KeyRecord | None] | None = getattr(request.state, "authorized", None)
        if authorized is not None and authorized[0] == scope:
            return authorized[1]
        return await authorize(request, scope)

    check.__name__ = f"require_{scope}_scope"
    check.required_scope = scope  # type: ignore[attr-defined]
    return check


def granted(scope: str) -> Callable[..., Awaitable[bool]]:
    """A dependency that says whether the caller holds ``scope``, refusing nothing:
    for open routes that show more to a caller with a key. A rate limit still holds."""
    required = require_scope(scope)

    async def check(request: Request, credentials: BearerDep) -> bool:
        try:
            await required(request, credentials)
        except Problem as problem:
            if problem.status == 429:
                raise
            return False
        return True

    check.__name__ = f"holds_{scope}_scope"
    return check


ReadAccess = Depends(require_scope("read"))
WriteAccess = Depends(require_scope("write"))
AuditAccess = Depends(require_scope("audit"))
AdminAccess = Depends(require_scope("admin"))
