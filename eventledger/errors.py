"""Problems the server answered, raised as exceptions typed by their stable ``code``.

    ProblemError                 any problem+json answer (status, code, detail, problem)
    ├── RequestRefused           4xx: the request as sent will not succeed; fix it
    │   ├── ValidationError      validation_error (422) and other malformed requests
    │   │   └── ReservedId       reserved_id (422): a world account's id was given
    │   ├── Unauthorized         unauthorized (401)
    │   ├── Forbidden            forbidden (403)
    │   ├── NotFound             not_found (404)
    │   ├── VersionMismatch      version_mismatch (412)
    │   ├── IdempotencyKeyReused idempotency_key_reused (422)
    │   └── BusinessRejection    a rule of the ledger said no (422), recorded when a
    │       ├── InsufficientFunds         transfer was attempted
    │       ├── CurrencyMismatch, AccountFrozen, AccountClosed, AmountOutOfRange, ...
    └── RetryLater               408, 409, 429, 503: retried by the client; raised when the
        ├── OutcomeUnknown       retries ran out (outcome_unknown: it may be written;
        └── ...                  send the same call again with the same idempotency key)

Every class has the ``code`` it stands for; a code this client does not know yet is a
``ProblemError`` (or its 4xx/5xx branch) carrying that code.
"""

from __future__ import annotations

from typing import Any


class ProblemError(Exception):
    """An RFC 9457 problem answered by the server."""

    code = "problem"

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.code = str(problem.get("code", type(self).code))
        self.detail = str(problem.get("detail", ""))
        super().__init__(f"{status} {self.code}: {self.detail}")


class RequestRefused(ProblemError):
    code = "refused"


class RetryLater(ProblemError):
    code = "retry_later"


class ValidationError(RequestRefused):
    code = "validation_error"


class ReservedId(ValidationError):
    """An id given for a new account or transfer is a world account's id."""

    code = "reserved_id"


class Unauthorized(RequestRefused):
    code = "unauthorized"


class Forbidden(RequestRefused):
    code = "forbidden"


class NotFound(RequestRefused):
    code = "not_found"


class VersionMismatch(RequestRefused):
    code = "version_mismatch"


class IdempotencyKeyReused(RequestRefused):
    code = "idempotency_key_reused"


class BusinessRejection(RequestRefused):
    code = "business_rejection"


class InsufficientFunds(BusinessRejection):
    code = "insufficient_funds"


class CurrencyMismatch(BusinessRejection):
    code = "currency_mismatch"


class AccountFrozen(BusinessRejection):
    code = "account_frozen"


class AccountClosed(BusinessRejection):
    code = "account_closed"


class AccountNotEmpty(BusinessRejection):
    code = "account_not_empty"


class AmountOutOfRange(BusinessRejection):
    code = "amount_out_of_range"


class SameAccount(BusinessRejection):
    code = "same_account"


class TransferNotPending(BusinessRejection):
    code = "transfer_not_pending"


class TransferNotPosted(BusinessRejection):
    code = "transfer_not_posted"


class PendingExpired(BusinessRejection):
    code = "pending_expired"


class BatchItemFailed(BusinessRejection):
    code = "batch_item_failed"


class Conflict(RetryLater):
    code = "conflict"


class RequestTimeout(RetryLater):
    """The body did not arrive in time; nothing was done with it."""

    code = "request_timeout"


class RateLimited(RetryLater):
    code = "rate_limited"


class ServiceUnavailable(RetryLater):
    code = "service_unavailable"


class OutcomeUnknown(RetryLater):
    code = "outcome_unknown"


class ViewBehind(RetryLater):
    code = "view_behind"


class ViewStalled(ProblemError):
    """A read model is stalled before an event it cannot apply: an operator must act,
    so the client does not retry it."""

    code = "view_stalled"


def _leaves(base: type[ProblemError]) -> list[type[ProblemError]]:
    found = []
    for subclass in base.__subclasses__():
        found.append(subclass)
        found.extend(_leaves(subclass))
    return found


ERRORS_BY_CODE: dict[str, type[ProblemError]] = {
    error.code: error
    for error in _leaves(ProblemError)
    if error not in (RequestRefused, RetryLater, BusinessRejection)
}
# Statuses a client retries: the server said "not now", never "no".
RETRY_STATUSES = frozenset({408, 409, 429, 503})


def problem_error(status: int, problem: dict[str, Any]) -> ProblemError:
    """The exception for a problem answer: by its code, else by its status."""
    error = ERRORS_BY_CODE.get(str(problem.get("code")))
    if error is None:
        error = (
            RetryLater
            if status in RETRY_STATUSES
            else (RequestRefused if 400 <= status < 500 else ProblemError)
        )
    return error(status, problem)
