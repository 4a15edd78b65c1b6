"""Following the notification log: read whole saves (``projections.reading``), apply
them, move the positions.

``Follower.step`` is the unit of work: read the next batch of whole saves after the
lowest position of its projections, then, in one view transaction, move each
projection's tracking row by compare-and-set and apply the events it has not seen.
A crash anywhere leaves the rows and the positions of the last committed batch, so a
restart neither loses nor repeats an event. A second follower on the same views
loses the compare-and-set, reloads the positions and carries on.

An event that cannot be read, decoded or applied (``projections.failures``: a
permanent failure, not the databases being away) stops the follower before the save
that holds it. A batch that fails is applied again one save per transaction, so every
save before the bad one is committed and the failure is known to the save; the
follower records it for each of its views and raises ``ProjectionStalled``. Nothing
after it is applied by any of them, so the views never disagree with each other.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from domain.ledger import Ledger
from infrastructure.views import StalePosition, ViewStore, ViewTransaction
from projections.base import (
    Positioned,
    Projection,
    create_tables,
    physical_tables,
    split_saves,
    tracking_name,
)
from projections.decoding import EventDecoder
from projections.failures import (
    ProjectionFailure,
    clear_failures,
    describe_error,
    is_transient,
    read_failures,
    record_failures,
)
from projections.reading import BATCH_SIZE_MAX, EventUnreadable, read_whole_saves

STALE_RETRIES_MAX = 20
STALE_BACKOFF_SECONDS_MAX = 0.01


class ApplyFailed(Exception):
    """A projection's apply raised a permanent error (inside the view transaction,
    which rolls back)."""

    def __init__(self, projection: str, error: BaseException) -> None:
        super().__init__(f"{projection}: {describe_error(error)}")
        self.projection = projection
        self.error = error


class ProjectionStalled(Exception):
    """The follower stopped before an event it cannot apply; ``failures`` says where
    and why, one per view held (recorded in the views, unless rebuilding)."""

    def __init__(self, failures: list[ProjectionFailure]) -> None:
        assert failures
        cause = next((f for f in failures if f.cause in (None, f.name)), failures[0])
        held = [f.name for f in failures if f is not cause]
        super().__init__(cause.describe() + (f" (holding {', '.join(held)})" if held else ""))
        self.failures = failures


class Follower:
    """Applies the log to some projections' live (or rebuilding) tables."""

    def __init__(
        self,
        ledger: Ledger,
        store: ViewStore,
        projections: Sequence[Projection],
        *,
        rebuilding: bool = False,
        batch_size: int = 1000,
    ) -> None:
        assert projections and 1 <= batch_size <= BATCH_SIZE_MAX
        self.ledger = ledger
        self.store = store
        self.projections = list(projections)
        self.rebuilding = rebuilding
        self.batch_size = batch_size
        self._tables = {p.name: physical_tables(p, rebuilding) for p in self.projections}
        self._names = {p.name: tracking_name(p, rebuilding) for p in self.projections}
        self._positions: dict[str, int] | None = None
        self._decoder = EventDecoder(ledger.mapper)
        # Events read past the last boundary, and the position they follow.
        self._carried: tuple[int, list[Positioned]] = (-1, [])
        # The latest position of a failure recorded for these views (None: none), so
        # the batch that gets past it deletes it in its own transaction.
        self._failure_position: int | None = None

    def create_tables(self, generation: str = "g0") -> None:
        with self.store.transaction() as tx:
            for projection in self.projections:
                create_tables(tx, projection, self.rebuilding, generation)

    def positions(self) -> dict[str, int]:
        """Each projection's position, by projection name (cached between batches)."""
        if self._positions is None:
            with self.store.read() as tx:
                stored = tx.positions()
                failed = {} if self.rebuilding else read_failures(tx, table_known=False)
            missing = [n for n in self._names.values() if n not in stored]
            assert not missing, f"tables not created for {missing}"
            self._positions = {p: stored[n] for p, n in self._names.items()}
            ours = [failed[n].position for n in self._names.values() if n in failed]
            self._failure_position = max(ours, default=None)
        return dict(self._positions)

    @property
    def position(self) -> int:
        return min(self.positions().values())

    def step(self) -> int:
        """Applies the next batch; returns how many events it read (0: caught up, or
        another follower kept winning the race for the positions: it is applying
        them, and the caller's next poll looks again).

        Raises ProjectionStalled when an event cannot be read or applied (after
        applying every save before it), and the databases' transient errors.
        """
        for _ in range(STALE_RETRIES_MAX):
            positions = self.positions()
            after = min(positions.values())
            carried = self._carried[1] if self._carried[0] == after else []
            try:
                events, rest = read_whole_saves(
                    self.ledger, after, self.batch_size, self._decoder, carried
                )
            except EventUnreadable as unreadable:
                raise self._stalled(
                    positions, unreadable.position, unreadable.position, None, unreadable.error
                ) from unreadable.error
            self._carried = (events[-1].position if events else after, rest)
            if not events:
                return 0
            try:
                self._apply(positions, events)
            except StalePosition:
                # Another writer moved on: reload, re-read, and step out of its lockstep.
                self._positions = None
                time.sleep(random.uniform(0, STALE_BACKOFF_SECONDS_MAX))
                continue
            except ApplyFailed:
                return self._apply_save_by_save(events)
            return len(events)
        return 0

    def _apply_save_by_save(self, events: Sequence[Positioned]) -> int:
        """Applies ``events``, a batch that failed, again one save per transaction: the
        saves before the bad one are committed and the failure is known to its save.
        Returns how many events it applied (the failure may not come back)."""
        applied = 0
        for save in split_saves(events):
            positions = self.positions()
            try:
                self._apply(positions, save)
            except StalePosition:
                self._positions = None
                return applied  # another follower is applying them
            except ApplyFailed as failed:
                raise self._stalled(
                    positions, save[0].position, save[-1].position, failed.projection, failed.error
                ) from failed.error
            applied += len(save)
        return applied

    def _stalled(
        self,
        positions: dict[str, int],
        first: int,
        last: int,
        cause: str | None,
        error: BaseException,
    ) -> ProjectionStalled:
        """Records that each view before ``first`` is held there, and says so."""
        since = datetime.now(UTC).isoformat(timespec="seconds")
        cause = None if cause is None else self._names[cause]
        failures = [
            ProjectionFailure(self._names[name], first, last, cause, describe_error(error), since)
            for name, position in positions.items()
            if position < first
        ]
        if not self.rebuilding:
            with self.store.transaction() as tx:
                failures = record_failures(tx, failures)
            self._failure_position = max(first, self._failure_position or 0)
        return ProjectionStalled(failures)

    def _apply(self, positions: dict[str, int], events: Sequence[Positioned]) -> None:
        end = events[-1].position
        with self.store.transaction() as tx:
            # Row locks in name order, like every transaction that moves positions.
            for name, position in sorted(positions.items(), key=lambda i: self._names[i[0]]):
                if end > position:
                    tx.advance(self._names[name], position, end)
            for projection in self.projections:
                position = positions[projection.name]
                if end > position:
                    unseen = events if events[0].position > position else [
                        e for e in events if e.position > position
                    ]  # fmt: skip
                    _apply_one(projection, tx, self._tables[projection.name], unseen)
            if self._failure_position is not None:
                clear_failures(tx, list(self._names.values()), end)
        self._positions = {name: max(position, end) for name, position in positions.items()}
        if self._failure_position is not None and end >= self._failure_position:
            self._failure_position = None

    def catch_up(
        self,
        stop: threading.Event | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> int:
        """Applies batches until the log is exhausted (or ``stop``); returns events read."""
        total = 0
        while stop is None or not stop.is_set():
            count = self.step()
            if count == 0:
                break
            total += count
            if on_batch is not None:
                on_batch(count)
        return total


def _apply_one(
    projection: Projection,
    tx: ViewTransaction,
    tables: dict[str, str],
    events: Sequence[Positioned],
) -> None:
    """``projection.apply``; any error but the databases' transient ones is the events'
    fault (a value the view cannot store, a fact it lacks): ApplyFailed."""
    try:
        projection.apply(tx, tables, events)
    except Exception as error:
        if is_transient(error):
            raise
        raise ApplyFailed(projection.name, error) from error


def follower_for(
    ledger: Ledger, store: ViewStore, projections: Sequence[Projection], **kwargs: Any
) -> Follower:
    """A live follower with its tables created."""
    follower = Follower(ledger, store, projections, **kwargs)
    follower.create_tables()
    return follower
