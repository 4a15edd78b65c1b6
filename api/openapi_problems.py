"""Which problem ``code``s each operation can answer: the one table, and the OpenAPI
responses made from it.

Each operation's error responses list, per status, exactly the codes of this table
(an ``enum`` on ``code`` and a description naming each), so a client generated from
the document knows what to handle, and the fuzz test (tests/api/test_fuzz.py), which
validates every answer against the document, fails on a code the table lacks.
tests/api/test_openapi_document.py fails on a code the operation cannot answer
(a 404 without an id, a 412 without If-Match, a 413 without a body...).
"""

from __future__ import annotations

from typing import Any

from api.errors import (
    HTTP_PROBLEMS,
    LEDGER_PROBLEMS,
    PROBLEM_MEDIA_TYPE,
    PROBLEM_SCHEMA_REFERENCE,
    ProblemDetails,
)

# Codes raised as ``Problem`` by a route rather than through the two tables of errors.py.
ROUTE_CODES = {
    "view_behind": (503, "A view has not reached the position yet; retry"),
    "view_stalled": (503, "A view is stalled before an event it cannot apply"),
}

# Any request: the header-size limit and a failure of ours.
ANY = ("headers_too_large", "internal_error")
# Every /v1 route: the API key, its scope, the rate limit.
KEY = ("unauthorized", "forbidden", "rate_limited")
STORE = ("service_unavailable",)
# A route that takes path, query or header parameters.
INPUT = ("validation_error",)
# A route that takes a JSON body: sent as anything but JSON, it is a 415.
# A body that does not arrive in time is a 408; one waiting too long for its turn to be
# received (too many at once) a 503 service_unavailable (api.middleware.RequestBodies).
BODY = (
    "validation_error",
    "payload_too_large",
    "unsupported_media_type",
    "request_timeout",
    "service_unavailable",
)
# A command: its save may conflict past the retries, or be sent with no answer back.
WRITE = ("conflict", "outcome_unknown", "service_unavailable")
# A transfer's own rules, recorded as Transfer.Rejected.
REJECTIONS = ("insufficient_funds", "account_frozen", "account_closed", "amount_out_of_range")
ACCOUNT_READ = (*KEY, *INPUT, *STORE, "not_found")
ACCOUNT_COMMAND = (*KEY, *INPUT, *WRITE, "not_found", "account_closed", "version_mismatch")
READ_MODEL = (*KEY, *INPUT, *STORE, "view_behind", "view_stalled")

