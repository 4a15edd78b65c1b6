"""Business outcomes of the ledger's use cases.

Every class carries a stable ``code``: the HTTP layer maps it to a status, clients
match on it, and a rejected transfer stores it so a retry gets the same answer.

    LedgerError
    ├── InvalidRequest                 code validation_error (refused, recorded nowhere)
    │   ├── InvalidCurrency
    │   │   └── UnknownCurrency
    │   ├── AmountOutOfRange           code amount_out_of_range
    │   ├── SameAccount                code same_account
    │   └── ReservedId                 code reserved_id (a world account's id)
    ├── NotFound                       code not_found
    │   ├── AccountNotFound
    │   └── TransferNotFound
    ├── TransferRejected               business rejections, recorded as Transfer.Rejected
    │   ├── InsufficientFunds          code insufficient_funds
    │   ├── CurrencyMismatch           code currency_mismatch
    │   ├── AccountFrozen              code account_frozen
    │   ├── AccountClosed              code account_closed
    │   └── BalanceOverflow            code amount_out_of_range (an account number's range)
    ├── AccountNotEmpty                code account_not_empty
    ├── IdempotencyKeyReused           code idempotency_key_reused
    ├── TransferNotPending             code transfer_not_pending
    ├── TransferNotPosted              code transfer_not_posted
    ├── BatchItemFailed                code batch_item_failed (names the item)
    ├── PendingExpired                 code pending_expired
    ├── VersionMismatch                code version_mismatch
    ├── ConcurrencyConflict            code conflict (retries exhausted)
    └── Unavailable                    the command did not complete; retry it as it was
        ├── ServiceUnavailable         code service_unavailable (nothing was written)
        └── OutcomeUnknown             code outcome_unknown (the commit was sent, no answer)
"""

from __future__ import annotations

from uuid import UUID


class LedgerError(Exception):
    """Base class of every business outcome that is not a success."""

    code = "ledger_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(LedgerError):
    """The request is malformed; nothing was recorded."""

    code = "validation_error"


class InvalidCurrency(InvalidRequest):
    """The currency is not three upper-case letters."""


class UnknownCurrency(InvalidCurrency):
    """The currency has the right shape but is not one the ledger accepts."""


class AmountOutOfRange(InvalidRequest):
    """The amount is not an integer between 1 and 10**15 minor units."""

    code = "amount_out_of_range"


class SameAccount(InvalidRequest):
    """A transfer names the same account on both sides."""

    code = "same_account"


class ReservedId(InvalidRequest):
    """The id given for a new account or transfer is a world account's id.

    World ids (uuid5 of ``world:<CUR>``, for every code of three upper-case letters)
    are reserved for the world accounts, whichever currency is asked for.
    """

    code = "reserved_id"


class NotFound(LedgerError):
    code = "not_found"


class AccountNotFound(NotFound):
    def __init__(self, account_id: UUID | str, detail: str = "") -> None:
        super().__init__(detail or f"account {account_id} not found")
        self.account_id = account_id


class TransferNotFound(NotFound):
    def __init__(self, transfer_id: UUID | str) -> None:
        super().__init__(f"transfer {transfer_id} not found")
        self.transfer_id = transfer_id


class TransferRejected(LedgerError):
    """A well-formed transfer that the ledger's rules refuse.

    The refusal is recorded as a ``Transfer.Rejected`` event, so a retry with the same
    transfer id gets the same answer and auditors see the attempt.
    """


class InsufficientFunds(TransferRejected):
    code = "insufficient_funds"


class CurrencyMismatch(TransferRejected):
    code = "currency_mismatch"


class AccountFrozen(TransferRejected):
    code = "account_frozen"


class AccountClosed(TransferRejected):
    code = "account_closed"


class BalanceOverflow(TransferRejected):
    """A number of an account would leave its range (``domain.money.balance_range``):
    signed 64 bits, or signed 128 bits for a world account."""

    code = "amount_out_of_range"


class AccountNotEmpty(LedgerError):
    code = "account_not_empty"


class IdempotencyKeyReused(LedgerError):
    code = "idempotency_key_reused"


class TransferNotPending(LedgerError):
    code = "transfer_not_pending"


class TransferNotPosted(LedgerError):
    """Only a posted transfer can be reversed."""

    code = "transfer_not_posted"


class BatchItemFailed(LedgerError):
    """One item of an atomic batch failed, so nothing of the batch was written."""

    code = "batch_item_failed"

    def __init__(self, index: int, error: LedgerError) -> None:
        super().__init__(f"item {index} failed: {error.detail}")
        self.index = index
        self.error = error


class PendingExpired(LedgerError):
    code = "pending_expired"


class VersionMismatch(LedgerError):
    code = "version_mismatch"

    def __init__(self, expected_version: int, actual_version: int) -> None:
        super().__init__(
            f"expected version {expected_version}, the account is at version {actual_version}"
        )
        self.expected_version = expected_version
        self.actual_version = actual_version


class ConcurrencyConflict(LedgerError):
    code = "conflict"


class Unavailable(LedgerError):
    """The command did not complete; the same command again (same id) is safe."""


class ServiceUnavailable(Unavailable):
    """The store failed before the commit was sent: nothing of the command was written."""

    code = "service_unavailable"


class OutcomeUnknown(Unavailable):
    """The commit was sent and no answer came: it may or may not be written.

    Retrying with the same transfer id is safe: it replays or completes it.
    """

    code = "outcome_unknown"


# A rejected transfer stores its code; a retry re-raises the class found here.
REJECTIONS_BY_CODE: dict[str, type[TransferRejected]] = {
    cls.code: cls
    for cls in (InsufficientFunds, CurrencyMismatch, AccountFrozen, AccountClosed, BalanceOverflow)
}
