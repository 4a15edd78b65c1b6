"""The Ledger application: every use case of the money ledger.

The use cases are split by concern, each layer a subclass of the one before:
``domain.store`` (loading, saving, retrying), ``domain.movements`` (transfers and
batches), ``domain.settlement`` (two-phase commands and reversals) and this module
(accounts, deposits and withdrawals, history).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.utils import EnvType

from domain.account import Account
from domain.errors import AccountNotFound, IdempotencyKeyReused, InvalidRequest, VersionMismatch
from domain.group_commit import GroupCommitter
from domain.ids import new_id
from domain.limits import check_metadata, check_text
from domain.money import check_currency, world_account_id
from domain.settlement import LedgerSettlement
from domain.views import AccountEvent, AccountView, BalanceAt, TransferView

EVENTS_PAGE_SIZE_MAX = 1000


class Ledger(LedgerSettlement):
    """Accounts and transfers. Public methods list the ``LedgerError`` they raise."""

    name = "Ledger"

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        snapshot_interval: int = 100,
        retry_attempts: int = 12,
        retry_backoff_seconds: float = 0.002,
        clock: Callable[[], datetime] | None = None,
        group_commit: bool = False,
        transfer_timeout_seconds: float = 120.0,
    ) -> None:
        self._worlds_known: set[str] = set()
        super().__init__(
            env,
            snapshot_interval=snapshot_interval,
            retry_attempts=retry_attempts,
            retry_backoff_seconds=retry_backoff_seconds,
            clock=clock,
            transfer_timeout_seconds=transfer_timeout_seconds,
        )
        # Started last: the writer thread uses the store built above.
        if group_commit:
            self.group_committer = GroupCommitter(self)

    # Accounts.

    def open_account(
        self,
        currency: str,
        name: str = "",
        metadata: Mapping[str, str] | None = None,
        overdraft_limit: int = 0,
        account_id: UUID | None = None,
    ) -> AccountView:
        """Opens an account; the same ``account_id`` and fields again is a replay.

        Raises InvalidRequest (bad currency, name, metadata or limit) and
        IdempotencyKeyReused (the id exists with other fields).
        """
        check_currency(currency)
        check_text("name", name)
        checked_metadata = check_metadata(metadata)
        if not isinstance(overdraft_limit, int) or not 0 <= overdraft_limit <= 2**63 - 1:
            raise InvalidRequest("overdraft_limit must be an integer >= 0")
        account_id = account_id or new_id()
        if account_id == world_account_id(currency):
            raise IdempotencyKeyReused(f"{account_id} is the {currency} world account")

        def attempt(_: bool) -> AccountView:
            existing = self._find(account_id)
            if existing is not None:
                return self._replay_open(
                    existing, currency, (name, checked_metadata, overdraft_limit)
                )
            account = Account(
                id=account_id,
                currency=currency,
                name=name,
                metadata=checked_metadata,
                overdraft_limit=overdraft_limit,
                is_world=False,
            )
            recordings = self.save(account, self._missing_world(currency))
            return AccountView.of(account, recordings[-1].notification.id)

        return self._retrying(attempt)

    def get_account(self, account_id: UUID) -> AccountView:
        """Raises AccountNotFound."""
        return AccountView.of(self._get_account(account_id))

    def world_account(self, currency: str) -> AccountView:
        """The system account of ``currency``. Raises InvalidRequest, AccountNotFound."""
        return self.get_account(world_account_id(check_currency(currency)))

    def freeze(self, account_id: UUID, expected_version: int | None = None) -> AccountView:
        """Blocks debits and credits. Raises AccountNotFound, AccountClosed, VersionMismatch."""
        return self._account_command(account_id, expected_version, Account.freeze)

    def unfreeze(self, account_id: UUID, expected_version: int | None = None) -> AccountView:
        """Raises AccountNotFound, AccountClosed, VersionMismatch."""
        return self._account_command(account_id, expected_version, Account.unfreeze)

    def close_account(self, account_id: UUID, expected_version: int | None = None) -> AccountView:
        """Closes for good. Raises AccountNotFound, AccountClosed, AccountNotEmpty,
        VersionMismatch."""
        return self._account_command(account_id, expected_version, Account.close)

    def update_metadata(
        self,
        account_id: UUID,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        expected_version: int | None = None,
    ) -> AccountView:
        """Replaces the name and/or the whole metadata map.

        Raises InvalidRequest, AccountNotFound, AccountClosed, VersionMismatch.
        """
        if name is not None:
            check_text("name", name)
        new_metadata = check_metadata(metadata) if metadata is not None else None

        def change(account: Account) -> bool:
            return account.update_metadata(
                account.name if name is None else name,
                account.metadata if new_metadata is None else new_metadata,
            )

        return self._account_command(account_id, expected_version, change)

    def change_overdraft_limit(
        self, account_id: UUID, overdraft_limit: int, expected_version: int | None = None
    ) -> AccountView:
        """Raises InvalidRequest, AccountNotFound, AccountClosed, VersionMismatch."""
        if not isinstance(overdraft_limit, int) or not 0 <= overdraft_limit <= 2**63 - 1:
            raise InvalidRequest("overdraft_limit must be an integer >= 0")
        return self._account_command(
            account_id, expected_version, lambda a: a.change_overdraft_limit(overdraft_limit)
        )

    # Money in and out.

    def deposit(
        self,
        account_id: UUID,
        amount: int,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        transfer_id: UUID | None = None,
    ) -> TransferView:
        """Moves ``amount`` from the world account of the account's currency.

        Raises as ``transfer`` does.
        """
        currency = self._get_account(account_id).currency
        return self.transfer(
            world_account_id(currency), account_id, amount, currency,
            description, metadata, transfer_id,
        )  # fmt: skip

    def withdraw(
        self,
        account_id: UUID,
        amount: int,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        transfer_id: UUID | None = None,
    ) -> TransferView:
        """Moves ``amount`` to the world account. Raises as ``transfer`` does."""
        currency = self._get_account(account_id).currency
        return self.transfer(
            account_id, world_account_id(currency), amount, currency,
            description, metadata, transfer_id,
        )  # fmt: skip

    # History.

    def account_events(
        self, account_id: UUID, after_version: int = 0, limit: int = 100
    ) -> list[AccountEvent]:
        """Stored events of an account, oldest first. Raises AccountNotFound."""
        if not 1 <= limit <= EVENTS_PAGE_SIZE_MAX or after_version < 0:
            raise InvalidRequest(f"limit must be 1..{EVENTS_PAGE_SIZE_MAX}, after_version >= 0")
        self._get_account(account_id)
        events = self.events.get(account_id, gt=after_version or None, limit=limit)
        return [_account_event(e) for e in events]

    def balance_at(
        self, account_id: UUID, *, version: int | None = None, at: datetime | None = None
    ) -> BalanceAt:
        """Replays an account to ``version`` or to its last event at or before ``at``.

        Raises InvalidRequest (neither or both given, version out of range, naive
        datetime), AccountNotFound (also when the account did not exist yet at ``at``).
        """
        if (version is None) == (at is None):
            raise InvalidRequest("give exactly one of version and at")
        if at is not None:
            if at.tzinfo is None:
                raise InvalidRequest("at must carry a time zone")
            version = self._version_at(account_id, at)
        assert version is not None
        current = self._get_account(account_id)
        if not 1 <= version <= current.version:
            raise InvalidRequest(f"version must be between 1 and {current.version}")
        account: Account = self.repository.get(account_id, version=version)
        return BalanceAt(
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

    # Internals.

    def _missing_world(self, currency: str) -> Account | None:
        """The world account of ``currency`` if it still has to be created."""
        if currency in self._worlds_known:
            return None
        world_id = world_account_id(currency)
        if self._find(world_id) is not None:
            self._worlds_known.add(currency)
            return None
        return Account(
            id=world_id, currency=currency, name=f"world:{currency}", metadata={},
            overdraft_limit=0, is_world=True,
        )  # fmt: skip

    def _version_at(self, account_id: UUID, at: datetime) -> int:
        version = 0
        for stored in self.events.get(account_id):
            if cast(Account.Event, stored).timestamp > at:
                break
            version = stored.originator_version
        if version == 0:
            raise AccountNotFound(account_id, f"account {account_id} did not exist at {at}")
        return version

    def _account_command(
        self,
        account_id: UUID,
        expected_version: int | None,
        change: Callable[[Account], bool | None],
    ) -> AccountView:
        def attempt(_: bool) -> AccountView:
            account = self._get_account(account_id)
            if account.is_world:
                raise InvalidRequest("the world account cannot be changed")
            if expected_version is not None and expected_version != account.version:
                raise VersionMismatch(expected_version, account.version)
            if change(account) is False:
                return AccountView.of(account)
            recordings = self.save(account)
            return AccountView.of(account, recordings[-1].notification.id)

        return self._retrying(attempt)

    def _replay_open(
        self, existing: Any, currency: str, opened_with: tuple[str, dict[str, str], int]
    ) -> AccountView:
        same = (
            isinstance(existing, Account)
            and not existing.is_world
            and existing.currency == currency
            and existing.opened_with == opened_with
        )
        if not same:
            raise IdempotencyKeyReused(f"{existing.id} exists with other fields")
        return AccountView.of(existing, self.head_position(), replayed=True)


def _account_event(stored: Any) -> AccountEvent:
    data = {
        key: value
        for key, value in vars(stored).items()
        if key not in ("originator_id", "originator_version", "timestamp", "originator_topic")
    }
    return AccountEvent(
        version=stored.originator_version,
        type=type(stored).__name__,
        timestamp=stored.timestamp,
        data=data,
    )
