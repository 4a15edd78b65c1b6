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

from domain.errors import (
    REJECTIONS_BY_CODE,
    IdempotencyKeyReused,
    PendingExpired,
    TransferNotPending,
    TransferRejected,
)

POSTED = "posted"
PENDING = "pending"
VOIDED = "voided"
REJECTED = "rejected"

# What a settlement request asks of a pending transfer.
CAPTURE = "post"
RELEASE = "void"
# Why a pending transfer was voided: a client's void, or its timeout.
VOIDED_BY_CLIENT = "voided"
VOIDED_BY_EXPIRY = "expired"


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


@dataclass(frozen=True)
class SettlementRequest:
    """A client's post (capture) or void of a pending transfer.

    A transfer is settled once, and keeps how: what was captured (or that it was
    voided) and the ``request_id`` of the request that did it (uuid5 of its
    Idempotency-Key; None without one). So the same request again is answered with
    the settled transfer, not refused (``Transfer.settled_as``).
    """

    action: str  # CAPTURE or RELEASE
    amount: int | None = None  # CAPTURE only; None captures all of it
    request_id: UUID | None = None


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

    class PendingPosted(Aggregate.Event):
        """Captured ``amount`` of the reservation. Version 2 adds ``request_id``
        (the settlement request's, or None); version 1 events read as None."""

        class_version = 2
        amount: int
        request_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state["request_id"] = None

    class PendingVoided(Aggregate.Event):
        """Released the reservation, ``reason`` "voided" or "expired". Version 2 adds
        ``request_id`` as ``PendingPosted`` does."""

        class_version = 2
        reason: str
        request_id: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state["request_id"] = None

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
        self.settlement_request_id: UUID | None = None

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

    def settled_as(self, settlement: SettlementRequest) -> bool:
        """Whether ``settlement`` asks again for what settled this transfer: then its
        answer is the transfer as it is. False while the transfer is pending.

        A request with an id (an Idempotency-Key) other than the one that settled the
        transfer is another operation, never a replay. For another request on a
        settled transfer, raises IdempotencyKeyReused (the id that settled it, asking
        something else), PendingExpired (a post after the timeout voided it), or
        TransferNotPending.
        """
        if self.status == PENDING:
            return False
        given, recorded = settlement.request_id, self.settlement_request_id
        other_id = None not in (given, recorded) and given != recorded
        if not other_id and self._settled_by(settlement):
            return True
        if given is not None and given == recorded:
            raise IdempotencyKeyReused(
                f"transfer {self.id} was settled with this key by another request"
            )
        if settlement.action == CAPTURE and self.void_reason == VOIDED_BY_EXPIRY:
            raise PendingExpired(f"transfer {self.id} expired at {self.expires_at}")
        raise TransferNotPending(f"transfer {self.id} is {self.status}")

    def _settled_by(self, settlement: SettlementRequest) -> bool:
        if not self.pending:
            return False  # posted at once, or a rejected request: nothing was settled
        if settlement.action == RELEASE:
            return self.status == VOIDED
        captured = self.amount if settlement.amount is None else settlement.amount
        return self.status == POSTED and self.posted_amount == captured

    @property
    def reversible_amount(self) -> int:
        return self.posted_amount - self.reversed_amount if self.status == POSTED else 0

    # Commands; the ledger checks the guards before calling them.

    def capture(self, amount: int, request_id: UUID | None = None) -> None:
        assert self.status == PENDING and 1 <= amount <= self.amount
        self._pending_posted(amount, request_id)

    def void(self, reason: str, request_id: UUID | None = None) -> None:
        assert self.status == PENDING and reason in (VOIDED_BY_CLIENT, VOIDED_BY_EXPIRY)
        self._pending_voided(reason, request_id)

    def record_reversal(self, reversal_id: UUID, amount: int) -> None:
        assert 1 <= amount <= self.reversible_amount
        self._reversed(reversal_id, amount)

    @event(PendingPosted)
    def _pending_posted(self, amount: int, request_id: UUID | None) -> None:
        self.status = POSTED
        self.posted_amount = amount
        self.settlement_request_id = request_id

    @event(PendingVoided)
    def _pending_voided(self, reason: str, request_id: UUID | None) -> None:
        self.status = VOIDED
        self.void_reason = reason
        self.settlement_request_id = request_id

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
