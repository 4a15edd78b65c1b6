"""Benchmark: ``audit verify`` throughput on a ledger of 200,000 events (SQLite).

Prints one JSON document: events/s for the chain alone (hash chain, checkpoints,
positions; nothing decoded) and for the full verify (with every invariant), the
time to chain the log (the ``audit_chain`` projection catching up), and the peak
RSS after each phase, so a memory that grew with the log would show.

Run: ``.venv/bin/python benchmarks/audit_verify.py [--events 200000] [--database URL]``
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.ledger import Ledger  # noqa: E402
from infrastructure.persistence import build_ledger  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402
from infrastructure.views import ViewStore  # noqa: E402
from projections.audit_chain import AuditChain  # noqa: E402
from projections.audit_verify import verify  # noqa: E402

ACCOUNTS = 200
BATCH = 1000  # transfers per transaction; each writes 3 events


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def fill(ledger: Ledger, events: int) -> None:
    """Writes about ``events`` events: accounts, deposits, then batches of transfers."""
    accounts = [ledger.open_account("USD").id for _ in range(ACCOUNTS)]
    for account_id in accounts:
        ledger.deposit(account_id, 10**9)
    number = 0
    while ledger.head_position() < events:
        items = []
        for _ in range(min(BATCH, (events - ledger.head_position()) // 3 + 1)):
            number += 1
            items.append(
                {
                    "transfer_id": uuid4(),
                    "from_account": accounts[number % ACCOUNTS],
                    "to_account": accounts[(number * 7 + 1) % ACCOUNTS],
                    "amount": 1 + number % 1000,
                    "currency": "USD",
                }
            )
        ledger.transfer_batch(items)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--database", default="")
    arguments = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="eventledger-bench-")
    url = arguments.database or f"sqlite:///{directory}/ledger.db"
    settings = Settings(database_url=url)
    ledger = build_ledger(settings)
    views = ViewStore.from_settings(settings)
    started = time.perf_counter()
    fill(ledger, arguments.events)
    fill_seconds = time.perf_counter() - started
    rss_after_fill = peak_rss_mib()

    chain = AuditChain(ledger, views=views)
    started = time.perf_counter()
    chained = chain.catch_up()
    chain_seconds = time.perf_counter() - started

    started = time.perf_counter()
    chain_only = verify(ledger, chain, invariants=False)
    chain_only_seconds = time.perf_counter() - started
    rss_after_chain_only = peak_rss_mib()

    started = time.perf_counter()
    full = verify(ledger, chain)
    full_seconds = time.perf_counter() - started
    assert chain_only.ok and full.ok, (chain_only.problems[:3], full.problems[:3])
    events = full.events_checked
    print(
        json.dumps(
            {
                "benchmark": "audit_verify",
                "database": settings.database.kind,
                "events": events,
                "fill_seconds": round(fill_seconds, 2),
                "audit_chain_catch_up": {
                    "events": chained,
                    "seconds": round(chain_seconds, 2),
                    "events_per_second": round(chained / chain_seconds),
                },
                "verify_chain_only": {
                    "seconds": round(chain_only_seconds, 2),
                    "events_per_second": round(events / chain_only_seconds),
                    "target_events_per_second": 100_000,
                },
                "verify_full": {
                    "seconds": round(full_seconds, 2),
                    "events_per_second": round(events / full_seconds),
                },
                "peak_rss_mib": {
                    "after_fill": rss_after_fill,
                    "after_verify_chain_only": rss_after_chain_only,
                    "after_verify_full": peak_rss_mib(),
                },
                "head": full.head,
            },
            indent=2,
        )
    )
    views.close()
    ledger.close()


if __name__ == "__main__":
    main()
