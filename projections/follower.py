"""Following the notification log: read whole saves, apply them, move the positions.

``Follower.step`` is the unit of work: read the next batch of whole saves after the
lowest position of its projections, then, in one view transaction, move each
projection's tracking row by compare-and-set and apply the events it has not seen.
A crash anywhere leaves the rows and the positions of the last committed batch, so a
restart neither loses nor repeats an event. A second follower on the same views
loses the compare-and-set, reloads the positions and carries on.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from domain.ledger import Ledger
from infrastructure.views import StalePosition, ViewStore
from projections.base import (
    Positioned,
    Projection,
    create_tables,
    physical_tables,
    tracking_name,
    whole_saves,
)
from projections.decoding import EventDecoder

logger = logging.getLogger(__name__)

BATCH_SIZE_MAX = 100_000
# One save holds at most 1000 transfers of five events; a page is at least one event.
PAGES_PER_BATCH_MAX = 10_000
STALE_RETRIES_MAX = 20
STALE_BACKOFF_SECONDS_MAX = 0.01


def read_whole_saves(
    ledger: Ledger,
    after: int,
    batch_size: int,
    decoder: EventDecoder | None = None,
    carried: Sequence[Positioned] = (),
) -> tuple[list[Positioned], list[Positioned]]:
    """About ``batch_size`` events after position ``after`` that end on a save
    boundary (more when one save is larger than a batch), and the events read beyond
    that boundary; ``carried`` are such events from the previous call, not read again.
    """
    assert 1 <= batch_size <= BATCH_SIZE_MAX
    decode = (decoder or EventDecoder(ledger.mapper)).decode
    events = list(carried)
    start = events[-1].position if events else after
    for _ in range(PAGES_PER_BATCH_MAX):
        page = ledger.recorder.select_notifications(start, batch_size, inclusive_of_start=False)
        events.extend(decode(notification) for notification in page)
        whole = whole_saves(events)
        if whole or len(page) < batch_size:
            if not whole and events:
                # A save is written atomically, so the log never ends inside one; if it
                # seems to, the boundary rule and the model disagree: wait, don't guess.
                logger.warning("log ends inside a save at %d; waiting", events[-1].position)
            return events[:whole], events[whole:]
        start = page[-1].id
    raise AssertionError(f"no save boundary within {PAGES_PER_BATCH_MAX} pages after {after}")


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

    def create_tables(self, generation: str = "g0") -> None:
        with self.store.transaction() as tx:
            for projection in self.projections:
                create_tables(tx, projection, self.rebuilding, generation)

    def positions(self) -> dict[str, int]:
        """Each projection's position, by projection name (cached between batches)."""
        if self._positions is None:
            stored = self.store.positions()
            missing = [n for n in self._names.values() if n not in stored]
            assert not missing, f"tables not created for {missing}"
            self._positions = {p: stored[n] for p, n in self._names.items()}
        return dict(self._positions)

    @property
    def position(self) -> int:
        return min(self.positions().values())

    def step(self) -> int:
        """Applies the next batch; returns how many events it read (0: caught up, or
        another follower kept winning the race for the positions: it is applying
        them, and the caller's next poll looks again)."""
        for _ in range(STALE_RETRIES_MAX):
            positions = self.positions()
            after = min(positions.values())
            carried = self._carried[1] if self._carried[0] == after else []
            events, rest = read_whole_saves(
                self.ledger, after, self.batch_size, self._decoder, carried
            )
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
            return len(events)
        return 0

    def _apply(self, positions: dict[str, int], events: list[Positioned]) -> None:
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
                    projection.apply(tx, self._tables[projection.name], unseen)
        self._positions = {name: max(position, end) for name, position in positions.items()}

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


def follower_for(
    ledger: Ledger, store: ViewStore, projections: Sequence[Projection], **kwargs: Any
) -> Follower:
    """A live follower with its tables created."""
    follower = Follower(ledger, store, projections, **kwargs)
    follower.create_tables()
    return follower
