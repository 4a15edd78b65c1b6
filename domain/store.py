"""The event-store side of the Ledger: loading aggregates, saving them, the retry loop.

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
from collections.abc import Callable, Iterable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    PersistenceError,
    Recording,
    StoredEvent,
)
from eventsourcing.utils import Environment, EnvType

from domain.account import Account
from domain.errors import AccountNotFound, ConcurrencyConflict, TransferNotFound
from domain.group_commit import GroupCommitter
from domain.transfer import Transfer, TransferRequest

logger = logging.getLogger(__name__)

T = TypeVar("T")

# From this many accounts on, a load asks the store for their versions in one query.
BULK_LOAD_ACCOUNTS_MIN = 8


@runtime_checkable
class HasMaxVersions(Protocol):
    """A recorder that can tell many aggregates' latest versions in one query."""

    def max_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The latest version of each of ``originator_ids`` that has events."""
        ...


class LedgerStore(Application[UUID]):
    """Persistence plumbing shared by the Ledger's use cases (see ``domain.ledger``)."""

    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Account: 100}

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        snapshot_interval: int = 100,
        retry_attempts: int = 12,
        retry_backoff_seconds: float = 0.002,
        clock: Callable[[], datetime] | None = None,
        transfer_timeout_seconds: float = 120.0,
    ) -> None:
        assert snapshot_interval >= 1 and retry_attempts >= 1
        # The library reads the interval from this attribute when it saves; setting it
        # per instance lets Settings choose it without defining a class per value.
        self.snapshotting_intervals = {Account: snapshot_interval}  # type: ignore[misc]
        self.retry_attempts = retry_attempts
        self.retry_backoff_seconds = retry_backoff_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        self.transfer_timeout_seconds = transfer_timeout_seconds
        self.conflict_retries = 0
        self.group_committer: GroupCommitter | None = None
        super().__init__(env)

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

    def head_position(self) -> int:
        """The position of the last event in the notification log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    # Loading.

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

    def _load_accounts(self, requests: Iterable[TransferRequest]) -> dict[UUID, Account]:
        """The accounts of ``requests``, each as of now, in a copy of its own.

        Loading one by one asks the store once per account whether the cached copy is
        still current (the aggregate cache's fast-forward). For a batch, where that is
        up to 2,000 queries, one query gives every account's latest version; a cached
        copy at that version is used as is, and only the others are loaded.
        """
        ids = list(
            dict.fromkeys(
                account_id
                for request in requests
                for account_id in (request.debit_account_id, request.credit_account_id)
            )
        )
        cache = self.repository.cache
        if len(ids) < BULK_LOAD_ACCOUNTS_MIN or cache is None:
            return {account_id: self._get_account(account_id) for account_id in ids}
        latest = (
            self.recorder.max_versions(ids) if isinstance(self.recorder, HasMaxVersions) else {}
        )
        accounts: dict[UUID, Account] = {}
        for account_id in ids:
            try:
                cached = cache.get(account_id)
            except KeyError:
                cached = None
            if isinstance(cached, Account) and cached.version == latest.get(account_id):
                accounts[account_id] = deepcopy(cached)
            else:
                accounts[account_id] = self._get_account(account_id)
        return accounts

    # Saving, and the retry loop around it.

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
        """The library's save for our own aggregates: one transaction, then the
        snapshots and the aggregate cache. Returns the recordings (with positions)."""
        prepared = self._prepare_save(*objs)
        recordings = self._commit_prepared(prepared, **kwargs)
        if self.group_committer is not None:
            # A write that bypassed the writer makes its copies of these accounts stale.
            self.group_committer.forget_unless_writer(prepared.aggregate_ids)
        return recordings

    def _prepare_save(self, *objs: Any) -> PreparedSave:
        """Everything of a save that reads the aggregates: their new events, encoded;
        the snapshots due; copies for the aggregate cache.

        ``_commit_prepared`` reads only what is prepared here. The library's save asks
        two runtime Protocol isinstance questions of every object, which on Python
        3.11 cost more than collecting its events; everything saved here is an
        Account, a Transfer or None.
        """
        prepared = PreparedSave()
        counts: Counter[UUID] = Counter()
        aggregates = []
        for aggregate in objs:
            if aggregate is None:
                continue
            assert isinstance(aggregate, Account | Transfer), type(aggregate)
            events = aggregate.collect_events()
            prepared.events.extend(events)
            counts[aggregate.id] += len(events)
            aggregates.append(aggregate)
        prepared.stored = [self.mapper.to_stored_event(event) for event in prepared.events]
        cached = self.repository.cache is not None
        for aggregate in aggregates:
            prepared.aggregate_ids.append(aggregate.id)
            if not isinstance(aggregate, Account):
                continue
            if cached:
                # The library leaves the cache at the version it last loaded when
                # fast-forward is on, so every load would replay what this process
                # just wrote. A copy at the saved version is exactly that state; if
                # another thread or process writes later, fast-forward reads it.
                prepared.cache_copies.append(deepcopy(aggregate))
            # Snapshots the saved aggregate whenever its version crosses a multiple
            # of the interval. Unlike the library, which reloads the aggregate from
            # the store at exactly that version, this takes the state just saved at
            # its new version, without re-reading up to an interval of events.
            interval = self.snapshotting_intervals[Account]
            before = aggregate.version - counts[aggregate.id]
            if aggregate.version // interval > before // interval:
                prepared.snapshots.append(Account.Snapshot.take(aggregate))
        return prepared

    def _commit_prepared(self, prepared: PreparedSave, **kwargs: Any) -> list[Recording[UUID]]:
        """Writes a prepared save in one transaction; then the snapshots and the cache.

        Snapshots are written after the commit: if that fails, the command is still
        durable and snapshots are only a cache, so it is logged, not raised.
        """
        if not prepared.stored:
            return []  # nothing changed (every command of a group failed, say)
        positions = self.recorder.insert_events(prepared.stored, **kwargs)
        assert positions is not None and len(positions) == len(prepared.stored)
        recordings = [
            Recording(
                event,
                Notification(
                    originator_id=stored.originator_id,
                    originator_version=stored.originator_version,
                    topic=stored.topic,
                    state=stored.state,
                    id=position,
                ),
            )
            for event, stored, position in zip(
                prepared.events, prepared.stored, positions, strict=True
            )
        ]
        cache = self.repository.cache
        if cache is not None:
            for copy in prepared.cache_copies:
                cache.put(copy.id, copy)
        if prepared.snapshots:
            assert self.snapshots is not None
            try:
                self.snapshots.put(prepared.snapshots)
            except PersistenceError:
                logger.warning("snapshot not taken; loads stay correct", exc_info=True)
        self._notify(recordings)
        return recordings


@dataclass
class PreparedSave:
    """A save's events, encoded, and what follows its commit (see ``LedgerStore._prepare_save``)."""

    events: list[Any] = field(default_factory=list)
    stored: list[StoredEvent] = field(default_factory=list)
    aggregate_ids: list[UUID] = field(default_factory=list)
    cache_copies: list[Account] = field(default_factory=list)
    snapshots: list[Any] = field(default_factory=list)


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's project_aggregate without its per-event Protocol isinstance
    assertion, which costs more on Python 3.11 than applying the event."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class _StaleRead(Exception):
    """Aggregates read at different moments disagree; the retry loop reloads them."""
