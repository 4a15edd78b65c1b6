"""Every non-2xx answer is an RFC 9457 ``application/problem+json`` document.

One table gives each ``LedgerError`` class its HTTP status, code and title; a small one
gives those of the failures that come from HTTP itself. One handler renders ledger
errors, request validation errors, Starlette's own HTTP errors (unknown routes, wrong
methods, body too large) and store outages the same way:
``{type, title, status, detail, instance, code}`` plus a few named extension members.
Nothing a client sent is echoed back beyond short, truncated field locations.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain import errors as domain_errors
from domain.errors import (
    BatchItemFailed,
    LedgerError,
    TransferRejected,
    Unavailable,
    VersionMismatch,
)

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:eventledger:problem:"
PROBLEM_SCHEMA_REFERENCE = "#/components/schemas/ProblemDetails"
DETAIL_LENGTH_MAX = 300
INSTANCE_LENGTH_MAX = 200
VALIDATION_ERRORS_MAX = 10
LOCATION_PART_LENGTH_MAX = 40


@dataclass(frozen=True)
class ProblemKind:
    """What a client sees of one kind of failure besides its detail."""

    status: int
    code: str
    title: str


def _ledger_problem(
    error_class: type[LedgerError], status: int, title: str
) -> tuple[type[LedgerError], ProblemKind]:
    # The code is the domain class's own: a rejected transfer stores it in its event.
    return error_class, ProblemKind(status, error_class.code, title)


# The one table of ledger errors: class -> status, code, title. A class not named here
# (AccountNotFound, UnknownCurrency...) shares its nearest named base's row;
# tests/api/test_errors.py checks every class of domain/errors.py against it.
LEDGER_PROBLEMS: dict[type[LedgerError], ProblemKind] = dict(
    [
        _ledger_problem(domain_errors.LedgerError, 422, "Ledger error"),
        _ledger_problem(domain_errors.InvalidRequest, 422, "The request is not valid"),
        _ledger_problem(domain_errors.AmountOutOfRange, 422, "Amount out of range"),
        _ledger_problem(domain_errors.SameAccount, 422, "Same account on both sides"),
        _ledger_problem(domain_errors.ReservedId, 422, "Id reserved for a world account"),
        _ledger_problem(domain_errors.NotFound, 404, "Not found"),
        _ledger_problem(domain_errors.InsufficientFunds, 422, "Insufficient funds"),
        _ledger_problem(domain_errors.CurrencyMismatch, 422, "Currency mismatch"),
        _ledger_problem(domain_errors.AccountFrozen, 422, "Account frozen"),
        _ledger_problem(domain_errors.AccountClosed, 422, "Account closed"),
        _ledger_problem(domain_errors.BalanceOverflow, 422, "Amount out of range"),
        _ledger_problem(domain_errors.AccountNotEmpty, 422, "Account not empty"),
        _ledger_problem(
            domain_errors.IdempotencyKeyReused, 422, "Idempotency key reused for another request"
        ),
        _ledger_problem(domain_errors.TransferNotPending, 422, "Transfer not pending"),
        _ledger_problem(domain_errors.TransferNotPosted, 422, "Transfer not posted"),
        _ledger_problem(
            domain_errors.BatchItemFailed, 422, "A batch item failed; nothing was written"
        ),
        _ledger_problem(domain_errors.PendingExpired, 422, "Pending transfer expired"),
        _ledger_problem(domain_errors.VersionMismatch, 412, "Version mismatch"),
        _ledger_problem(domain_errors.ConcurrencyConflict, 409, "Concurrent changes; retry"),
        # Never raised itself (its two subclasses are), but a retry is still the answer.
        _ledger_problem(domain_errors.Unavailable, 503, "Ledger error"),
        _ledger_problem(domain_errors.ServiceUnavailable, 503, "Service unavailable"),
        _ledger_problem(
            domain_errors.OutcomeUnknown, 503, "Outcome unknown; retry the same request"
        ),
    ]
)


# The store is locked past its bounded wait, or unreachable: the event store's own
# errors, and those of the API-key lookups, which use the same database directly.
STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    sqlite3.OperationalError,
    psycopg.OperationalError,
    PoolTimeout,
)

# Problems that come from HTTP itself rather than from the ledger, by status.
HTTP_PROBLEMS: dict[int, ProblemKind] = {
    kind.status: kind
    for kind in (
        ProblemKind(400, "bad_request", "Bad request"),
        ProblemKind(401, "unauthorized", "Unauthorized"),
        ProblemKind(403, "forbidden", "Forbidden"),
        ProblemKind(405, "method_not_allowed", "Method not allowed"),
        ProblemKind(406, "not_acceptable", "Not acceptable"),
        ProblemKind(408, "request_timeout", "Request timeout"),
        ProblemKind(413, "payload_too_large", "Payload too large"),
        ProblemKind(415, "unsupported_media_type", "Unsupported media type"),
        ProblemKind(429, "rate_limited", "Too many requests"),
        ProblemKind(431, "headers_too_large", "Request headers too large"),
        ProblemKind(500, "internal_error", "Internal error"),
    )
}
# Statuses that HTTP (an unknown route, a bad header) and the ledger answer alike.
for _shared in (
    domain_errors.NotFound,
    domain_errors.ConcurrencyConflict,
    domain_errors.VersionMismatch,
    domain_errors.InvalidRequest,
    domain_errors.ServiceUnavailable,
):
    HTTP_PROBLEMS[LEDGER_PROBLEMS[_shared].status] = LEDGER_PROBLEMS[_shared]


def _titles_by_code() -> dict[str, str]:
    titles: dict[str, str] = {}
    for kind in (*LEDGER_PROBLEMS.values(), *HTTP_PROBLEMS.values()):
        assert titles.setdefault(kind.code, kind.title) == kind.title, kind.code
    return titles


# An index of the two tables above, for problems raised by code alone.
TITLES_BY_CODE = _titles_by_code()


class Problem(Exception):
    """An HTTP-level failure raised by our own code (auth, headers, availability)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:eventledger:problem:insufficient_funds",
                    "title": "Insufficient funds",
                    "status": 422,
                    "detail": "account 0b5c3a4e-6f1e-4d55-9a3b-2f7e0c1d9a10 has 7500 "
                    "available and an overdraft limit of 0; 10000 requested",
                    "instance": "/v1/transfers",
                    "code": "insufficient_funds",
                    "transfer_id": "3f9d2c1b-8a7e-4b6c-9d5e-1f2a3b4c5d6e",
                }
            ]
        },
    )

    type: str = Field(description=f"{PROBLEM_TYPE_PREFIX}<code>: a URI naming the code.")
    title: str = Field(description="A short summary of the code, the same for every case.")
    status: int = Field(description="The HTTP status, as on the response.")
    detail: str = Field(
        description=f"What went wrong in this case, for people; at most {DETAIL_LENGTH_MAX} "
        "characters. Never echoes the values you sent."
    )
    instance: str = Field(description="The request's path.")
    code: str = Field(description="Stable machine-readable error code: branch on this.")


