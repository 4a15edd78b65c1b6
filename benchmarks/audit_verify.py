"""Benchmark: ``audit verify`` throughput on a ledger of 200,000 events (SQLite).

Prints one JSON document: events/s for the chain alone (hash chain, checkpoints,
positions; nothing decoded) and for the full verify (every invariant, the snapshots
check), the time to chain the log (the ``audit_chain`` projection catching up), the
verify's Python heap peak at half and at full size (equal if memory does not grow
with the log) and the process's peak RSS. The machine is shared: wall-clock rates
are given with the CPU-time rates and the load average, to tell contention apart.

Run: ``.venv/bin/python benchmarks/audit_verify.py [--events 200000] [--database URL]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.ledger import Ledger  # noqa: E402
from infrastructure.persistence import build_ledger  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402
from infrastructure.views import ViewStore  # noqa: E402
from projections.audit import Audit  # noqa: E402

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


def traced_peak_mib(run: Callable[[], object]) -> float:
    """Peak Python heap while ``run`` runs (tracemalloc; slow, so not timed)."""
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return round(peak / 2**20, 2)


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
    audit = Audit(ledger, views)
    chain = audit.chain

    # Half the log first: the verify's heap peak then and at full size shows whether
    # memory grows with the number of events.
    fill(ledger, arguments.events // 2)
    chain.catch_up()
    heap_half = traced_peak_mib(lambda: audit.verify(catch_up=False))
    started = time.perf_counter()
    fill(ledger, arguments.events)
    fill_seconds = time.perf_counter() - started

    started = time.perf_counter()
    chained = chain.catch_up()
    chain_seconds = time.perf_counter() - started

    started, cpu_started = time.perf_counter(), time.process_time()
    chain_only = audit.verify(catch_up=False, invariants=False)
    chain_only_seconds = time.perf_counter() - started
    chain_only_cpu_seconds = time.process_time() - cpu_started
    rss_after_chain_only = peak_rss_mib()

    started, cpu_started = time.perf_counter(), time.process_time()
    full = audit.verify(catch_up=False)
    full_seconds = time.perf_counter() - started
    full_cpu_seconds = time.process_time() - cpu_started
    assert chain_only.ok and full.ok, (chain_only.problems[:3], full.problems[:3])
    heap_full = traced_peak_mib(lambda: audit.verify(catch_up=False))
    events = full.events_checked
    print(
        json.dumps(
            {
                "benchmark": "audit_verify",
                "database": settings.database.kind,
                "events": events,
                "accounts": ACCOUNTS,
                "fill_seconds_second_half": round(fill_seconds, 2),
                "audit_chain_catch_up_second_half": {
                    "events": chained,
                    "seconds": round(chain_seconds, 2),
                    "events_per_second": round(chained / chain_seconds),
                },
                "verify_chain_only": {
                    "seconds": round(chain_only_seconds, 2),
                    "events_per_second": round(events / chain_only_seconds),
                    "cpu_seconds": round(chain_only_cpu_seconds, 2),
                    "events_per_cpu_second": round(events / chain_only_cpu_seconds),
                    "target_events_per_second": 100_000,
                },
                "verify_full": {
                    "checks": full.checks,
                    "seconds": round(full_seconds, 2),
                    "events_per_second": round(events / full_seconds),
                    "cpu_seconds": round(full_cpu_seconds, 2),
                    "events_per_cpu_second": round(events / full_cpu_seconds),
                },
                "verify_full_python_heap_peak_mib": {
                    f"at_{events // 2}_events": heap_half,
                    f"at_{events}_events": heap_full,
                },
                "peak_rss_mib": {
                    "after_verify_chain_only": rss_after_chain_only,
                    "after_verify_full": peak_rss_mib(),
                },
                "load_average_1m": round(os.getloadavg()[0], 2),
                "head": full.head,
            },
            indent=2,
        )
    )
    views.close()
    ledger.close()


if __name__ == "__main__":
    main()
