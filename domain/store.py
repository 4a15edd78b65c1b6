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
from collections.abc import Callable, Iterable
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, PersistenceError
from eventsourcing.utils import Environment, EnvType

from domain.account import Account
from domain.errors import AccountNotFound, ConcurrencyConflict, TransferNotFound
from domain.group_commit import GroupCommitter
from domain.transfer import Transfer, TransferRequest

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
        accounts: dict[UUID, Account] = {}
        for request in requests:
            for account_id in (request.debit_account_id, request.credit_account_id):
                if account_id not in accounts:
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


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's project_aggregate without its per-event Protocol isinstance
    assertion, which costs more on Python 3.11 than applying the event."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class _StaleRead(Exception):
    """Aggregates read at different moments disagree; the retry loop reloads them."""
