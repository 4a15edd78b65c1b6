"""The Ledger application: every use case of the money ledger.

Each command is a unit of work, as in the eventsourcing bank-accounts example: load
copies of the aggregates it needs (the repository hands out copies), decide (the rules
in ``domain.rules`` and on the aggregates), save them in one transaction. The copies
belong to the command: on any failure before the commit they are dropped, and
nothing of the command survives anywhere.

The event store's unique (originator_id, version) is the only lock. A save that loses
a race raises ``IntegrityError``, and the command runs again on fresh copies, a
bounded number of times with jittered backoff (``backoff_seconds``).

The log has no transaction markers, and the read models rely on this rule to never
end a view transaction inside a save: every event that moves or reserves money
carries a ``transfer_id``, and the save that writes it also writes an event of that
Transfer aggregate, after it (``projections/base.py``). A new command must keep it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent
from eventsourcing.utils import Environment, EnvType

from domain.account import Account
from domain.errors import (
    AccountNotFound,
    BatchItemFailed,
    ConcurrencyConflict,
    IdempotencyKeyReused,
    InvalidRequest,
    LedgerError,
    PendingExpired,
    ServiceUnavailable,
    TransferNotFound,
    TransferNotPosted,
    TransferRejected,
    VersionMismatch,
)
from domain.limits import (
    BATCH_SIZE_MAX,
    EVENTS_PAGE_SIZE_MAX,
    OVERDRAFT_LIMIT_MAX,
    check_metadata,
    check_text,
)
from domain.money import check_amount, check_currency, check_not_reserved, world_account_id
from domain.results import AccountEvent, AccountView, BalanceAt, TransferView
from domain.rules import (
    decide_capture,
    decide_transfer,
    decide_void,
    holds_reservation,
    reversal_request,
    reversible_amount,
    transfer_request,
)
from domain.timeline import last_version_at, versions_reader
from domain.transfer import (
    CAPTURE,
    POSTED,
    RELEASE,
    VOIDED_BY_CLIENT,
    VOIDED_BY_EXPIRY,
    SettlementRequest,
    Transfer,
    TransferRequest,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_SECONDS_MAX = 0.1


class Ledger(Application[UUID]):
    """Accounts and transfers. Public methods list the ``LedgerError`` they raise.

    Every command may also raise ``ServiceUnavailable`` (the store failed before the
    commit was sent: nothing written) or ``OutcomeUnknown`` (the commit was sent and
    no answer came). Both are safe to retry with the same ids.
    """

    name = "Ledger"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Account: 100}

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        snapshot_interval: int = 100,
        retry_attempts: int = 12,
        retry_backoff_seconds: float = 0.002,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        assert snapshot_interval >= 1 and retry_attempts >= 1
        # The library reads the interval from this attribute when it saves; setting it
        # per instance lets Settings choose it without defining a class per value.
        self.snapshotting_intervals = {Account: snapshot_interval}  # type: ignore[misc]
        self.retry_attempts = retry_attempts
        self.retry_backoff_seconds = retry_backoff_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        self.conflict_retries = 0
        self._worlds_known: set[str] = set()
        super().__init__(env)

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        # Unlike the base class, do not layer os.environ under the given env: the
        # settings layer decides everything, so a stray variable cannot switch stores.
        values = {"IS_SNAPSHOTTING_ENABLED": "y"}
        values.update(env or {})
        return Environment(name, values)

    def new_id(self) -> UUID:
        return uuid4()

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

        Raises InvalidRequest (bad currency, name, metadata or limit), ReservedId (a
        world account's id, of any currency) and IdempotencyKeyReused (the id exists
        with other fields).
        """
        check_currency(currency)
        check_text("name", name)
        opened_with = (name, check_metadata(metadata), _checked_limit(overdraft_limit))
        account_id = check_not_reserved(account_id or self.new_id(), "account id")

        def attempt(_: bool) -> AccountView:
            existing = self.find(account_id)
            if existing is not None:
                return self._replay_open(existing, currency, opened_with)
            name, metadata, overdraft_limit = opened_with
            account = Account(
                id=account_id, currency=currency, name=name, metadata=metadata,
                overdraft_limit=overdraft_limit, is_world=False,
            )  # fmt: skip
            recordings = self.save(account, self._missing_world(currency))
            return AccountView.of(account, recordings[-1].notification.id)

        return self._retrying(attempt)

    def get_account(self, account_id: UUID) -> AccountView:
        """Raises AccountNotFound."""
        return AccountView.of(self.load_account(account_id))

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
        limit = _checked_limit(overdraft_limit)
        return self._account_command(
            account_id, expected_version, lambda a: a.change_overdraft_limit(limit)
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
        currency = self.load_account(account_id).currency
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
        currency = self.load_account(account_id).currency
        return self.transfer(
            account_id, world_account_id(currency), amount, currency,
            description, metadata, transfer_id,
        )  # fmt: skip

    def transfer(
        self,
        from_account: UUID,
        to_account: UUID,
        amount: int,
        currency: str,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        transfer_id: UUID | None = None,
        *,
        pending: bool = False,
        timeout_seconds: int | None = None,
    ) -> TransferView:
        """Posts (or, with ``pending``, reserves) a transfer, exactly once per id.

        Raises InvalidRequest, AmountOutOfRange, SameAccount, ReservedId (a world
        account's id), AccountNotFound (recorded nowhere); InsufficientFunds,
        CurrencyMismatch, AccountFrozen, AccountClosed, BalanceOverflow (recorded as
        Transfer.Rejected, and raised again on a retry); IdempotencyKeyReused;
        ConcurrencyConflict.
        """
        request = transfer_request(
            from_account, to_account, amount, currency, description, metadata,
            pending=pending, timeout_seconds=timeout_seconds,
        )  # fmt: skip
        return self.place_transfer(transfer_id or self.new_id(), request)

    def place_transfer(self, transfer_id: UUID, request: TransferRequest) -> TransferView:
        """Where ``transfer`` sends a checked request: here, its own unit of work, now.

        A server's Ledger overrides it to hand the request to its writers (infrastructure).
        """
        return self.execute_transfer(transfer_id, request)

    def execute_transfer(self, transfer_id: UUID, request: TransferRequest) -> TransferView:
        """One checked transfer as its own unit of work, retried on conflicts."""
        return self._retrying(lambda first: self._attempt_transfer(transfer_id, request, first))

    def transfer_batch(self, items: Sequence[Mapping[str, Any]]) -> list[TransferView]:
        """Applies 1..1000 transfers in one transaction: all of them or none.

        Each item has the keyword arguments of ``transfer`` and a ``transfer_id``.
        Raises InvalidRequest (size), BatchItemFailed (naming the first failing item,
        nothing written), ConcurrencyConflict. The same ids and items again replay.
        """
        if not 1 <= len(items) <= BATCH_SIZE_MAX:
            raise InvalidRequest(f"a batch holds 1 to {BATCH_SIZE_MAX} transfers")
        planned: list[tuple[UUID, TransferRequest]] = []
        for index, item in enumerate(items):
            try:
                transfer_id = check_not_reserved(
                    item.get("transfer_id") or self.new_id(), "transfer id"
                )
                planned.append((transfer_id, _batch_request(item)))
            except LedgerError as error:
                raise BatchItemFailed(index, error) from None
        ids = [transfer_id for transfer_id, _ in planned]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("transfer ids in a batch must be distinct")
        return self._retrying(lambda first: self._attempt_batch(planned, first))

    def get_transfer(self, transfer_id: UUID) -> TransferView:
        """Raises TransferNotFound."""
        return TransferView.of(self.load_transfer(transfer_id))

    # Two-phase transfers and reversals.

    def post_pending(
        self, transfer_id: UUID, amount: int | None = None, request_id: UUID | None = None
    ) -> TransferView:
        """Captures ``amount`` (default all) of a pending transfer; releases the rest.

        The same post again (same amount, and no other ``request_id``) answers the
        posted transfer, marked replayed. Raises TransferNotFound, TransferNotPending,
        PendingExpired (and voids it), AmountOutOfRange (above the reserved amount),
        AccountFrozen, AccountClosed, IdempotencyKeyReused (``request_id`` settled it
        with another request).
        """
        if amount is not None:
            check_amount(amount)
        settlement = SettlementRequest(CAPTURE, amount, request_id)
        return self._retrying(lambda _: self._attempt_settle(transfer_id, settlement))

    def void_pending(self, transfer_id: UUID, request_id: UUID | None = None) -> TransferView:
        """Releases a pending transfer; a voided one (also by expiry) is answered again,
        marked replayed. Raises TransferNotFound, TransferNotPending,
        IdempotencyKeyReused (``request_id`` settled it with another request)."""
        settlement = SettlementRequest(RELEASE, None, request_id)
        return self._retrying(lambda _: self._attempt_settle(transfer_id, settlement))

    def expire_pending(self, transfer_ids: Iterable[UUID]) -> int:
        """Voids those of ``transfer_ids`` that are pending and past their timeout.

        Returns how many it voided. Raises ConcurrencyConflict.
        """

        expired = 0
        for transfer_id in transfer_ids:
            expired += self._retrying(partial(self._attempt_expire, transfer_id))
        return expired

    def reverse(
        self,
        original_id: UUID,
        amount: int | None = None,
        reversal_id: UUID | None = None,
        description: str | None = None,
    ) -> TransferView:
        """Posts a compensating transfer linked to ``original_id`` by ``reverses``.

        The sum reversed never exceeds what was posted. Raises TransferNotFound,
        TransferNotPosted, AmountOutOfRange, ReservedId, IdempotencyKeyReused, and the
        rejections of ``transfer`` (recorded).
        """
        if amount is not None:
            check_amount(amount)
        description = f"reversal of {original_id}" if description is None else description
        check_text("description", description)
        reversal_id = reversal_id or self.new_id()
        return self._retrying(
            lambda _: self._attempt_reverse(original_id, amount, reversal_id, description)
        )

    # History.

    def account_events(
        self, account_id: UUID, after_version: int = 0, limit: int = 100
    ) -> list[AccountEvent]:
        """Stored events of an account, oldest first. Raises AccountNotFound."""
        if not 1 <= limit <= EVENTS_PAGE_SIZE_MAX or after_version < 0:
            raise InvalidRequest(f"limit must be 1..{EVENTS_PAGE_SIZE_MAX}, after_version >= 0")
        self.load_account(account_id)
        events = self.events.get(account_id, gt=after_version or None, limit=limit)
        return [AccountEvent.of(event) for event in events]

    def balance_at(
        self, account_id: UUID, *, version: int | None = None, at: datetime | None = None
    ) -> BalanceAt:
        """Replays an account to ``version`` or to its last event at or before ``at``,
        from the nearest snapshot. The version at ``at`` is found by reading O(log n)
        events (``domain.timeline``), so both cost about the same at any history size.

        Raises InvalidRequest (neither or both given, version out of range, naive
        datetime), AccountNotFound (also when the account did not exist yet at ``at``).
        """
        if (version is None) == (at is None):
            raise InvalidRequest("give exactly one of version and at")
        if at is not None and at.tzinfo is None:
            raise InvalidRequest("at must carry a time zone")
        current = self.load_account(account_id)
        if at is not None:
            version = self._version_at(current, at)
        assert version is not None
        if not 1 <= version <= current.version:
            raise InvalidRequest(f"version must be between 1 and {current.version}")
        if version == current.version:
            return BalanceAt.of(current)
        return BalanceAt.of(self.repository.get(account_id, version=version))

    def head_position(self) -> int:
        """The position of the last event in the notification log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    # Loading, for the use cases here and the group-commit writer: each call returns
    # a copy of its own, which the caller saves or drops.

    def find(self, aggregate_id: UUID) -> Account | Transfer | None:
        try:
            found: Account | Transfer = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        assert isinstance(found, Account | Transfer), type(found)
        return found

    def load_account(self, account_id: UUID) -> Account:
        """Raises AccountNotFound."""
        found = self.find(account_id)
        if not isinstance(found, Account):
            raise AccountNotFound(account_id)
        return found

    def load_accounts(self, account_ids: Iterable[UUID]) -> dict[UUID, Account]:
        """Each of ``account_ids`` once, as of now. Raises AccountNotFound."""
        return {account_id: self.load_account(account_id) for account_id in account_ids}

    def load_transfer(self, transfer_id: UUID) -> Transfer:
        """Raises TransferNotFound."""
        found = self.find(transfer_id)
        if not isinstance(found, Transfer):
            raise TransferNotFound(transfer_id)
        return found

    def replay_transfer(
        self, existing: Account | Transfer, request: TransferRequest
    ) -> TransferView:
        """The answer to a request whose transfer id exists already: the original
        result, its recorded rejection raised again, or IdempotencyKeyReused (ReservedId
        when the id is a world account's)."""
        if not isinstance(existing, Transfer):
            check_not_reserved(existing.id, "transfer id")
        if not isinstance(existing, Transfer) or existing.request != request:
            raise IdempotencyKeyReused(f"{existing.id} was used for another request; use a new id")
        rejection = existing.rejection()
        if rejection is not None:
            raise rejection
        return TransferView.of(existing, self.head_position(), replayed=True)

    # Internals.

    def take_snapshot(
        self, aggregate_id: UUID, version: int | None = None, projector_func: Any = None
    ) -> None:
        # The library's save calls this after the commit: the command is durable, and
        # snapshots are only a cache, so a failure here is logged, not raised.
        try:
            if projector_func is None:
                super().take_snapshot(aggregate_id, version)
            else:
                super().take_snapshot(aggregate_id, version, projector_func)
        except PersistenceError:
            logger.warning("snapshot not taken; loads stay correct", exc_info=True)

    def _retrying(self, attempt: Callable[[bool], T]) -> T:
        """Runs ``attempt(first)`` until its save does not conflict, at most N times.

        ``first`` lets a creating command skip its "does this id exist?" read on the
        first try: the event store refuses a second version 1 of the same id anyway,
        and the retry that follows that refusal does the read and replays.
        """
        for number in range(self.retry_attempts):
            try:
                return attempt(number == 0)
            except (IntegrityError, _StaleRead):
                self.conflict_retries += 1
                time.sleep(backoff_seconds(number, self.retry_backoff_seconds))
            except PersistenceError as error:
                raise store_unavailable(error) from error
        raise ConcurrencyConflict(
            f"gave up after {self.retry_attempts} attempts: the records kept changing"
        )

    def _attempt_transfer(
        self, transfer_id: UUID, request: TransferRequest, first: bool
    ) -> TransferView:
        existing = None if first else self.find(transfer_id)
        if existing is not None:
            return self.replay_transfer(existing, request)
        accounts = self.load_accounts([request.debit_account_id, request.credit_account_id])
        transfer = self._decide_or_record_rejection(accounts, transfer_id, request)
        recordings = self.save(*accounts.values(), transfer)
        return TransferView.of(transfer, recordings[-1].notification.id)

    def _decide_or_record_rejection(
        self, accounts: Mapping[UUID, Account], transfer_id: UUID, request: TransferRequest
    ) -> Transfer:
        """``decide_transfer``, but a business rejection is saved (``Transfer.Rejected``,
        so a retry gets the same answer) before it is raised again."""
        try:
            return decide_transfer(accounts, transfer_id, request, self.clock())
        except TransferRejected as rejection:
            self.save(Transfer.reject(transfer_id, request, rejection.code, rejection.detail))
            raise

    def _attempt_batch(
        self, planned: list[tuple[UUID, TransferRequest]], first: bool
    ) -> list[TransferView]:
        if not first:
            replayed = self._replay_batch(planned)
            if replayed is not None:
                return replayed
        try:
            accounts = self.load_accounts(
                account_id
                for _, request in planned
                for account_id in (request.debit_account_id, request.credit_account_id)
            )
        except AccountNotFound as error:
            raise BatchItemFailed(_index_naming(planned, error.account_id), error) from None
        transfers = []
        now = self.clock()
        for index, (transfer_id, request) in enumerate(planned):
            try:
                transfers.append(decide_transfer(accounts, transfer_id, request, now))
            except LedgerError as error:
                # A failed batch records nothing, so no conflict sends a replay to the
                # retry path: look for a replay here, where it can answer the original
                # even though its items would fail now (money spent since, say).
                replayed = self._replay_batch(planned) if first else None
                if replayed is not None:
                    return replayed
                raise BatchItemFailed(index, error) from None
        recordings = self.save(*accounts.values(), *transfers)
        position = recordings[-1].notification.id
        return [TransferView.of(transfer, position) for transfer in transfers]

    def _replay_batch(
        self, planned: list[tuple[UUID, TransferRequest]]
    ) -> list[TransferView] | None:
        """The original answers when this batch was written before; None when not."""
        existing = [self.find(transfer_id) for transfer_id, _ in planned]
        if all(found is None for found in existing):
            return None
        views = []
        for index, ((_, request), found) in enumerate(zip(planned, existing, strict=True)):
            try:
                if found is None:
                    raise IdempotencyKeyReused("part of this batch was written before")
                views.append(self.replay_transfer(found, request))
            except LedgerError as error:
                raise BatchItemFailed(index, error) from None
        return views

    def _attempt_settle(self, transfer_id: UUID, settlement: SettlementRequest) -> TransferView:
        transfer = self.load_transfer(transfer_id)
        if transfer.settled_as(settlement):
            return TransferView.of(transfer, self.head_position(), replayed=True)
        expired = transfer.is_expired(self.clock())
        if settlement.action == RELEASE:
            reason = VOIDED_BY_EXPIRY if expired else VOIDED_BY_CLIENT
            return self._void(transfer, reason, settlement.request_id)
        if expired:
            self._void(transfer, VOIDED_BY_EXPIRY)
            raise PendingExpired(f"transfer {transfer_id} expired at {transfer.expires_at}")
        accounts = self._reserving_accounts(transfer)
        amount = transfer.amount if settlement.amount is None else settlement.amount
        decide_capture(accounts, transfer, amount, settlement.request_id)
        recordings = self.save(*accounts.values(), transfer)
        return TransferView.of(transfer, recordings[-1].notification.id)

    def _attempt_expire(self, transfer_id: UUID, _: bool) -> int:
        transfer = self.find(transfer_id)
        if not isinstance(transfer, Transfer) or not transfer.is_expired(self.clock()):
            return 0
        self._void(transfer, VOIDED_BY_EXPIRY)
        return 1

    def _reserving_accounts(self, transfer: Transfer) -> dict[UUID, Account]:
        accounts = self.load_accounts([transfer.debit_account_id, transfer.credit_account_id])
        if not holds_reservation(accounts, transfer):
            raise _StaleRead(transfer.id)  # settled since the transfer was read: retry
        return accounts

    def _void(
        self, transfer: Transfer, reason: str, request_id: UUID | None = None
    ) -> TransferView:
        accounts = self._reserving_accounts(transfer)
        decide_void(accounts, transfer, reason, request_id)
        recordings = self.save(*accounts.values(), transfer)
        return TransferView.of(transfer, recordings[-1].notification.id)

    def _attempt_reverse(
        self, original_id: UUID, amount: int | None, reversal_id: UUID, description: str
    ) -> TransferView:
        original = self.load_transfer(original_id)
        existing = self.find(reversal_id)
        if existing is not None:
            replayed = existing.amount if isinstance(existing, Transfer) else 0
            request = reversal_request(
                original, replayed if amount is None else amount, description
            )
            return self.replay_transfer(existing, request)
        if original.status != POSTED:
            raise TransferNotPosted(f"transfer {original_id} is {original.status}")
        request = reversal_request(original, reversible_amount(original, amount), description)
        accounts = self.load_accounts([request.debit_account_id, request.credit_account_id])
        reversal = self._decide_or_record_rejection(accounts, reversal_id, request)
        original.record_reversal(reversal_id, request.amount)
        recordings = self.save(*accounts.values(), original, reversal)
        return TransferView.of(reversal, recordings[-1].notification.id)

    def _missing_world(self, currency: str) -> Account | None:
        """The world account of ``currency`` if it still has to be created."""
        if currency in self._worlds_known:
            return None
        world_id = world_account_id(currency)
        if self.find(world_id) is not None:
            self._worlds_known.add(currency)
            return None
        return Account(
            id=world_id, currency=currency, name=f"world:{currency}", metadata={},
            overdraft_limit=0, is_world=True,
        )  # fmt: skip

    def _version_at(self, account: Account, at: datetime) -> int:
        """The last version of ``account`` (as loaded now) at or before ``at``."""
        if at < account.created_on:
            raise AccountNotFound(account.id, f"account {account.id} did not exist at {at}")
        if at >= account.modified_on:
            return account.version
        # Version 1 is at or before ``at``, the loaded version after it.
        read, fanout = versions_reader(self.recorder, account.id)
        return last_version_at(at, read, self._timestamp_of, 1, account.version, fanout)

    def _timestamp_of(self, stored: StoredEvent) -> datetime:
        return cast(Account.Event, self.mapper.to_domain_event(stored)).timestamp

    def _account_command(
        self,
        account_id: UUID,
        expected_version: int | None,
        change: Callable[[Account], bool | None],
    ) -> AccountView:
        def attempt(_: bool) -> AccountView:
            account = self.load_account(account_id)
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
        self,
        existing: Account | Transfer,
        currency: str,
        opened_with: tuple[str, dict[str, str], int],
    ) -> AccountView:
        same = (
            isinstance(existing, Account)
            and not existing.is_world
            and existing.currency == currency
            and existing.opened_with == opened_with
        )
        if not same:
            raise IdempotencyKeyReused(f"{existing.id} exists with other fields")
        assert isinstance(existing, Account)
        return AccountView.of(existing, self.head_position(), replayed=True)


def backoff_seconds(attempt_number: int, base_seconds: float) -> float:
    """Full jitter: uniform in [0, min(0.1 s, base * 2**n)]; every retry loop uses it."""
    return random.uniform(0, min(BACKOFF_SECONDS_MAX, base_seconds * 2**attempt_number))


def store_unavailable(error: PersistenceError) -> ServiceUnavailable:
    """A store failure before the commit was sent: nothing of the command was written.

    A failed commit is told apart where it happens, by the recorder, which raises
    ``OutcomeUnknown`` instead (see ``infrastructure.persistence``).
    """
    return ServiceUnavailable(
        f"the event store is busy or unreachable ({type(error).__name__}); "
        "nothing was written, retry the same request"
    )


def _checked_limit(overdraft_limit: int) -> int:
    if not isinstance(overdraft_limit, int) or not 0 <= overdraft_limit <= OVERDRAFT_LIMIT_MAX:
        raise InvalidRequest("overdraft_limit must be an integer >= 0")
    return overdraft_limit


def _batch_request(item: Mapping[str, Any]) -> TransferRequest:
    return transfer_request(
        item["from_account"], item["to_account"], item["amount"], item["currency"],
        item.get("description", ""), item.get("metadata"),
        pending=item.get("pending", False), timeout_seconds=item.get("timeout_seconds"),
    )  # fmt: skip


def _index_naming(planned: list[tuple[UUID, TransferRequest]], account_id: UUID | str) -> int:
    return next(
        index
        for index, (_, request) in enumerate(planned)
        if account_id in (request.debit_account_id, request.credit_account_id)
    )


class _StaleRead(Exception):
    """Aggregates read at different moments disagree; the retry loop reloads them."""
