"""``last_version_at``: the search that finds an aggregate's version at an instant.

Method: histories are lists of timestamps (version ``v`` at index ``v - 1``), drawn by
hypothesis with ties and gaps; the answer is compared with the linear scan a replay
does, for a plain bisection (one version per read) and for reads of many versions at
once, and the reads and decoded events are counted against the logarithmic bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOAggregateRecorder
from hypothesis import given
from hypothesis import strategies as st

from domain.timeline import FANOUT, last_version_at, spread, versions_reader

START = datetime(2030, 1, 1, tzinfo=UTC)


def timestamps_from(gaps: list[int]) -> list[datetime]:
    """Non-decreasing timestamps: each ``gap`` microseconds after the one before."""
    moments, moment = [], START
    for gap in gaps:
        moment += timedelta(microseconds=gap)
        moments.append(moment)
    return moments


def replayed(timestamps: list[datetime], at: datetime) -> int:
    """The version a replay from version 1 stops at: before the first event after ``at``."""
    version = 0
    for timestamp in timestamps:
        if timestamp > at:
            break
        version += 1
    return version


class History:
    """A store of timestamps that counts the reads and the decoded events."""

    def __init__(self, timestamps: list[datetime]) -> None:
        self.timestamps = timestamps
        self.reads = 0
        self.decoded = 0

    def read(self, versions: Sequence[int]) -> list[int]:
        self.reads += 1
        assert list(versions) == sorted(set(versions)), versions
        assert all(1 <= v <= len(self.timestamps) for v in versions), versions
        return list(versions)  # the "stored event" is its version here

    def timestamp_of(self, version: int) -> datetime:
        self.decoded += 1
        return self.timestamps[version - 1]

    def search(self, at: datetime, fanout: int) -> int:
        """Asked the way the Ledger asks: version 1 and the last version known."""
        if at < self.timestamps[0]:
            return 0
        if at >= self.timestamps[-1]:
            return len(self.timestamps)
        return last_version_at(at, self.read, self.timestamp_of, 1, len(self.timestamps), fanout)


def rounds_bound(versions: int, fanout: int) -> int:
    return max(1, math.ceil(math.log(versions, fanout) - 1e-9))


# Gaps of 0 are ties: several events in one microsecond.
gaps = st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=400)
fanouts = st.sampled_from([2, 3, 8, FANOUT])


@given(gaps=gaps, offset=st.integers(min_value=-2, max_value=1_300), fanout=fanouts)
def test_agrees_with_a_replay_and_reads_logarithmically(
    gaps: list[int], offset: int, fanout: int
) -> None:
    history = History(timestamps_from(gaps))
    at = START + timedelta(microseconds=offset)
    assert history.search(at, fanout) == replayed(history.timestamps, at)
    rounds = rounds_bound(len(gaps), fanout)
    assert history.reads <= rounds
    assert history.decoded <= rounds * math.ceil(math.log2(fanout))


@given(gaps=gaps, fanout=fanouts)
def test_an_event_at_exactly_the_instant_counts_as_before_it(gaps: list[int], fanout: int) -> None:
    history = History(timestamps_from(gaps))
    for timestamp in history.timestamps:
        # The last of the events at that instant, ties included.
        last_at = max(v for v, t in enumerate(history.timestamps, 1) if t == timestamp)
        assert history.search(timestamp, fanout) == last_at


@pytest.mark.parametrize(("fanout", "reads", "decoded"), [(2, 20, 20), (16, 5, 20), (64, 4, 24)])
def test_one_million_versions(fanout: int, reads: int, decoded: int) -> None:
    history = History([START + timedelta(seconds=v) for v in range(1, 1_000_001)])
    at = START + timedelta(seconds=654_321, microseconds=1)
    assert history.search(at, fanout) == 654_321
    assert history.reads <= reads and history.decoded <= decoded


@given(
    first=st.integers(min_value=0, max_value=49),
    between=st.lists(st.integers(min_value=0, max_value=50), max_size=198),
    data=st.data(),
    fanout=fanouts,
)
def test_a_clock_that_went_back_still_gives_a_version_at_a_crossing(
    first: int, between: list[int], data: st.DataObject, fanout: int
) -> None:
    # Timestamps in any order (writers' clocks that went back) between a first and a
    # later last one: the answer for an instant in [first, last) is still a version at
    # or before it whose next version is after it. The instant is drawn inside that
    # range, so no case is thrown away.
    last = data.draw(st.integers(min_value=first + 1, max_value=50), label="last")
    moments = [first, *between, last]
    history = History([START + timedelta(microseconds=m) for m in moments])
    stamps = history.timestamps
    offset = data.draw(st.integers(min_value=first, max_value=last - 1), label="offset")
    at = START + timedelta(microseconds=offset)
    version = last_version_at(at, history.read, history.timestamp_of, 1, len(stamps), fanout)
    assert stamps[version - 1] <= at < stamps[version]


@given(low=st.integers(0, 10**6), gap=st.integers(2, 10**6), count=st.integers(1, 100))
def test_spread_is_strictly_between_and_narrows_by_the_fanout(
    low: int, gap: int, count: int
) -> None:
    high = low + gap
    versions = spread(low, high, count)
    assert versions and all(low < v < high for v in versions)
    assert versions == sorted(set(versions)) and len(versions) <= count
    bounds = [low, *versions, high]
    assert max(b - a for a, b in zip(bounds, bounds[1:], strict=False)) <= -(-gap // (count + 1))


def test_a_store_missing_an_event_is_an_error_not_a_wrong_answer() -> None:
    with pytest.raises(LookupError):
        last_version_at(START, lambda versions: [], lambda _: START, 1, 100, FANOUT)


def test_a_recorder_without_select_versions_is_read_one_version_at_a_time() -> None:
    recorder = POPOAggregateRecorder()  # the library's: no select_versions
    originator = uuid4()
    recorder.insert_events(
        [StoredEvent(originator, v, "topic", str(v).encode()) for v in range(1, 11)]
    )
    read, fanout = versions_reader(recorder, originator)
    assert fanout == 2
    assert [stored.state for stored in read([3, 7])] == [b"3", b"7"]
