"""What the use cases return: plain values, no aggregates, no HTTP schemas."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.account import Account
from domain.transfer import Transfer


@dataclass(frozen=True)
class AccountView:
    id: UUID
    currency: str
    name: str
    status: str
    balance: int
    available_balance: int
    pending_debits: int
    pending_credits: int
    overdraft_limit: int
    metadata: dict[str, str]
    version: int
    created_at: datetime
    updated_at: datetime
    is_world: bool
    position: int | None = None
    replayed: bool = False

    @classmethod
    def of(
        cls, account: Account, position: int | None = None, *, replayed: bool = False
    ) -> AccountView:
        return cls(
            id=account.id,
            currency=account.currency,
            name=account.name,
            status=account.status,
            balance=account.balance,
            available_balance=account.available_balance,
            pending_debits=account.pending_debits,
            pending_credits=account.pending_credits,
            overdraft_limit=account.overdraft_limit,
            metadata=dict(account.metadata),
            version=account.version,
            created_at=account.created_on,
            updated_at=account.modified_on,
            is_world=account.is_world,
            position=position,
            replayed=replayed,
        )


@dataclass(frozen=True)
class TransferView:
    id: UUID
    from_account: UUID
    to_account: UUID
    amount: int
    currency: str
    status: str
    description: str
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    posted_amount: int
    reversed_amount: int
    reverses: UUID | None
    pending: bool
    expires_at: datetime | None
    error_code: str | None
    version: int
    position: int | None = None
    replayed: bool = False

    @classmethod
    def of(
        cls, transfer: Transfer, position: int | None = None, *, replayed: bool = False
    ) -> TransferView:
        return cls(
            id=transfer.id,
            from_account=transfer.debit_account_id,
            to_account=transfer.credit_account_id,
            amount=transfer.amount,
            currency=transfer.currency,
            status=transfer.status,
            description=transfer.description,
            metadata=dict(transfer.metadata),
            created_at=transfer.created_on,
            updated_at=transfer.modified_on,
            posted_amount=transfer.posted_amount,
            reversed_amount=transfer.reversed_amount,
            reverses=transfer.reverses,
            pending=transfer.pending,
            expires_at=transfer.expires_at,
            error_code=transfer.error_code,
            version=transfer.version,
            position=position,
            replayed=replayed,
        )


@dataclass(frozen=True)
class AccountEvent:
    """One stored event of an account, as an auditor reads it."""

    version: int
    type: str
    timestamp: datetime
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, stored: Any) -> AccountEvent:
        data = {
            key: value
            for key, value in vars(stored).items()
            if key not in ("originator_id", "originator_version", "timestamp", "originator_topic")
        }
        return cls(
            version=stored.originator_version,
            type=type(stored).__name__,
            timestamp=stored.timestamp,
            data=data,
        )


@dataclass(frozen=True)
class BalanceAt:
    """An account's balances replayed to one version."""

    account_id: UUID
    currency: str
    version: int
    timestamp: datetime
    balance: int
    available_balance: int
    pending_debits: int
    pending_credits: int
    status: str

    @classmethod
    def of(cls, account: Account) -> BalanceAt:
        return cls(
            account_id=account.id,
            currency=account.currency,
            version=account.version,
            timestamp=account.modified_on,
            balance=account.balance,
            available_balance=account.available_balance,
            pending_debits=account.pending_debits,
            pending_credits=account.pending_credits,
            status=account.status,
        )
