"""The background sweeper voids expired pending transfers, with an injected clock."""

from __future__ import annotations

from datetime import timedelta

from domain.ledger import Ledger
from projections.expiry import PendingExpirySweeper
from tests.conftest import Clock
from tests.support import funded_account


def test_sweep_voids_due_transfers_and_returns_the_funds(
    timed_ledger: Ledger, clock: Clock
) -> None:
    ledger = timed_ledger
    payer, payee = funded_account(ledger, 100), ledger.open_account("USD").id
    soon = ledger.transfer(payer, payee, 10, "USD", pending=True, timeout_seconds=5)
    later = ledger.transfer(payer, payee, 20, "USD", pending=True, timeout_seconds=60)
    posted = ledger.transfer(payer, payee, 30, "USD", pending=True, timeout_seconds=5)
    ledger.post_pending(posted.id)
    sweeper = PendingExpirySweeper(ledger)

    assert sweeper.sweep() == 0
    assert set(sweeper.deadlines) >= {soon.id, later.id}
    assert posted.id not in sweeper.deadlines
    clock.now += timedelta(seconds=5)
    assert sweeper.sweep() == 1
    assert ledger.get_transfer(soon.id).status == "voided"
    assert ledger.get_transfer(later.id).status == "pending"
    assert ledger.get_account(payer).available_balance == 100 - 30 - 20
    clock.now += timedelta(seconds=60)
    assert sweeper.sweep() == 1
    assert ledger.get_account(payer).available_balance == 70


def test_background_thread_sweeps_and_stops(timed_ledger: Ledger, clock: Clock) -> None:
    ledger = timed_ledger
    payer, payee = funded_account(ledger, 100), ledger.open_account("USD").id
    pending = ledger.transfer(payer, payee, 10, "USD", pending=True, timeout_seconds=1)
    clock.now += timedelta(seconds=2)
    sweeper = PendingExpirySweeper(ledger, interval_seconds=0.01)
    sweeper.start()
    try:
        for _ in range(500):  # at most 5 s; usually the first round does it
            if ledger.get_transfer(pending.id).status == "voided":
                break
            sweeper._stopping.wait(0.01)
    finally:
        sweeper.stop()
    assert ledger.get_transfer(pending.id).status == "voided"
    assert sweeper.expired_total == 1
