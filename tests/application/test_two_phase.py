"""Two-phase (pending) transfers: reserve, then post all or part, void, or expire.

Expiry uses an injected clock, so no test sleeps.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import (
    AccountFrozen,
    AmountOutOfRange,
    InsufficientFunds,
    InvalidRequest,
    LedgerError,
    PendingExpired,
    TransferNotPending,
)
from domain.ledger import Ledger
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from tests.conftest import Clock
from tests.support import funded_account


def pair(ledger: Ledger, funds: int, overdraft_limit: int = 0) -> tuple[UUID, UUID]:
    payer = funded_account(ledger, funds, overdraft_limit=overdraft_limit)
    return payer, ledger.open_account("USD").id


class TestReserve:
    def test_available_drops_at_once_balance_does_not(self, ledger: Ledger) -> None:
        payer, payee = pair(ledger, 100)
        pending = ledger.transfer(payer, payee, 60, "USD", pending=True)
        assert pending.status == "pending"
        view = ledger.get_account(payer)
        assert (view.balance, view.available_balance, view.pending_debits) == (100, 40, 60)
        assert ledger.get_account(payee).pending_credits == 60
        with pytest.raises(InsufficientFunds):
            ledger.transfer(payer, payee, 41, "USD")

    def test_timeout_needs_pending(self, ledger: Ledger) -> None:
        payer, payee = pair(ledger, 100)
        with pytest.raises(InvalidRequest):
            ledger.transfer(payer, payee, 1, "USD", timeout_seconds=5)


class TestPost:
    def test_captures_part_and_releases_the_rest(self, ledger: Ledger) -> None:
        payer, payee = pair(ledger, 100)
        pending = ledger.transfer(payer, payee, 60, "USD", pending=True)
        posted = ledger.post_pending(pending.id, 45)
        assert (posted.status, posted.amount, posted.posted_amount) == ("posted", 60, 45)
        payer_view, payee_view = ledger.get_account(payer), ledger.get_account(payee)
        assert (payer_view.balance, payer_view.pending_debits) == (55, 0)
        assert (payee_view.balance, payee_view.pending_credits) == (45, 0)

    def test_refuses_more_than_reserved(self, ledger: Ledger) -> None:
        payer, payee = pair(ledger, 100)
        pending = ledger.transfer(payer, payee, 60, "USD", pending=True)
        with pytest.raises(AmountOutOfRange):
            ledger.post_pending(pending.id, 61)
        assert ledger.post_pending(pending.id, 60).posted_amount == 60

    def test_posts_once_and_answers_the_same_post_again(self, ledger: Ledger) -> None:
        payer, payee = pair(ledger, 100)
        pending = ledger.transfer(payer, payee, 10, "USD", pending=True)
        assert not ledger.post_pending(pending.id).replayed
        assert ledger.post_pending(pending.id).replayed
        assert ledger.get_account(payer).balance == 90
        with pytest.raises(TransferNotPending):
            ledger.void_pending(pending.id)

    def test_frozen_account_blocks_post_but_not_void(self, ledger: Ledger) -> None:
        payer, payee = pair(ledger, 100)
        pending = ledger.transfer(payer, payee, 10, "USD", pending=True)
        ledger.freeze(payee)
        with pytest.raises(AccountFrozen):
            ledger.post_pending(pending.id)
        assert ledger.void_pending(pending.id).status == "voided"
        assert ledger.get_account(payer).available_balance == 100


class TestExpiry:
    def test_expired_transfer_cannot_be_posted(self, timed_ledger: Ledger, clock: Clock) -> None:
        payer, payee = pair(timed_ledger, 100)
        pending = timed_ledger.transfer(payer, payee, 30, "USD", pending=True, timeout_seconds=60)
        clock.now += timedelta(seconds=59)
        assert timed_ledger.get_transfer(pending.id).status == "pending"
        clock.now += timedelta(seconds=1)
        with pytest.raises(PendingExpired):
            timed_ledger.post_pending(pending.id)
        assert timed_ledger.get_transfer(pending.id).status == "voided"
        assert timed_ledger.get_account(payer).available_balance == 100

    def test_sweep_voids_only_the_expired(self, timed_ledger: Ledger, clock: Clock) -> None:
        payer, payee = pair(timed_ledger, 100)
        short = timed_ledger.transfer(payer, payee, 10, "USD", pending=True, timeout_seconds=5)
        long = timed_ledger.transfer(payer, payee, 10, "USD", pending=True, timeout_seconds=50)
        forever = timed_ledger.transfer(payer, payee, 10, "USD", pending=True)
        clock.now += timedelta(seconds=10)
        assert timed_ledger.expire_pending([short.id, long.id, forever.id]) == 1
        assert timed_ledger.expire_pending([short.id]) == 0
        statuses = [timed_ledger.get_transfer(t.id).status for t in (short, long, forever)]
        assert statuses == ["voided", "pending", "pending"]


def test_twenty_concurrent_posts_and_voids_one_wins_its_kind_replays(ledger: Ledger) -> None:
    payer, payee = pair(ledger, 100)
    pending = ledger.transfer(payer, payee, 50, "USD", pending=True)
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    written: list[str] = []

    def race(index: int) -> None:
        barrier.wait()
        try:
            settle = ledger.post_pending if index % 2 else ledger.void_pending
            view = settle(pending.id)
            outcomes.append(view.status)
            if not view.replayed:
                written.append(view.status)
        except LedgerError as error:
            outcomes.append(error.code)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # One settlement is written; the nine like it are its replays, the other ten refused.
    counts = Counter(outcomes)
    winner = ledger.get_transfer(pending.id).status
    assert written == [winner]
    assert counts == {winner: 10, "transfer_not_pending": 10}
    payer_view = ledger.get_account(payer)
    assert payer_view.pending_debits == 0
    assert payer_view.balance == (50 if winner == "posted" else 100)


@settings(max_examples=60, deadline=None)
@given(
    funds=st.integers(0, 1_000),
    overdraft_limit=st.integers(0, 500),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["reserve", "post", "void", "withdraw"]),
            st.integers(1, 900),
        ),
        max_size=12,
    ),
)
def test_rules_hold_for_any_sequence(
    funds: int, overdraft_limit: int, steps: list[tuple[str, int]]
) -> None:
    """Available never below -overdraft_limit counting pending debits; a post captures at
    most what was reserved; capture + release = reserved. On the in-memory store: the
    rules live in the domain, and the stores are compared by the other tests."""
    ledger = build_ledger(Settings(database_url="memory://"))
    try:
        _check_sequence(ledger, funds, overdraft_limit, steps)
    finally:
        ledger.close()


def _check_sequence(
    ledger: Ledger, funds: int, overdraft_limit: int, steps: list[tuple[str, int]]
) -> None:
    payer, payee = pair(ledger, funds, overdraft_limit)
    pending: list[tuple[UUID, int]] = []
    captured = released = reserved = 0
    for action, amount in steps:
        try:
            if action == "reserve":
                reservation = ledger.transfer(payer, payee, amount, "USD", pending=True)
                reserved += amount
                pending.append((reservation.id, amount))
            elif action == "withdraw":
                ledger.withdraw(payer, amount)
            elif pending:
                transfer_id, held = pending.pop(0)
                if action == "post":
                    capture = min(amount, held)
                    ledger.post_pending(transfer_id, capture)
                    captured, released = captured + capture, released + held - capture
                else:
                    ledger.void_pending(transfer_id)
                    released += held
        except InsufficientFunds:
            pass
        view = ledger.get_account(payer)
        assert view.available_balance >= -overdraft_limit
        assert view.pending_debits == sum(held for _, held in pending)
    assert captured + released + sum(held for _, held in pending) == reserved
    assert ledger.get_account(payee).balance == captured