def problem_for(error_class: type[LedgerError]) -> ProblemKind:
    """The row of ``LEDGER_PROBLEMS`` of this class or of its nearest named base."""
    for base in error_class.__mro__:
        if base in LEDGER_PROBLEMS:
            return LEDGER_PROBLEMS[base]
    raise AssertionError(f"{error_class.__name__} is not a LedgerError")


def problem_response(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": TITLES_BY_CODE.get(code, code.replace("_", " ").capitalize()),
        "status": status,
        "detail": _truncate(detail, DETAIL_LENGTH_MAX),
        "instance": _truncate(request.url.path, INSTANCE_LENGTH_MAX),
        "code": code,
    }
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LedgerError, _ledger_error)
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for unavailable in STORE_UNAVAILABLE:
        app.add_exception_handler(unavailable, _store_unavailable)
    app.add_exception_handler(Exception, _internal_error)


async def _ledger_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, LedgerError)
    extra: dict[str, Any] = {}
    if isinstance(error, BatchItemFailed):
        extra = {"index": error.index, "item_code": error.error.code}
    elif isinstance(error, VersionMismatch):
        extra = {
            "expected_version": error.expected_version,
            "actual_version": error.actual_version,
        }
    transfer_id = getattr(request.state, "transfer_id", None)
    if transfer_id is not None and isinstance(error, TransferRejected):
        extra["transfer_id"] = str(transfer_id)
    headers = {}
    if isinstance(error, Unavailable):
        headers["Retry-After"] = str(request.app.state.settings.store_busy_retry_after_seconds)
    _count_rejection(request, error)
    kind = problem_for(type(error))
    return problem_response(
        request, kind.status, kind.code, error.detail, headers=headers, extra=extra
    )


async def _problem(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Problem)
    return problem_response(
        request, error.status, error.code, error.detail, headers=error.headers, extra=error.extra
    )


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    # Only the location, message and type of each error: never the input, which may
    # be a megabyte string or a 4,000-digit number.
    errors = [
        {
            "loc": [_truncate(str(part), LOCATION_PART_LENGTH_MAX) for part in item["loc"][:6]],
            "msg": _truncate(str(item.get("msg", "")), 200),
            "type": _truncate(str(item.get("type", "")), 60),
        }
        for item in error.errors()[:VALIDATION_ERRORS_MAX]
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    detail = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return problem_response(request, 422, "validation_error", detail, extra={"errors": errors})


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    status = error.status_code
    if status == 400 and isinstance(error.__cause__, ValueError | RecursionError):
        # FastAPI answers 400 when json.loads fails other than by a JSONDecodeError:
        # an integer of more than 4,300 digits, bytes that are not UTF-8, or arrays
        # nested thousands deep. For us that is invalid input like any other.
        return problem_response(
            request, 422, "validation_error", "the body is not valid JSON within our limits"
        )
    kind = HTTP_PROBLEMS.get(status)
    code = kind.code if kind else "http_error"
    detail = error.detail if isinstance(error.detail, str) else TITLES_BY_CODE.get(code, code)
    return problem_response(request, status, code, detail, headers=error.headers)


async def _store_unavailable(request: Request, error: Exception) -> JSONResponse:
    # The store is locked or unreachable past its bounded wait; nothing was committed
    # by this request, so the client may retry the same request (same id) later.
    logger.warning("event store unavailable: %s", error)
    retry_after = request.app.state.settings.store_busy_retry_after_seconds
    return problem_response(
        request,
        503,
        "service_unavailable",
        "the event store is busy or unreachable; retry the same request later",
        headers={"Retry-After": str(retry_after)},
    )


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    # Starlette logs the traceback and re-raises after this answer is sent.
    return problem_response(request, 500, "internal_error", "an unexpected error occurred")


def _count_rejection(request: Request, error: LedgerError) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is None:
        return
    if isinstance(error, BatchItemFailed):
        error = error.error
    if isinstance(error, TransferRejected):
        metrics.transfers_rejected.labels(code=error.code).inc()


def _truncate(text: str, length_max: int) -> str:
    return text if len(text) <= length_max else text[: length_max - 3] + "..."
