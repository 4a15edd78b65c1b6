"""The version of an aggregate at an instant, found without replaying its history.

An event's timestamp is the wall clock (``datetime.now`` with a time zone) when the
library makes the event, as a command decides. The event of version ``v + 1`` is made
after that of version ``v`` existed: by the same writer later, or by another one after
it read version ``v`` from the store (a save at a stale version conflicts and is
decided again). So along one aggregate's versions the timestamps never decrease, as
long as the writers' wall clocks do not go back (an NTP step, hosts whose clocks
disagree). Nothing stored enforces it. Where it holds, the answer here is exactly the
one a replay from version 1 gives. Where a clock went back, the answer may differ
from the replay's only for instants within the stretch of time it went back over,
and is still a version whose event is at or before the instant while the next
one's is after it.

The timestamp is inside the stored state (which may be encrypted), so the store
cannot search it: each step reads events and decodes them. A store that can read
several versions of an aggregate in one query (``ReadsVersions``, the recorders of
``infrastructure.persistence``) is asked for 15 at a time; any other for one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, TypeVar, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import AggregateRecorder, StoredEvent

T = TypeVar("T")

# One more than the versions asked for in one query: 5 queries for up to 1,048,576
# versions, 4 events decoded for each. Searching 200,000 versions (``benchmarks/
# point_in_time.py --fanouts``, docs/benchmarks/point-in-time-2026-11-29.json) took
# 0.63 ms on SQLite (8: 0.57, 2: 1.00, 64: 0.92) and 2.3 ms on PostgreSQL (8: 2.6,
# 2: 8.3, 64: 2.8): fewer rows per query cost more round trips, more cost more rows.
FANOUT = 16


@runtime_checkable
class ReadsVersions(Protocol):
    """A recorder that reads chosen versions of one aggregate in one query."""

    def select_versions(self, originator_id: UUID, versions: Sequence[int]) -> list[StoredEvent]:
        """The stored events of ``originator_id`` at ``versions`` (ascending), in order."""
        ...


def versions_reader(
    recorder: AggregateRecorder, originator_id: UUID
) -> tuple[Callable[[Sequence[int]], list[StoredEvent]], int]:
    """How to read versions of ``originator_id`` from ``recorder``, and how many at once."""
    if isinstance(recorder, ReadsVersions):
        return lambda versions: recorder.select_versions(originator_id, versions), FANOUT

    def one_by_one(versions: Sequence[int]) -> list[StoredEvent]:
        return [
            stored
            for version in versions
            for stored in recorder.select_events(originator_id, gt=version - 1, lte=version)
        ]

    return one_by_one, 2


def last_version_at(
    at: datetime,
    read: Callable[[Sequence[int]], Sequence[T]],
    timestamp_of: Callable[[T], datetime],
    low: int,
    high: int,
    fanout: int = 2,
) -> int:
    """The last version whose event happened at or before ``at``.

    ``low`` is a version whose timestamp is known to be at or before ``at``, ``high`` a
    later one whose timestamp is known to be after it; the answer is in ``low .. high -
    1``. Each round, ``read`` returns the events of up to ``fanout - 1`` versions
    spread evenly between the two, and a bisection among them (``timestamp_of``
    decodes one) narrows the window by a factor of ``fanout``: ceil(log_fanout(high -
    low)) reads, ceil(log2(fanout)) events decoded per read, whatever the length of
    the history. ``fanout=2`` is a plain bisection over single events. An event at
    exactly ``at`` counts as before it.
    """
    assert low < high and fanout >= 2, (low, high, fanout)
    while high - low > 1:
        versions = spread(low, high, fanout - 1)
        events = read(versions)
        if len(events) != len(versions):
            raise LookupError(f"versions missing from the store between {low} and {high}")
        below, above = -1, len(versions)
        while above - below > 1:
            middle = (below + above) // 2
            if timestamp_of(events[middle]) <= at:
                below = middle
            else:
                above = middle
        if below >= 0:
            low = versions[below]
        if above < len(versions):
            high = versions[above]
    return low


def spread(low: int, high: int, count: int) -> list[int]:
    """Up to ``count`` versions strictly between ``low`` and ``high``, evenly spaced."""
    gap = high - low
    if gap - 1 <= count:
        return list(range(low + 1, high))
    return [low + gap * step // (count + 1) for step in range(1, count + 1)]
