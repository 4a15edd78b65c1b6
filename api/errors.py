"""Every non-2xx answer is an RFC 9457 ``application/problem+json`` document.

One table maps each ``LedgerError`` class to its HTTP status; one handler renders
ledger errors, request validation errors, Starlette's own HTTP errors (unknown routes,
wrong methods, body too large) and store outages the same way:
``{type, title, status, detail, instance, code}`` plus a few named extension members.
Nothing a client sent is echoed back beyond short, truncated field locations.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
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

# The one table: most specific class first; the first isinstance match wins.
ERROR_STATUS: tuple[tuple[type[LedgerError], int], ...] = (
    (domain_errors.NotFound, 404),
    (domain_errors.VersionMismatch, 412),
    (domain_errors.ConcurrencyConflict, 409),
    (domain_errors.Unavailable, 503),
    (domain_errors.InvalidRequest, 422),
    (domain_errors.TransferRejected, 422),
    (domain_errors.AccountNotEmpty, 422),
    (domain_errors.IdempotencyKeyReused, 422),
    (domain_errors.TransferNotPending, 422),
    (domain_errors.TransferNotPosted, 422),
    (domain_errors.BatchItemFailed, 422),
    (domain_errors.PendingExpired, 422),
    (domain_errors.LedgerError, 422),
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

# Codes that come from HTTP itself rather than from the ledger.
HTTP_STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "version_mismatch",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    503: "service_unavailable",
}

TITLES: dict[str, str] = {
    "validation_error": "The request is not valid",
    "not_found": "Not found",
    "insufficient_funds": "Insufficient funds",
    "currency_mismatch": "Currency mismatch",
    "same_account": "Same account on both sides",
    "account_frozen": "Account frozen",
    "account_closed": "Account closed",
    "account_not_empty": "Account not empty",
    "amount_out_of_range": "Amount out of range",
    "idempotency_key_reused": "Idempotency key reused for another request",
    "transfer_not_pending": "Transfer not pending",
    "transfer_not_posted": "Transfer not posted",
    "batch_item_failed": "A batch item failed; nothing was written",
    "pending_expired": "Pending transfer expired",
    "version_mismatch": "Version mismatch",
    "conflict": "Concurrent changes; retry",
    "unauthorized": "Unauthorized",
    "forbidden": "Forbidden",
    "payload_too_large": "Payload too large",
    "rate_limited": "Too many requests",
    "headers_too_large": "Request headers too large",
    "method_not_allowed": "Method not allowed",
    "service_unavailable": "Service unavailable",
    "outcome_unknown": "Outcome unknown; retry the same request",
    "internal_error": "Internal error",
}


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
            "example": {
                "type": "urn:eventledger:problem:insufficient_funds",
                "title": "Insufficient funds",
                "status": 422,
                "detail": "account ... has 100 available and an overdraft limit of 0",
                "instance": "/v1/transfers",
                "code": "insufficient_funds",
            }
        },
    )

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str = Field(description="stable machine-readable error code")


def move_problems_to_problem_json(openapi: dict[str, Any]) -> dict[str, Any]:
    """Lists error responses under ``application/problem+json``, where they are sent,
    and documents the 413 of the body limit on every operation that takes a body."""
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation and "413" not in responses:
                responses["413"] = {
                    "description": TITLES["payload_too_large"],
                    "content": {"application/json": {"schema": {"$ref": PROBLEM_SCHEMA_REFERENCE}}},
                }
            for status, response in responses.items():
                content = response.get("content", {})
                if str(status)[0] in "45" and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    return openapi


def status_for(error: LedgerError) -> int:
    for error_class, status in ERROR_STATUS:
        if isinstance(error, error_class):
            return status
    raise AssertionError(f"{type(error).__name__} is missing from ERROR_STATUS")


# What routes can answer besides their own errors: auth, input, the store's health.
READ_PROBLEMS = (401, 403, 404, 422, 429, 503)
WRITE_PROBLEMS = (401, 403, 404, 409, 413, 422, 429, 503)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries naming the problem documents a route answers."""
    documented = (*statuses, 500)
    return {
        status: {
            "model": ProblemDetails,
            "description": TITLES.get(HTTP_STATUS_CODES.get(status, ""), "Problem"),
        }
        for status in sorted(set(documented))
    }


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
        "title": TITLES.get(code, code.replace("_", " ").capitalize()),
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
    return problem_response(
        request, status_for(error), error.code, error.detail, headers=headers, extra=extra
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
    code = HTTP_STATUS_CODES.get(status, "http_error")
    detail = error.detail if isinstance(error.detail, str) else TITLES.get(code, code)
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
