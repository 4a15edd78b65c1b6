"""A Python client of the eventledger HTTP API, sync (``Client``) and async
(``AsyncClient``), with the same methods and the same answers.

    from eventledger.client import Client

    with Client("http://127.0.0.1:8000", api_key=None) as ledger:
        alice = ledger.open_account("USD", "Alice")
        ledger.deposit(alice.id, 10_000)
        ledger.statement(alice.id)          # waits until the views show the deposit

What it does for the caller:
- **Typed answers**: the server's own pydantic response models (``AccountOut``,
  ``TransferOut``...), and problems raised as exceptions typed by their ``code``
  (``eventledger.errors``).
- **Safe retries**: every creating command carries an ``Idempotency-Key`` (generated
  per method call unless given) and is sent again, with the same key and body, after a
  connection error, ``outcome_unknown``, ``service_unavailable``, ``conflict`` or
  ``rate_limited``, with exponential backoff and jitter, honouring ``Retry-After``. The
  server replays what it had done: money moves once. Commands without a key (freeze,
  update...) are sent again only when the server surely did nothing (the connection
  was refused, or it answered 409/429/503 ``service_unavailable``).
- **Read-your-writes**: the highest log ``position`` of any answer is kept, and reads
  of the read models (``list_accounts``, ``statement``, ``projections``) ask the server
  to wait until its views have reached it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from eventledger import calls
from eventledger.calls import Call, Model
from eventledger.errors import RETRY_STATUSES, ProblemError, problem_error

P = ParamSpec("P")
T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"
# Transport errors after which the server surely did nothing with the request.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# 503s that no retry can cure: a view stalled before an event needs an operator.
NOT_RETRIED = frozenset({"view_stalled"})


class RetryPolicy:
    """How often and how long to wait: ``attempts`` in all, exponential backoff from
    ``backoff_seconds`` up to ``backoff_max_seconds``, full jitter."""

    def __init__(
        self, attempts: int = 6, backoff_seconds: float = 0.1, backoff_max_seconds: float = 5.0
    ) -> None:
        assert attempts >= 1 and 0 <= backoff_seconds <= backoff_max_seconds
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds

    def delay_seconds(self, attempt: int, retry_after: str | None) -> float:
        ceiling = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        waited = random.uniform(0, ceiling)
        if retry_after is not None and retry_after.isascii() and retry_after.isdigit():
            waited = max(waited, min(float(retry_after), self.backoff_max_seconds))
        return waited


class _Session:
    """What both clients share: the retry decisions and the position kept."""

    def __init__(self, retry: RetryPolicy | None) -> None:
        self.retry = retry or RetryPolicy()
        self.position = 0  # the highest log position any answer carried

    def request_of(self, call: Call[Any]) -> dict[str, Any]:
        params = dict(call.params)
        if call.reads_views and self.position:
            params["min_position"] = self.position
        return {"method": call.method, "url": call.path, "json": call.json,
                "params": params, "headers": dict(call.headers)}  # fmt: skip

    def may_retry_error(self, call: Call[Any], error: httpx.TransportError, attempt: int) -> bool:
        if attempt >= self.retry.attempts:
            return False
        return call.replay_safe or isinstance(error, NOT_SENT)

    def may_retry_answer(self, call: Call[Any], response: httpx.Response, attempt: int) -> bool:
        if attempt >= self.retry.attempts or response.status_code not in RETRY_STATUSES:
            return False
        code = _problem(response).get("code")
        if code in NOT_RETRIED:
            return False
        if call.replay_safe:
            return True
        return code != "outcome_unknown"  # it may be written: the caller decides

    def answer(self, call: Call[Model], response: httpx.Response) -> Model:
        if response.status_code >= 400:
            raise problem_error(response.status_code, _problem(response))
        result = call.answer.model_validate(response.json())
        position = getattr(result, "position", None)
        if isinstance(position, int) and not call.reads_views:
            self.position = max(self.position, position)
        return result


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"code": "http_error", "detail": response.text[:200]}


def _sync(build: Callable[P, Call[Model]]) -> Callable[Concatenate[Client, P], Model]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Model:
        return self.run(build(*args, **kwargs))

    method.__name__, method.__doc__ = build.__name__, build.__doc__
    return method


def _async(
    build: Callable[P, Call[Model]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, Model]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> Model:
        return await self.run(build(*args, **kwargs))

    method.__name__, method.__doc__ = build.__name__, build.__doc__
    return method


def _headers(api_key: str | None) -> dict[str, str]:
    return {} if api_key is None else {"Authorization": f"Bearer {api_key}"}


class Client:
    """The sync client; a context manager that closes its connections."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout_seconds: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._session = _Session(retry)
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout_seconds,
            transport=transport,
        )  # fmt: skip

    @property
    def position(self) -> int:
        return self._session.position

    def run(self, call: Call[Model]) -> Model:
        """Sends ``call``, again while the policy allows, and reads its answer."""
        session = self._session
        for attempt in range(1, session.retry.attempts + 1):
            try:
                response = self._http.request(**session.request_of(call))
            except httpx.TransportError as error:
                if not session.may_retry_error(call, error, attempt):
                    raise
                time.sleep(session.retry.delay_seconds(attempt, None))
                continue
            if session.may_retry_answer(call, response, attempt):
                time.sleep(
                    session.retry.delay_seconds(attempt, response.headers.get("retry-after"))
                )
                continue
            return session.answer(call, response)
        raise AssertionError("the last attempt returns or raises")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    open_account = _sync(calls.open_account)
    get_account = _sync(calls.get_account)
    update_account = _sync(calls.update_account)
    freeze = _sync(calls.freeze)
    unfreeze = _sync(calls.unfreeze)
    close_account = _sync(calls.close)
    deposit = _sync(calls.deposit)
    withdraw = _sync(calls.withdraw)
    account_events = _sync(calls.account_events)
    balance = _sync(calls.balance)
    list_accounts = _sync(calls.list_accounts)
    statement = _sync(calls.statement)
    transfer = _sync(calls.transfer)
    transfer_batch = _sync(calls.transfer_batch)
    get_transfer = _sync(calls.get_transfer)
    post_pending = _sync(calls.post_pending)
    void_pending = _sync(calls.void_pending)
    reverse = _sync(calls.reverse)
    projections = _sync(calls.projections)
    audit_digest = _sync(calls.audit_digest)
    audit_verify = _sync(calls.audit_verify)


