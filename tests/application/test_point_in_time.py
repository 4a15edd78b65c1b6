"""Point-in-time reads (issue 13, item 4): ``balance_at(at=)`` finds the version by
bisection over single events, then replays from the nearest snapshot, as ``version=``.

Method: the library's wall clock is replaced by one that ticks a millisecond every
few events and stamps them in +05:30, so an account's history has ties (several
events in one microsecond) and gaps. Its history (deposits, withdrawals, pending
reservations, over several snapshots) is then read at every instant that matters:
each event's own timestamp, a microsecond before and after it, before the account
was opened, after its last event, the ends of the datetime range, in several zones.
Each answer is compared with a replay of the whole history from version 1 that stops
at the first event after the instant (what the Ledger did before), on every store and
in both commit modes. The events a read decodes are counted against the cost of the
same read by version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import eventsourcing.domain
import pytest

from domain.errors import AccountNotFound, InvalidRequest
from domain.ledger import Ledger
from domain.money import world_account_id
from domain.timeline import ReadsVersions
from tests.point_in_time_support import (
    INDIA,
    CountingReads,
    TickingClock,
    old_answer,
    replay_all,
    replayed_at,
    search_cost,
)

pytestmark = pytest.mark.parametrize("commit_mode", ["group", "per_command"], indirect=True)

ZONES = (UTC, INDIA, timezone(timedelta(hours=-8)), timezone(timedelta(hours=14)))
MICROSECOND = timedelta(microseconds=1)


@pytest.fixture
def event_clock(monkeypatch: pytest.MonkeyPatch) -> TickingClock:
    clock = TickingClock()
    monkeypatch.setattr(eventsourcing.domain, "datetime_now_with_tzinfo", clock)
    return clock


def write_history(ledger: Ledger, account: UUID, rounds: int = 7) -> None:
    """About 50 events per round, saved in batches of several sizes and single
    commands: deposits, withdrawals, and pending transfers voided or posted."""
    world = world_account_id("USD")
    for number in range(rounds):
        items = [
            {
                "transfer_id": uuid4(),
                "from_account": world if n % 3 else account,
                "to_account": account if n % 3 else world,
                "amount": 1 + n + number,
                "currency": "USD",
            }
            for n in range(40 + number)
        ]
        ledger.transfer_batch(items)
        held = ledger.transfer(account, world, 5, "USD", pending=True)
        ledger.void_pending(held.id) if number % 2 else ledger.post_pending(held.id, 3)
        for amount in (7, 11):
            ledger.deposit(account, amount)


def instants_to_check(timestamps: list[datetime]) -> Iterator[datetime]:
    """Every edge, each expressed in one of several zones in turn."""
    moments = {timestamps[0] - timedelta(days=1), timestamps[-1] + timedelta(days=1)}
    for timestamp in timestamps:
        moments.update((timestamp - MICROSECOND, timestamp, timestamp + MICROSECOND))
    for number, moment in enumerate(sorted(moments)):
        yield moment.astimezone(ZONES[number % len(ZONES)])
    yield datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    yield datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-14)))


@pytest.fixture
def history(event_clock: TickingClock, make_ledger: Callable[..., Ledger]) -> tuple[Ledger, UUID]:
    ledger = make_ledger()
    account = ledger.open_account("USD", overdraft_limit=10**6).id
    write_history(ledger, account)
    return ledger, account


def test_every_instant_answers_as_the_full_replay(history: tuple[Ledger, UUID]) -> None:
    ledger, account = history
    replayed = replay_all(ledger, account)
    timestamps = [timestamp for timestamp, _ in replayed]
    assert len(timestamps) > 300 and len(set(timestamps)) < len(timestamps)  # ties
    assert timestamps == sorted(timestamps)
    assert ledger.snapshots is not None and len(list(ledger.snapshots.get(account))) >= 3
    checked = 0
    for at in instants_to_check(timestamps):
        expected = old_answer(replayed, at)
        if expected is None:
            with pytest.raises(AccountNotFound, match="did not exist at"):
                ledger.balance_at(account, at=at)
        else:
            assert ledger.balance_at(account, at=at) == expected, at
        checked += 1
    assert checked > 3 * len(set(timestamps))


def test_the_edges_by_name(history: tuple[Ledger, UUID]) -> None:
    ledger, account = history
    events = ledger.account_events(account, limit=1000)
    first, last = events[0], events[-1]
    # Before the account was opened: not found, as before (404 over HTTP).
    with pytest.raises(AccountNotFound, match="did not exist at"):
        ledger.balance_at(account, at=first.timestamp - MICROSECOND)
    # At the instant it was opened: version 1 and whatever else is at that instant.
    opened = ledger.balance_at(account, at=first.timestamp)
    assert opened.version == max(e.version for e in events if e.timestamp == first.timestamp)
    # Exactly at an event: inclusive, and the last of the events at that instant.
    middle = events[len(events) // 2]
    at_middle = ledger.balance_at(account, at=middle.timestamp)
    assert at_middle.version == max(e.version for e in events if e.timestamp == middle.timestamp)
    assert at_middle.timestamp == middle.timestamp
    # The same instant in another zone is the same answer.
    assert ledger.balance_at(account, at=middle.timestamp.astimezone(UTC)) == at_middle
    # At or after the last event: the account as it is now.
    now = ledger.get_account(account)
    for at in (last.timestamp, last.timestamp + timedelta(days=365)):
        answer = ledger.balance_at(account, at=at)
        assert (answer.version, answer.balance) == (now.version, now.balance)
    with pytest.raises(InvalidRequest, match="time zone"):
        ledger.balance_at(account, at=middle.timestamp.replace(tzinfo=None))
    with pytest.raises(InvalidRequest):
        ledger.balance_at(account, at=middle.timestamp, version=middle.version)


def test_ids_that_are_no_account_are_not_found(history: tuple[Ledger, UUID]) -> None:
    ledger, account = history
    at = datetime(2100, 1, 1, tzinfo=UTC)
    transfer_id = ledger.deposit(account, 1).id
    for other in (uuid4(), transfer_id):
        with pytest.raises(AccountNotFound):
            ledger.balance_at(other, at=at)


def test_costs_a_read_by_version_plus_logarithmically_many_events(
    history: tuple[Ledger, UUID],
) -> None:
    ledger, account = history
    events = ledger.account_events(account, limit=1000)
    rows_bound, decoded_bound = search_cost(events[-1].version)
    assert decoded_bound <= 12  # 4 events decoded per query, 3 queries
    counting = CountingReads(ledger)
    for event in events[1:-1:7]:
        with counting:
            by_time = ledger.balance_at(account, at=event.timestamp)
        at_rows, at_decoded = counting.rows, counting.decoded
        with counting:
            by_version = ledger.balance_at(account, version=by_time.version)
        assert by_time == by_version
        assert at_rows <= counting.rows + rows_bound, (event.version, at_rows, counting.rows)
        assert at_decoded <= counting.decoded + decoded_bound, (event.version, at_decoded)
        # Never the whole history: the replay starts from a snapshot.
        assert at_decoded < 150 + decoded_bound


def test_every_store_reads_chosen_versions_in_one_query(ledger: Ledger) -> None:
    recorder = ledger.recorder
    assert isinstance(recorder, ReadsVersions), type(recorder)
    account = ledger.open_account("USD").id
    for _ in range(5):
        ledger.deposit(account, 1)
    chosen = recorder.select_versions(account, [1, 3, 6])
    assert [(s.originator_id, s.originator_version) for s in chosen] == [
        (account, 1), (account, 3), (account, 6),
    ]  # fmt: skip
    expected = [
        s.state for v in (1, 3, 6) for s in recorder.select_events(account, gt=v - 1, lte=v)
    ]
    assert [s.state for s in chosen] == expected
    assert [s.originator_version for s in recorder.select_versions(account, [2, 7])] == [2]
    assert recorder.select_versions(uuid4(), [1]) == []


def test_a_clock_that_went_back_gives_a_version_at_a_crossing(
    event_clock: TickingClock, make_ledger: Callable[..., Ledger]
) -> None:
    # Nothing stored stops a writer's clock from going back (an NTP step, or another
    # host's clock behind). The answer is then still a version at or before the
    # instant whose next one is after it; it equals the replay's outside the window
    # the clock went back over.
    ledger = make_ledger()
    account = ledger.open_account("USD").id
    for _ in range(30):
        ledger.deposit(account, 1)
    so_far = ledger.account_events(account, limit=1000)
    event_clock.start -= (so_far[-1].timestamp - so_far[0].timestamp) / 2  # half of it
    for _ in range(30):
        ledger.deposit(account, 1)
    events = ledger.account_events(account, limit=1000)
    stamps = [event.timestamp for event in events]
    back = next(n for n in range(1, len(stamps)) if stamps[n] < stamps[n - 1])
    for at in instants_to_check(sorted(set(stamps))):
        try:
            version = ledger.balance_at(account, at=at).version
        except AccountNotFound:
            assert at < stamps[0]
            continue
        assert stamps[version - 1] <= at
        assert version == len(stamps) or stamps[version] > at
        if not stamps[back] <= at < stamps[back - 1]:
            expected = replayed_at(ledger, account, at)
            assert expected is not None and version == expected.version, at
