"""A plain model of the ledger's rules, for the stateful property test.

Dicts and ints only: it shares no code with ``domain/`` except the world account's id,
which DESIGN.md fixes (uuid5 of ``world:<CUR>``). Each command returns what the ledger
should answer: an ``Answer`` naming the expected error class, or a summary of the
expected view, so the test compares both with ``==``.

The order of the checks follows DESIGN.md and the error hierarchy: malformed input
first (recorded nowhere), then the idempotency record, then the business rules
(recorded as a rejected transfer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from domain.money import world_account_id

AMOUNT_MAX = 10**15
OPEN, FROZEN, CLOSED = "open", "frozen", "closed"
POSTED, PENDING, VOIDED, REJECTED = "posted", "pending", "voided", "rejected"


@dataclass(frozen=True)
class Answer:
    """What a command answered: ``error`` is an error class name, else a view summary."""

    error: str | None = None
    view: tuple[object, ...] = ()


def refused(error: str) -> Answer:
    return Answer(error=error)


@dataclass
class ModelAccount:
    currency: str
    overdraft_limit: int
    is_world: bool = False
    status: str = OPEN
    balance: int = 0
    pending_debits: int = 0
    pending_credits: int = 0

    @property
    def is_empty(self) -> bool:
        return self.balance == 0 and self.pending_debits == 0 and self.pending_credits == 0

    def summary(self) -> Answer:
        return Answer(view=("account", self.status))


@dataclass(frozen=True)
class Request:
    debit_account_id: UUID
    credit_account_id: UUID
    amount: int
    currency: str
    pending: bool = False
    timeout_seconds: int | None = None


@dataclass
class ModelTransfer:
    request: Request
    status: str
    error: str | None = None
    posted_amount: int = 0
    expires_at: datetime | None = None
    voided_by_expiry: bool = False

    def summary(self, replayed: bool = False) -> Answer:
        amounts = (self.request.amount, self.posted_amount)
        return Answer(view=("transfer", self.status, *amounts, replayed))


class LedgerModel:
    def __init__(self) -> None:
        self.accounts: dict[UUID, ModelAccount] = {}
        self.transfers: dict[UUID, ModelTransfer] = {}

    # Accounts.

    def open_account(self, account_id: UUID, currency: str, overdraft_limit: int) -> None:
        world = ModelAccount(currency, overdraft_limit=0, is_world=True)
        self.accounts.setdefault(world_account_id(currency), world)
        self.accounts[account_id] = ModelAccount(currency, overdraft_limit)

    def freeze(self, account_id: UUID) -> Answer:
        return self._lifecycle(account_id, {OPEN: FROZEN, FROZEN: FROZEN})

    def unfreeze(self, account_id: UUID) -> Answer:
        return self._lifecycle(account_id, {OPEN: OPEN, FROZEN: OPEN})

    def close(self, account_id: UUID) -> Answer:
        account = self.accounts[account_id]
        if account.is_world:
            return refused("InvalidRequest")
        if not account.is_empty and account.status != CLOSED:
            return refused("AccountNotEmpty")
        return self._lifecycle(account_id, {OPEN: CLOSED, FROZEN: CLOSED})

    def _lifecycle(self, account_id: UUID, next_status: dict[str, str]) -> Answer:
        account = self.accounts[account_id]
        if account.is_world:
            return refused("InvalidRequest")
        if account.status == CLOSED:
            return refused("AccountClosed")
        account.status = next_status[account.status]
        return account.summary()

    # Money.

    def transfer(self, transfer_id: UUID, request: Request, now: datetime) -> Answer:
        if not 1 <= request.amount <= AMOUNT_MAX:
            return refused("AmountOutOfRange")
        if request.debit_account_id == request.credit_account_id:
            return refused("SameAccount")
        existing = self.transfers.get(transfer_id)
        if existing is not None:
            if existing.request != request:
                return refused("IdempotencyKeyReused")
            if existing.status == REJECTED:
                assert existing.error is not None
                return refused(existing.error)
            return existing.summary(replayed=True)
        if not {request.debit_account_id, request.credit_account_id} <= self.accounts.keys():
            return refused("AccountNotFound")
        rejection = self._rejection(request)
        if rejection is not None:
            self.transfers[transfer_id] = ModelTransfer(request, REJECTED, error=rejection)
            return refused(rejection)
        debit = self.accounts[request.debit_account_id]
        credit = self.accounts[request.credit_account_id]
        if request.pending:
            debit.pending_debits += request.amount
            credit.pending_credits += request.amount
            expires_at = None
            if request.timeout_seconds is not None:
                expires_at = now + timedelta(seconds=request.timeout_seconds)
            transfer = ModelTransfer(request, PENDING, expires_at=expires_at)
        else:
            debit.balance -= request.amount
            credit.balance += request.amount
            transfer = ModelTransfer(request, POSTED, posted_amount=request.amount)
        self.transfers[transfer_id] = transfer
        return transfer.summary()

    def _rejection(self, request: Request) -> str | None:
        debit = self.accounts[request.debit_account_id]
        credit = self.accounts[request.credit_account_id]
        for account in (debit, credit):
            if account.status == CLOSED:
                return "AccountClosed"
            if account.status == FROZEN:
                return "AccountFrozen"
            if account.currency != request.currency:
                return "CurrencyMismatch"
        available = debit.balance - debit.pending_debits
        if not debit.is_world and request.amount > available + debit.overdraft_limit:
            return "InsufficientFunds"
        return None

    def post_pending(self, transfer_id: UUID, amount: int | None, now: datetime) -> Answer:
        if amount is not None and not 1 <= amount <= AMOUNT_MAX:
            return refused("AmountOutOfRange")
        transfer = self.transfers.get(transfer_id)
        if transfer is None:
            return refused("TransferNotFound")
        if transfer.status != PENDING:
            return self._settled_again(transfer, POSTED, amount)
        if self._expired(transfer, now):
            self._release(transfer, VOIDED)
            transfer.voided_by_expiry = True
            return refused("PendingExpired")
        reserved = transfer.request.amount
        amount = reserved if amount is None else amount
        if amount > reserved:
            return refused("AmountOutOfRange")
        debit = self.accounts[transfer.request.debit_account_id]
        credit = self.accounts[transfer.request.credit_account_id]
        for account in (debit, credit):
            if account.status == CLOSED:
                return refused("AccountClosed")
            if account.status == FROZEN:
                return refused("AccountFrozen")
        self._release(transfer, POSTED)
        debit.balance -= amount
        credit.balance += amount
        transfer.posted_amount = amount
        return transfer.summary()

    def void_pending(self, transfer_id: UUID, now: datetime) -> Answer:
        transfer = self.transfers.get(transfer_id)
        if transfer is None:
            return refused("TransferNotFound")
        if transfer.status != PENDING:
            return self._settled_again(transfer, VOIDED, None)
        transfer.voided_by_expiry = self._expired(transfer, now)
        self._release(transfer, VOIDED)
        return transfer.summary()

    @staticmethod
    def _settled_again(transfer: ModelTransfer, status: str, amount: int | None) -> Answer:
        """A settlement of a settled transfer: the same one is answered again."""
        if not transfer.request.pending or transfer.status == REJECTED:
            return refused("TransferNotPending")
        captured = transfer.request.amount if amount is None else amount
        if transfer.status == status and (status == VOIDED or transfer.posted_amount == captured):
            return transfer.summary(replayed=True)
        if status == POSTED and transfer.voided_by_expiry:
            return refused("PendingExpired")
        return refused("TransferNotPending")

    @staticmethod
    def _expired(transfer: ModelTransfer, now: datetime) -> bool:
        return transfer.expires_at is not None and now >= transfer.expires_at

    def expire_pending(self, now: datetime) -> int:
        """Voids every pending transfer past its timeout; returns how many."""
        expired = [
            transfer
            for transfer in self.transfers.values()
            if transfer.status == PENDING
            and transfer.expires_at is not None
            and now >= transfer.expires_at
        ]
        for transfer in expired:
            self._release(transfer, VOIDED)
            transfer.voided_by_expiry = True
        return len(expired)

    def _release(self, transfer: ModelTransfer, status: str) -> None:
        self.accounts[transfer.request.debit_account_id].pending_debits -= transfer.request.amount
        self.accounts[transfer.request.credit_account_id].pending_credits -= transfer.request.amount
        transfer.status = status
