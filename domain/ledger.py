"""The Ledger application: every use case of the money ledger.

One command is one ``save(*aggregates)``, which is one database transaction. The
event store's unique (originator_id, version) is the only lock: a save that loses a
race raises ``IntegrityError``, and the command reloads, re-checks and re-saves, a
bounded number of times with jittered backoff (see ``_retrying``).

The log has no transaction markers, and the read models rely on this rule to never
end a view transaction inside a save: every event that moves or reserves money
carries a ``transfer_id``, and the save that writes it also writes an event of that
Transfer aggregate, after it (``projections/base.py``). A new command must keep it.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, PersistenceError
from eventsourcing.utils import Environment, EnvType

from domain.account import Account
from domain.errors import (
    REJECTIONS_BY_CODE,
    AccountNotFound,
    AmountOutOfRange,
    BatchItemFailed,
    ConcurrencyConflict,
    IdempotencyKeyReused,
    InvalidRequest,
    LedgerError,
    PendingExpired,
    SameAccount,
    TransferNotFound,
    TransferNotPending,
    TransferNotPosted,
    TransferOutcomeUnknown,
    TransferRejected,
    VersionMismatch,
)
from domain.group_commit import GroupCommitter
from domain.limits import check_metadata, check_text, check_timeout
from domain.money import check_amount, check_currency, world_account_id
from domain.transfer import PENDING, POSTED, REJECTED, Transfer, TransferRequest
from domain.views import AccountEvent, AccountView, BalanceAt, TransferView

logger = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_SIZE_MAX = 1000
EVENTS_PAGE_SIZE_MAX = 1000


class Ledger(Application[UUID]):
    """Accounts and transfers. Public methods list the ``LedgerError`` they raise."""

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
        group_commit: bool = False,
        transfer_timeout_seconds: float = 120.0,
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
        self.transfer_timeout_seconds = transfer_timeout_seconds
        self.group_committer: GroupCommitter | None = None
        super().__init__(env)
        # Started last: the writer thread uses the store built above.
        if group_commit:
            self.group_committer = GroupCommitter(self)

    def close(self) -> None:
        """Commits the queued transfers, then closes the store."""
        if self.group_committer is not None:
            self.group_committer.close()
        super().close()

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        # Unlike the base class, do not layer os.environ under the given env: the
        # settings layer decides everything, so a stray variable cannot switch stores.
        values = {"IS_SNAPSHOTTING_ENABLED": "y"}
        values.update(env or {})
        return Environment(name, values)

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
        account_id = account_id or uuid4()
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

    # Money movement.

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

        Raises InvalidRequest, AmountOutOfRange, SameAccount, AccountNotFound (recorded
        nowhere); InsufficientFunds, CurrencyMismatch, AccountFrozen, AccountClosed,
        BalanceOverflow (recorded as Transfer.Rejected, and raised again on a retry);
        IdempotencyKeyReused; ConcurrencyConflict.
        """
        future = self.submit_transfer(
            from_account, to_account, amount, currency, description, metadata, transfer_id,
            pending=pending, timeout_seconds=timeout_seconds,
        )  # fmt: skip
        try:
            return future.result(self.transfer_timeout_seconds)
        except FutureTimeout:
            raise TransferOutcomeUnknown(
                f"no answer within {self.transfer_timeout_seconds} s; retry with the same id"
            ) from None

    def submit_transfer(
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
    ) -> Future[TransferView]:
        """``transfer`` without waiting: the future holds the view or the error.

        Malformed input raises here, at once. With group commit the transfer is queued
        for the writer; without it, it runs now in this thread.
        """
        request = self._check_request(
            from_account, to_account, amount, currency, description, metadata,
            pending, timeout_seconds,
        )  # fmt: skip
        transfer_id = transfer_id or uuid4()
        if self.group_committer is not None:
            return self.group_committer.submit(transfer_id, request)
        future: Future[TransferView] = Future()
        try:
            future.set_result(
                self._retrying(lambda first: self._attempt_transfer(transfer_id, request, first))
            )
        except LedgerError as error:
            future.set_exception(error)
        return future

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
                planned.append(self._plan_batch_item(item))
            except LedgerError as error:
                raise BatchItemFailed(index, error) from None
        ids = [transfer_id for transfer_id, _ in planned]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("transfer ids in a batch must be distinct")
        return self._retrying(lambda first: self._attempt_batch(planned, first))

    def post_pending(self, transfer_id: UUID, amount: int | None = None) -> TransferView:
        """Captures ``amount`` (default all) of a pending transfer; releases the rest.

        Raises TransferNotFound, TransferNotPending, PendingExpired (and voids it),
        AmountOutOfRange (above the reserved amount), AccountFrozen, AccountClosed.
        """
        if amount is not None:
            check_amount(amount)
        return self._retrying(lambda _: self._attempt_post_pending(transfer_id, amount))

    def void_pending(self, transfer_id: UUID) -> TransferView:
        """Releases a pending transfer. Raises TransferNotFound, TransferNotPending."""
        return self._retrying(lambda _: self._attempt_void_pending(transfer_id))

    def expire_pending(self, transfer_ids: Iterable[UUID]) -> int:
        """Voids those of ``transfer_ids`` that are pending and past their timeout.

        Returns how many it voided. Raises ConcurrencyConflict.
        """
        expired = 0
        for transfer_id in transfer_ids:

            def attempt(_: bool, transfer_id: UUID = transfer_id) -> int:
                return self._attempt_expire(transfer_id)

            expired += self._retrying(attempt)
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
        TransferNotPosted, AmountOutOfRange, IdempotencyKeyReused, and the rejections
        of ``transfer`` (recorded).
        """
        if amount is not None:
            check_amount(amount)
        description = f"reversal of {original_id}" if description is None else description
        check_text("description", description)
        reversal_id = reversal_id or uuid4()
        return self._retrying(
            lambda _: self._attempt_reverse(original_id, amount, reversal_id, description)
        )

    def get_transfer(self, transfer_id: UUID) -> TransferView:
        """Raises TransferNotFound."""
        return TransferView.of(self._get_transfer(transfer_id))

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

    def head_position(self) -> int:
        """The position of the last event in the notification log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    # Internals: loading.

    def _find(self, aggregate_id: UUID) -> Any:
        try:
            return self.repository.get(aggregate_id, projector_func=_project)
        except AggregateNotFoundError:
            return None

    def _get_account(self, account_id: UUID) -> Account:
        found = self._find(account_id)
        if not isinstance(found, Account):
            raise AccountNotFound(account_id)
        return found

    def _get_transfer(self, transfer_id: UUID) -> Transfer:
        found = self._find(transfer_id)
        if not isinstance(found, Transfer):
            raise TransferNotFound(transfer_id)
        return found

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

    # Internals: the retry loop.

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
                ceiling = min(0.1, self.retry_backoff_seconds * 2**number)
                time.sleep(random.uniform(0, ceiling))  # full jitter
        raise ConcurrencyConflict(
            f"gave up after {self.retry_attempts} attempts: the records kept changing"
        )

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """The library's save for our own aggregates only.

        The library asks two runtime Protocol isinstance questions of every object it
        is given, which on Python 3.11 cost more than the rest of collecting its
        events; everything saved here is an Account or a Transfer, or None.
        """
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in objs:
            if aggregate is None:
                continue
            assert isinstance(aggregate, Account | Transfer), type(aggregate)
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    def _record(self, processing_event: Any) -> Any:
        """Records, then puts copies of the saved accounts in the aggregate cache.

        The library leaves the cache at the version it last loaded when fast-forward
        is on, so every load would replay what this process just wrote. A copy at
        the saved version is exactly that state; if another thread or process wrote
        since, the next load's fast-forward reads the newer events as always.
        """
        recordings = super()._record(processing_event)
        cache = self.repository.cache
        if cache is not None:
            for aggregate_id, aggregate in processing_event.aggregates.items():
                if isinstance(aggregate, Account):
                    cache.put(aggregate_id, deepcopy(aggregate))
        if self.group_committer is not None:
            # A write that bypassed the writer makes its copies of these accounts stale.
            self.group_committer.forget_unless_writer(processing_event.aggregates)
        return recordings

    def _take_snapshots(self, processing_event: Any) -> None:
        """Snapshots each saved account whose version crossed a multiple of the interval.

        Unlike the library's version, which reloads the aggregate from the store at
        exactly that version, this snapshots the in-memory aggregate that was just
        saved, at its new version: the same state, without re-reading up to a whole
        interval of events per snapshot. Taken after the commit: if it fails, the
        command is still durable and snapshots are only a cache, so log, don't raise.
        """
        assert self.snapshots is not None
        saved = Counter(event.originator_id for event in processing_event.events)
        snapshots = []
        for aggregate_id, count in saved.items():
            aggregate = processing_event.aggregates.get(aggregate_id)
            interval = self.snapshotting_intervals.get(type(aggregate))
            if interval is None:
                continue
            before = aggregate.version - count
            if aggregate.version // interval > before // interval:
                snapshots.append(type(aggregate).Snapshot.take(aggregate))
        if not snapshots:
            return
        try:
            self.snapshots.put(snapshots)
        except PersistenceError:
            logger.warning("snapshot not taken; loads stay correct", exc_info=True)

    # Internals: account commands.

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

    # Internals: transfers.

    def _check_request(
        self,
        from_account: UUID,
        to_account: UUID,
        amount: int,
        currency: str,
        description: str,
        metadata: Mapping[str, str] | None,
        pending: bool,
        timeout_seconds: int | None,
        reverses: UUID | None = None,
    ) -> TransferRequest:
        check_amount(amount)
        check_currency(currency)
        check_text("description", description)
        if from_account == to_account:
            raise SameAccount("a transfer needs two different accounts")
        if timeout_seconds is not None:
            if not pending:
                raise InvalidRequest("timeout_seconds applies to pending transfers only")
            check_timeout(timeout_seconds)
        return TransferRequest(
            debit_account_id=from_account,
            credit_account_id=to_account,
            amount=amount,
            currency=currency,
            description=description,
            metadata=check_metadata(metadata),
            pending=pending,
            timeout_seconds=timeout_seconds,
            reverses=reverses,
        )

    def _attempt_transfer(
        self, transfer_id: UUID, request: TransferRequest, first: bool
    ) -> TransferView:
        existing = None if first else self._find(transfer_id)
        if existing is not None:
            return self._replay_transfer(existing, request)
        accounts = self._load_accounts([request])
        try:
            transfer = self._apply(transfer_id, request, accounts)
        except TransferRejected as rejection:
            self.save(Transfer.reject(transfer_id, request, rejection.code, rejection.detail))
            raise
        recordings = self.save(*accounts.values(), transfer)
        return TransferView.of(transfer, recordings[-1].notification.id)

    def _replay_transfer(self, existing: Any, request: TransferRequest) -> TransferView:
        if not isinstance(existing, Transfer) or existing.request != request:
            raise IdempotencyKeyReused(f"{existing.id} was used for another request; use a new id")
        if existing.status == REJECTED:
            assert existing.error_code is not None and existing.error_detail is not None
            raise REJECTIONS_BY_CODE[existing.error_code](existing.error_detail)
        return TransferView.of(existing, self.head_position(), replayed=True)

    def _load_accounts(self, requests: Iterable[TransferRequest]) -> dict[UUID, Account]:
        accounts: dict[UUID, Account] = {}
        for request in requests:
            for account_id in (request.debit_account_id, request.credit_account_id):
                if account_id not in accounts:
                    accounts[account_id] = self._get_account(account_id)
        return accounts

    def _apply(
        self, transfer_id: UUID, request: TransferRequest, accounts: Mapping[UUID, Account]
    ) -> Transfer:
        """Applies one request to loaded accounts; raises a rejection before any change."""
        debit = accounts[request.debit_account_id]
        credit = accounts[request.credit_account_id]
        debit.check_can_move(request.currency)
        credit.check_can_move(request.currency)
        debit.check_can_debit(request.amount)
        credit.check_can_credit(request.amount)
        if request.pending:
            debit.reserve_debit(transfer_id, request.amount)
            credit.reserve_credit(transfer_id, request.amount)
            expires_at = None
            if request.timeout_seconds is not None:
                expires_at = self.clock() + timedelta(seconds=request.timeout_seconds)
            return Transfer.reserve(transfer_id, request, expires_at)
        debit.debit(transfer_id, request.amount)
        credit.credit(transfer_id, request.amount)
        return Transfer.post(transfer_id, request)

    def _plan_batch_item(self, item: Mapping[str, Any]) -> tuple[UUID, TransferRequest]:
        transfer_id = item.get("transfer_id") or uuid4()
        request = self._check_request(
            item["from_account"], item["to_account"], item["amount"], item["currency"],
            item.get("description", ""), item.get("metadata"),
            item.get("pending", False), item.get("timeout_seconds"),
        )  # fmt: skip
        return transfer_id, request

    def _attempt_batch(
        self, planned: list[tuple[UUID, TransferRequest]], first: bool
    ) -> list[TransferView]:
        if not first:
            existing = [self._find(transfer_id) for transfer_id, _ in planned]
            if any(found is not None for found in existing):
                return self._replay_batch(planned, existing)
        try:
            accounts = self._load_accounts(request for _, request in planned)
        except AccountNotFound as error:
            index = next(
                i for i, (_, r) in enumerate(planned)
                if error.account_id in (r.debit_account_id, r.credit_account_id)
            )  # fmt: skip
            raise BatchItemFailed(index, error) from None
        transfers = []
        for index, (transfer_id, request) in enumerate(planned):
            try:
                transfers.append(self._apply(transfer_id, request, accounts))
            except LedgerError as error:
                # A failed batch records nothing, so no conflict sends a replay to the
                # retry path: look for a replay here, where it can answer the original
                # even though its items would fail now (money spent since, say).
                if first:
                    existing = [self._find(transfer_id) for transfer_id, _ in planned]
                    if any(found is not None for found in existing):
                        return self._replay_batch(planned, existing)
                raise BatchItemFailed(index, error) from None
        recordings = self.save(*accounts.values(), *transfers)
        position = recordings[-1].notification.id
        return [TransferView.of(transfer, position) for transfer in transfers]

    def _replay_batch(
        self, planned: list[tuple[UUID, TransferRequest]], existing: list[Any]
    ) -> list[TransferView]:
        views = []
        for index, ((_, request), found) in enumerate(zip(planned, existing, strict=True)):
            if found is None:
                error = IdempotencyKeyReused("part of this batch was written before")
                raise BatchItemFailed(index, error)
            try:
                views.append(self._replay_transfer(found, request))
            except LedgerError as error:
                raise BatchItemFailed(index, error) from None
        return views

    def _attempt_post_pending(self, transfer_id: UUID, amount: int | None) -> TransferView:
        transfer = self._pending_transfer(transfer_id)
        if transfer.is_expired(self.clock()):
            self._void(transfer, "expired")
            raise PendingExpired(f"transfer {transfer_id} expired at {transfer.expires_at}")
        amount = transfer.amount if amount is None else amount
        if amount > transfer.amount:
            raise AmountOutOfRange(f"at most the {transfer.amount} reserved can be posted")
        accounts = self._load_reserving_accounts(transfer)
        accounts[transfer.debit_account_id].settle_debit(transfer_id, transfer.amount, amount)
        accounts[transfer.credit_account_id].settle_credit(transfer_id, transfer.amount, amount)
        transfer.capture(amount)
        recordings = self.save(*accounts.values(), transfer)
        return TransferView.of(transfer, recordings[-1].notification.id)

    def _attempt_void_pending(self, transfer_id: UUID) -> TransferView:
        transfer = self._pending_transfer(transfer_id)
        reason = "expired" if transfer.is_expired(self.clock()) else "voided"
        return self._void(transfer, reason)

    def _attempt_expire(self, transfer_id: UUID) -> int:
        transfer = self._find(transfer_id)
        if not isinstance(transfer, Transfer) or not transfer.is_expired(self.clock()):
            return 0
        self._void(transfer, "expired")
        return 1

    def _load_reserving_accounts(self, transfer: Transfer) -> dict[UUID, Account]:
        """The two accounts of a pending transfer, still holding its reservation.

        The transfer was read before the accounts. If another command settled it in
        between, the accounts no longer hold the amount: that read was stale, so retry
        (the save would conflict on the transfer's version anyway).
        """
        accounts = self._load_accounts([transfer.request])
        debit = accounts[transfer.debit_account_id]
        credit = accounts[transfer.credit_account_id]
        if debit.pending_debits < transfer.amount or credit.pending_credits < transfer.amount:
            raise _StaleRead(transfer.id)
        return accounts

    def _pending_transfer(self, transfer_id: UUID) -> Transfer:
        transfer = self._get_transfer(transfer_id)
        if transfer.status != PENDING:
            raise TransferNotPending(f"transfer {transfer_id} is {transfer.status}")
        return transfer

    def _void(self, transfer: Transfer, reason: str) -> TransferView:
        accounts = self._load_reserving_accounts(transfer)
        accounts[transfer.debit_account_id].release(transfer.id, "debit", transfer.amount)
        accounts[transfer.credit_account_id].release(transfer.id, "credit", transfer.amount)
        transfer.void(reason)
        recordings = self.save(*accounts.values(), transfer)
        return TransferView.of(transfer, recordings[-1].notification.id)

    def _attempt_reverse(
        self, original_id: UUID, amount: int | None, reversal_id: UUID, description: str
    ) -> TransferView:
        original = self._get_transfer(original_id)
        existing = self._find(reversal_id)
        if existing is not None:
            request = _reversal_request(
                original, existing.amount if amount is None else amount, description
            )
            return self._replay_transfer(existing, request)
        if original.status != POSTED:
            raise TransferNotPosted(f"transfer {original_id} is {original.status}")
        remaining = original.reversible_amount
        amount = remaining if amount is None else amount
        if not 1 <= amount <= remaining:
            raise AmountOutOfRange(f"{remaining} of transfer {original_id} is left to reverse")
        request = _reversal_request(original, amount, description)
        accounts = self._load_accounts([request])
        try:
            reversal = self._apply(reversal_id, request, accounts)
        except TransferRejected as rejection:
            self.save(Transfer.reject(reversal_id, request, rejection.code, rejection.detail))
            raise
        original.record_reversal(reversal_id, amount)
        recordings = self.save(*accounts.values(), original, reversal)
        return TransferView.of(reversal, recordings[-1].notification.id)


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's project_aggregate without its per-event Protocol isinstance
    assertion, which costs more on Python 3.11 than applying the event."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class _StaleRead(Exception):
    """Aggregates read at different moments disagree; the retry loop reloads them."""


def _reversal_request(original: Transfer, amount: int, description: str) -> TransferRequest:
    return TransferRequest(
        debit_account_id=original.credit_account_id,
        credit_account_id=original.debit_account_id,
        amount=amount,
        currency=original.currency,
        description=description,
        metadata={},
        reverses=original.id,
    )


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
