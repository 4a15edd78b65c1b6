"""Snapshots and replay: loading cost is bounded, and any past state can be rebuilt."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from domain.errors import AccountNotFound, InvalidRequest
from domain.ledger import Ledger
from domain.money import world_account_id


def test_an_account_with_10000_events_loads_through_a_snapshot(
    make_ledger: Callable[..., Ledger],
) -> None:
    # No aggregate cache: this is the cost of a load in a fresh process.
    ledger = make_ledger(aggregate_cache_size=0)
    account = ledger.open_account("USD").id
    world = world_account_id("USD")
    for _ in range(10):  # 10 x 1,000 deposits: 10,000 account events after Opened
        ledger.transfer_batch(
            [dict(from_account=world, to_account=account, amount=1, currency="USD")] * 1_000
        )
    assert ledger.snapshots is not None
    (snapshot,) = ledger.snapshots.get(account, desc=True, limit=1)
    # Snapshots are taken at the saved version once it crosses a multiple of 100.
    assert 10_001 - 100 < snapshot.originator_version <= 10_001

    # Record what the repository reads from the event store when it loads the account.
    reads: list[dict[str, Any]] = []
    event_store = ledger.repository.event_store
    original_get = event_store.get

    def recording_get(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs)
        return original_get(*args, **kwargs)

    event_store.get = recording_get  # type: ignore[method-assign]
    try:
        loaded = ledger.get_account(account)
    finally:
        event_store.get = original_get  # type: ignore[method-assign]
    assert (loaded.version, loaded.balance) == (10_001, 10_000)
    # The load starts from the snapshot: under 100 events replayed, not 10,001.
    assert [read.get("gt") for read in reads] == [snapshot.originator_version]


class TestBalanceAt:
    def test_by_version(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD").id
        for amount in (100, 200, 300):
            ledger.deposit(account, amount)
        ledger.withdraw(account, 50)
        balances = [ledger.balance_at(account, version=v).balance for v in range(1, 6)]
        assert balances == [0, 100, 300, 600, 550]

    def test_by_instant(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD").id
        ledger.deposit(account, 100)
        ledger.deposit(account, 200)
        events = ledger.account_events(account)
        opened, first, second = (event.timestamp for event in events)
        assert ledger.balance_at(account, at=opened).balance == 0
        assert ledger.balance_at(account, at=first).balance == 100
        between = first + (second - first) / 2
        assert ledger.balance_at(account, at=between).balance == 100
        assert ledger.balance_at(account, at=second + timedelta(days=1)).balance == 300
        with pytest.raises(AccountNotFound):
            ledger.balance_at(account, at=opened - timedelta(microseconds=1))

    def test_refuses_versions_out_of_range_and_ambiguous_requests(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD").id
        for bad in ({"version": 0}, {"version": 2}, {}):
            with pytest.raises(InvalidRequest):
                ledger.balance_at(account, **bad)

    def test_replay_agrees_with_every_recorded_balance_after(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD", overdraft_limit=1_000).id
        for amount in (5, 70, 300):
            ledger.deposit(account, amount)
            ledger.withdraw(account, amount * 2)
        for event in ledger.account_events(account)[1:]:
            replayed = ledger.balance_at(account, version=event.version)
            assert replayed.balance == event.data["balance_after"]