class AsyncClient:
    """The async client: the same methods, awaited; ``async with`` closes it."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout_seconds: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._session = _Session(retry)
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout_seconds,
            transport=transport,
        )  # fmt: skip

    @property
    def position(self) -> int:
        return self._session.position

    async def run(self, call: Call[Model]) -> Model:
        session = self._session
        for attempt in range(1, session.retry.attempts + 1):
            try:
                response = await self._http.request(**session.request_of(call))
            except httpx.TransportError as error:
                if not session.may_retry_error(call, error, attempt):
                    raise
                await asyncio.sleep(session.retry.delay_seconds(attempt, None))
                continue
            if session.may_retry_answer(call, response, attempt):
                retry_after = response.headers.get("retry-after")
                await asyncio.sleep(session.retry.delay_seconds(attempt, retry_after))
                continue
            return session.answer(call, response)
        raise AssertionError("the last attempt returns or raises")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    open_account = _async(calls.open_account)
    get_account = _async(calls.get_account)
    update_account = _async(calls.update_account)
    freeze = _async(calls.freeze)
    unfreeze = _async(calls.unfreeze)
    close_account = _async(calls.close)
    deposit = _async(calls.deposit)
    withdraw = _async(calls.withdraw)
    account_events = _async(calls.account_events)
    balance = _async(calls.balance)
    list_accounts = _async(calls.list_accounts)
    statement = _async(calls.statement)
    transfer = _async(calls.transfer)
    transfer_batch = _async(calls.transfer_batch)
    get_transfer = _async(calls.get_transfer)
    post_pending = _async(calls.post_pending)
    void_pending = _async(calls.void_pending)
    reverse = _async(calls.reverse)
    projections = _async(calls.projections)
    audit_digest = _async(calls.audit_digest)
    audit_verify = _async(calls.audit_verify)


__all__ = ["AsyncClient", "Client", "ProblemError", "RetryPolicy"]