# (method, path) -> the codes that operation can answer besides ``ANY``.
OPERATION_CODES: dict[tuple[str, str], tuple[str, ...]] = {
    ("post", "/v1/accounts"): (*KEY, *BODY, *WRITE, "idempotency_key_reused", "reserved_id"),
    ("get", "/v1/accounts"): READ_MODEL,
    ("get", "/v1/accounts/{account_id}"): ACCOUNT_READ,
    ("patch", "/v1/accounts/{account_id}"): (*ACCOUNT_COMMAND, *BODY),
    ("post", "/v1/accounts/{account_id}/freeze"): ACCOUNT_COMMAND,
    ("post", "/v1/accounts/{account_id}/unfreeze"): ACCOUNT_COMMAND,
    ("post", "/v1/accounts/{account_id}/close"): (*ACCOUNT_COMMAND, "account_not_empty"),
    # The world account of the currency is the other side: naming it is same_account.
    ("post", "/v1/accounts/{account_id}/deposits"): (
        *KEY, *BODY, *WRITE, "not_found", "same_account", "idempotency_key_reused",
        "account_frozen", "account_closed", "amount_out_of_range", "reserved_id",
    ),
    ("post", "/v1/accounts/{account_id}/withdrawals"): (
        *KEY, *BODY, *WRITE, *REJECTIONS, "not_found", "same_account", "idempotency_key_reused",
        "reserved_id",
    ),
    ("get", "/v1/accounts/{account_id}/events"): ACCOUNT_READ,
    ("get", "/v1/accounts/{account_id}/balance"): ACCOUNT_READ,
    ("get", "/v1/accounts/{account_id}/statement"): (*READ_MODEL, "not_found"),
    # Account ids in the body: an unknown one is a 404.
    ("post", "/v1/transfers"): (
        *KEY, *BODY, *WRITE, *REJECTIONS, "not_found", "currency_mismatch", "same_account",
        "idempotency_key_reused", "reserved_id",
    ),
    # An item's failure, unknown accounts included, is batch_item_failed with its index.
    ("post", "/v1/transfers/batch"): (
        *KEY, *BODY, *WRITE, "batch_item_failed", "idempotency_key_reused",
    ),
    ("get", "/v1/transfers/{transfer_id}"): (*KEY, *INPUT, *STORE, "not_found"),
    ("post", "/v1/transfers/{transfer_id}/post"): (
        *KEY, *BODY, *WRITE, "not_found", "transfer_not_pending", "pending_expired",
        "amount_out_of_range", "account_frozen", "account_closed", "idempotency_key_reused",
    ),
    ("post", "/v1/transfers/{transfer_id}/void"): (
        *KEY, *INPUT, *WRITE, "not_found", "transfer_not_pending", "idempotency_key_reused",
    ),
    ("post", "/v1/transfers/{transfer_id}/reverse"): (
        *KEY, *BODY, *WRITE, *REJECTIONS, "not_found", "transfer_not_posted",
        "idempotency_key_reused", "reserved_id",
    ),
    ("get", "/v1/projections"): READ_MODEL,
    # A legacy chain the log no longer matches is not re-chained: a conflict.
    ("get", "/v1/audit/digest"): (*KEY, *STORE, "conflict"),
    # One verify at a time per process: a second one meanwhile is a conflict.
    ("post", "/v1/audit/verify"): (*KEY, *BODY, *STORE, "conflict"),
    ("get", "/healthz"): (),
    # Open, but a caller with a key is still rate limited.
    ("get", "/readyz"): ("rate_limited", *STORE),
    ("get", "/metrics"): (),
}  # fmt: skip


def status_and_title(code: str) -> tuple[int, str]:
    for kind in (*LEDGER_PROBLEMS.values(), *HTTP_PROBLEMS.values()):
        if kind.code == code:
            return kind.status, kind.title
    return ROUTE_CODES[code]


def codes_of(method: str, path: str) -> dict[int, list[str]]:
    """The codes of an operation by status, each list sorted."""
    by_status: dict[int, set[str]] = {}
    for code in (*ANY, *OPERATION_CODES[(method, path)]):
        by_status.setdefault(status_and_title(code)[0], set()).add(code)
    return {status: sorted(codes) for status, codes in sorted(by_status.items())}


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """Replaces every operation's error responses with those of ``OPERATION_CODES``,
    as ``application/problem+json``, and drops FastAPI's unused validation schemas."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas["ProblemDetails"] = ProblemDetails.model_json_schema()
    for path, path_item in openapi.get("paths", {}).items():
        for method, operation in path_item.items():
            responses = operation.setdefault("responses", {})
            for status in [status for status in responses if status[0] in "45"]:
                del responses[status]
            for status, codes in codes_of(method, path).items():
                responses[str(status)] = _problem_response(path, status, codes)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return openapi


def _problem_response(path: str, status: int, codes: list[str]) -> dict[str, Any]:
    titles = [f"`{code}`: {status_and_title(code)[1]}" for code in codes]
    example = {
        "type": f"urn:eventledger:problem:{codes[0]}",
        "title": status_and_title(codes[0])[1],
        "status": status,
        "detail": status_and_title(codes[0])[1],
        "instance": path,
        "code": codes[0],
    }
    code_schema = {
        "type": "string",
        "enum": codes,
        "description": "what went wrong, one of: " + ", ".join(codes),
    }
    return {
        "description": "; ".join(titles),
        "content": {
            PROBLEM_MEDIA_TYPE: {
                "schema": {
                    "allOf": [
                        {"$ref": PROBLEM_SCHEMA_REFERENCE},
                        {"type": "object", "properties": {"code": code_schema}},
                    ]
                },
                "example": example,
            }
        },
    }
