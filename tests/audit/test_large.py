"""An untouched ledger of 100,000 events verifies clean on SQLite; 30,000 on
PostgreSQL, where writing them takes about 45 s of the 2-minute budget otherwise.

Method: write batches of 1000 transfers (three events each) among 200 accounts,
chain the log, then verify everything: chain, checkpoints, positions, invariants.
Memory that stays flat with the log size is shown by benchmarks/audit_verify.py.
"""

from __future__ import annotations

import time
from uuid import uuid4

from domain.ledger import Ledger
from tests.audit.conftest import Audited
from tests.support import funded_account

ACCOUNTS = 200
BATCH = 1000
EVENTS = {"sqlite": 100_000, "postgresql": 30_000}


def fill(ledger: Ledger, events: int) -> None:
    accounts = [funded_account(ledger, 10**9) for _ in range(ACCOUNTS)]
    number = 0
    while (head := ledger.head_position()) < events:
        items = []
        for _ in range(min(BATCH, (events - head + 2) // 3)):
            number += 1
            items.append({
                "transfer_id": uuid4(),
                "from_account": accounts[number % ACCOUNTS],
                "to_account": accounts[(number * 7 + 1) % ACCOUNTS],
                "amount": 1 + number % 1000,
                "currency": "USD",
            })  # fmt: skip
        ledger.transfer_batch(items)


def test_a_large_untouched_ledger_verifies_clean(audited: Audited) -> None:
    events = EVENTS[audited.settings.database.kind]
    fill(audited.ledger, events)
    digest = audited.audit.digest()
    started = time.perf_counter()
    result = audited.audit.verify()
    seconds = time.perf_counter() - started
    assert result.ok, result.problems[:3]
    assert result.events_checked == digest["events"] == audited.ledger.head_position()
    assert result.events_checked >= events
    print(f"{audited.settings.database.kind}: {result.events_checked} events in {seconds:.1f}s")
