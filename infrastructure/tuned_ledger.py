"""The Ledger with its speed parts: same use cases, same interface, same rules.

``EVENTLEDGER_GROUP_COMMIT`` (default on) chooses this class; off, the domain's
Ledger runs as it is (behind ``infrastructure.transfer_queue``'s thread pool), and
the whole test suite passes in both modes. What it adds, each behind a public
method of the Ledger:
- ``start_transfer_queue``: the group-commit writer (``infrastructure.group_commit``);
- ``save``: one pass over the saved aggregates, snapshots of the state just saved,
  and copies of it in the aggregate cache, all after the commit;
- ``load_accounts``: for a batch, every account's version in one query;
- ``new_id``: random ids from a buffer (``infrastructure.ids``).
The event format is written and read by ``infrastructure.transcoder``, in both modes.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import Notification, PersistenceError, Recording, StoredEvent

from domain.account import Account
from domain.transfer import Transfer
from infrastructure.group_commit import GroupCommitter
from infrastructure.ids import new_id
from infrastructure.transfer_queue import QueuedLedger

logger = logging.getLogger(__name__)

# From this many accounts on, a load asks the store for their versions in one query.
BULK_LOAD_ACCOUNTS_MIN = 8


@runtime_checkable
class HasMaxVersions(Protocol):
    """A recorder that can tell many aggregates' latest versions in one query."""

    def max_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The latest version of each of ``originator_ids`` that has events."""
        ...


class TunedLedger(QueuedLedger):
    name = "Ledger"

    def start_transfer_queue(self) -> GroupCommitter:
        self.group_committer = GroupCommitter(self)
        return self.group_committer

    def new_id(self) -> UUID:
        return new_id()

    def load_accounts(self, account_ids: Iterable[UUID]) -> dict[UUID, Account]:
        """As the Ledger's, but a batch asks for its accounts' versions in one query.

        Loading one by one asks the store once per account whether the cached copy is
        still current (the aggregate cache's fast-forward); for a batch that is up to
        2,000 queries. A cached copy at the latest version is copied as it is.
        """
        ids = list(dict.fromkeys(account_ids))
        cache = self.repository.cache
        if len(ids) < BULK_LOAD_ACCOUNTS_MIN or cache is None:
            return super().load_accounts(ids)
        recorder = self.recorder
        latest = recorder.max_versions(ids) if isinstance(recorder, HasMaxVersions) else {}
        accounts: dict[UUID, Account] = {}
        for account_id in ids:
            try:
                cached = cache.get(account_id)
            except KeyError:
                cached = None
            if isinstance(cached, Account) and cached.version == latest.get(account_id):
                accounts[account_id] = deepcopy(cached)
            else:
                accounts[account_id] = self.load_account(account_id)
        return accounts

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """The library's save for our own aggregates: one transaction, then the
        snapshots and the aggregate cache. Returns the recordings (with positions)."""
        prepared = _PreparedSave.of(objs, self.snapshotting_intervals[Account])
        prepared.stored = [self.mapper.to_stored_event(event) for event in prepared.events]
        if not prepared.stored:
            return []  # nothing changed (every command of a group failed, say)
        positions = self.recorder.insert_events(prepared.stored, **kwargs)
        assert positions is not None and len(positions) == len(prepared.stored)
        # Committed: from here on nothing may undo or hide the command's success.
        recordings = prepared.recordings(positions)
        cache = self.repository.cache
        if cache is not None:
            # The library leaves the cache at the version it last loaded when
            # fast-forward is on, so every load would replay what this process just
            # wrote. A copy at the saved version is exactly the committed state.
            for copy in prepared.committed_copies:
                cache.put(copy.id, copy)
        if prepared.snapshots:
            assert self.snapshots is not None
            try:
                self.snapshots.put(prepared.snapshots)
            except PersistenceError:
                logger.warning("snapshot not taken; loads stay correct", exc_info=True)
        self.group_committer.saved_elsewhere(prepared.aggregate_ids)
        self._notify(recordings)
        return recordings


@dataclass
class _PreparedSave:
    """A save's events and what follows its commit, read from the aggregates once."""

    events: list[Any] = field(default_factory=list)
    stored: list[StoredEvent] = field(default_factory=list)
    aggregate_ids: list[UUID] = field(default_factory=list)
    committed_copies: list[Account] = field(default_factory=list)
    snapshots: list[Any] = field(default_factory=list)

    @classmethod
    def of(cls, objs: Iterable[Any], snapshot_interval: int) -> _PreparedSave:
        """The library's save asks two runtime Protocol isinstance questions of every
        object, which on Python 3.11 cost more than collecting its events; everything
        saved here is an Account, a Transfer or None.

        Snapshots are taken of the saved state whenever an account's version crosses
        a multiple of the interval. Unlike the library, which reloads the aggregate
        at exactly that multiple, this re-reads nothing.
        """
        prepared = cls()
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
        for aggregate in aggregates:
            prepared.aggregate_ids.append(aggregate.id)
            if not isinstance(aggregate, Account):
                continue
            prepared.committed_copies.append(deepcopy(aggregate))
            before = aggregate.version - counts[aggregate.id]
            if aggregate.version // snapshot_interval > before // snapshot_interval:
                prepared.snapshots.append(Account.Snapshot.take(aggregate))
        return prepared

    def recordings(self, positions: Sequence[int]) -> list[Recording[UUID]]:
        return [
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
            for event, stored, position in zip(self.events, self.stored, positions, strict=True)
        ]
