"""The Transfer aggregate: one movement of money, and its idempotency record.

Its id is the client's idempotency key. Its first event says what happened to the
request: ``Posted`` (money moved), ``Pending`` (money reserved) or ``Rejected``
(a business rule refused it, with the error code). Because the event store refuses
a second "first event" for the same id, the transfer itself is the uniqueness check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import REJECTIONS_BY_CODE, TransferRejected

POSTED = "posted"
PENDING = "pending"
VOIDED = "voided"
REJECTED = "rejected"


@dataclass(frozen=True)
class TransferRequest:
    """What a client asked for; two requests with one id must be equal."""

    debit_account_id: UUID
    credit_account_id: UUID
    amount: int
    currency: str
    description: str
    metadata: dict[str, str]
    pending: bool = False
    timeout_seconds: int | None = None
    reverses: UUID | None = None


class TransferRequested(Aggregate.Created):
    """Fields shared by the three ways a transfer begins."""

    debit_account_id: UUID
    credit_account_id: UUID
    amount: int
    currency: str
    description: str
    metadata: dict[str, str]
    reverses: UUID | None


class Transfer(Aggregate, created_event_name="Posted"):
    class Posted(TransferRequested):
        def apply(self, transfer: Transfer) -> None:
            transfer.status = POSTED
            transfer.posted_amount = self.amount

    class Pending(TransferRequested):
        timeout_seconds: int | None
        expires_at: datetime | None

        def apply(self, transfer: Transfer) -> None:
            transfer.status = PENDING
            transfer.pending = True
            transfer.timeout_seconds = self.timeout_seconds
            transfer.expires_at = self.expires_at

    class Rejected(TransferRequested):
        pending: bool
        timeout_seconds: int | None
        error_code: str
        error_detail: str

        def apply(self, transfer: Transfer) -> None:
            transfer.status = REJECTED
            transfer.pending = self.pending
            transfer.timeout_seconds = self.timeout_seconds
            transfer.error_code = self.error_code
            transfer.error_detail = self.error_detail

    def __init__(
        self,
        debit_account_id: UUID,
        credit_account_id: UUID,
        amount: int,
        currency: str,
        description: str,
        metadata: dict[str, str],
        reverses: UUID | None,
    ) -> None:
        self.debit_account_id = debit_account_id
        self.credit_account_id = credit_account_id
        self.amount = amount
        self.currency = currency
        self.description = description
        self.metadata = dict(metadata)
        self.reverses = reverses
        self.status = POSTED
        self.pending = False
        self.timeout_seconds: int | None = None
        self.expires_at: datetime | None = None
        self.posted_amount = 0
        self.reversed_amount = 0
        self.error_code: str | None = None
        self.error_detail: str | None = None
        self.void_reason: str | None = None

    # Factories: the event class says how the request ended.

    @classmethod
    def post(cls, transfer_id: UUID, request: TransferRequest) -> Transfer:
        return cls._create(cls.Posted, id=transfer_id, **_requested_fields(request))

    @classmethod
    def reserve(
        cls, transfer_id: UUID, request: TransferRequest, expires_at: datetime | None
    ) -> Transfer:
        return cls._create(
            cls.Pending,
            id=transfer_id,
            timeout_seconds=request.timeout_seconds,
            expires_at=expires_at,
            **_requested_fields(request),
        )

    @classmethod
    def reject(
        cls, transfer_id: UUID, request: TransferRequest, error_code: str, error_detail: str
    ) -> Transfer:
        return cls._create(
            cls.Rejected,
            id=transfer_id,
            pending=request.pending,
            timeout_seconds=request.timeout_seconds,
            error_code=error_code,
            error_detail=error_detail,
            **_requested_fields(request),
        )

    # Queries.

    @property
    def request(self) -> TransferRequest:
        return TransferRequest(
            debit_account_id=self.debit_account_id,
            credit_account_id=self.credit_account_id,
            amount=self.amount,
            currency=self.currency,
            description=self.description,
            metadata=self.metadata,
            pending=self.pending,
            timeout_seconds=self.timeout_seconds,
            reverses=self.reverses,
        )

    def rejection(self) -> TransferRejected | None:
        """The recorded refusal, as the error to raise again on a retry."""
        if self.status != REJECTED:
            return None
        assert self.error_code is not None and self.error_detail is not None
        return REJECTIONS_BY_CODE[self.error_code](self.error_detail)

    def is_expired(self, now: datetime) -> bool:
        return self.status == PENDING and self.expires_at is not None and now >= self.expires_at

    @property
    def reversible_amount(self) -> int:
        return self.posted_amount - self.reversed_amount if self.status == POSTED else 0

    # Commands; the ledger checks the guards before calling them.

    def capture(self, amount: int) -> None:
        assert self.status == PENDING and 1 <= amount <= self.amount
        self._pending_posted(amount)

    def void(self, reason: str) -> None:
        assert self.status == PENDING
        self._pending_voided(reason)

    def record_reversal(self, reversal_id: UUID, amount: int) -> None:
        assert 1 <= amount <= self.reversible_amount
        self._reversed(reversal_id, amount)

    @event("PendingPosted")
    def _pending_posted(self, amount: int) -> None:
        self.status = POSTED
        self.posted_amount = amount

    @event("PendingVoided")
    def _pending_voided(self, reason: str) -> None:
        self.status = VOIDED
        self.void_reason = reason

    @event("Reversed")
    def _reversed(self, reversal_id: UUID, amount: int) -> None:
        self.reversed_amount += amount


def _requested_fields(request: TransferRequest) -> dict[str, object]:
    return {
        "debit_account_id": request.debit_account_id,
        "credit_account_id": request.credit_account_id,
        "amount": request.amount,
        "currency": request.currency,
        "description": request.description,
        "metadata": dict(request.metadata),
        "reverses": request.reverses,
    }
