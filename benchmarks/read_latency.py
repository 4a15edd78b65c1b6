"""Benchmark: account read latency at 10, 10,000 and 100,000 events of history.

One SQLite store holds an account per history size; each is built fast with
``transfer_batch`` (1,000 transfers per call, each giving the account one event)
against a sink account. Then, for every account:
- ``cold``: the first ``get_account`` of a fresh Ledger (latest snapshot + the events
  after it: at most 99 with the default snapshot interval of 100);
- ``cached``: ``get_account`` on a Ledger with the default aggregate cache, which still
  asks the store for events newer than the cached version on every load;
- ``uncached``: ``get_account`` with ``aggregate_cache_size=0``, snapshot + tail every
  time.
The CRUD baseline reads one row (its transfers table holds the same transfers).
Latencies: p50/p99 over ``--reads`` reads, in milliseconds. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    BATCH_SIZE,
    CURRENCY,
    OPENING_BALANCE,
    build,
    emit,
    eventledger_settings,
    exit_on_sigterm,
    milliseconds,
    open_funded_accounts,
    percentile,
    temporary_store,
    transfer_item,
)
from benchmarks.crud_baseline import CrudLedger  # noqa: E402


def grow_history(batch: Callable[[list[dict[str, Any]]], Any], account: UUID, sink: UUID,
                 events: int) -> None:  # fmt: skip
    """Alternating 1-cent transfers account -> sink -> account, one event each."""
    remaining = events
    while remaining > 0:
        size = min(BATCH_SIZE, remaining)
        batch(
            [
                transfer_item(account, sink, 1) if n % 2 == 0 else transfer_item(sink, account, 1)
                for n in range(size)
            ]
        )
        remaining -= size


def latencies(read: Callable[[], Any], reads: int) -> dict[str, float]:
    samples = []
    for _ in range(reads):
        started = time.perf_counter()
        read()
        samples.append(time.perf_counter() - started)
    return {
        "p50_ms": milliseconds(percentile(samples, 0.5)),
        "p99_ms": milliseconds(percentile(samples, 0.99)),
    }


def measure_eventledger(url: str, sizes: list[int], reads: int) -> dict[str, Any]:
    mode = "per_command"  # reads do not go through the writer: one mode is enough
    ledger = build(eventledger_settings(url, mode))
    try:
        sink = open_funded_accounts(ledger, 1)[0]
        accounts = {}
        for size in sizes:
            account = open_funded_accounts(ledger, 1)[0]  # Opened + Credited: 2 events
            grow_history(ledger.transfer_batch, account, sink, max(0, size - 2))
            accounts[size] = account
        versions = {size: ledger.get_account(a).version for size, a in accounts.items()}
    finally:
        ledger.close()
    results: dict[str, Any] = {}
    for size, account in accounts.items():
        entry: dict[str, Any] = {"account_events": versions[size]}
        fresh = build(eventledger_settings(url, mode))
        try:
            started = time.perf_counter()
            fresh.get_account(account)
            entry["cold_ms"] = milliseconds(time.perf_counter() - started)
            entry["cached"] = latencies(lambda a=account, f=fresh: f.get_account(a), reads)
        finally:
            fresh.close()
        uncached = build(eventledger_settings(url, mode, aggregate_cache_size=0))
        try:
            entry["uncached"] = latencies(lambda a=account, u=uncached: u.get_account(a), reads)
        finally:
            uncached.close()
        results[str(size)] = entry
    return results


def measure_crud(path: str, sizes: list[int], reads: int) -> dict[str, Any]:
    crud = CrudLedger("sqlite", path)
    try:
        sink, *accounts = crud.open_accounts(1 + len(sizes), CURRENCY, OPENING_BALANCE)
        results: dict[str, Any] = {}
        for size, account in zip(sizes, accounts, strict=True):
            grow_history(crud.transfer_batch, account, sink, size)
            entry = latencies(lambda a=account: crud.get_account(a), reads)
            results[str(size)] = {"account_transfers": size, **entry}
        return results
    finally:
        crud.close()


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,10000,100000", help="events of history")
    parser.add_argument("--reads", type=int, default=500)
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.sizes.split(",")]
    with temporary_store("sqlite") as store:
        eventledger = measure_eventledger(store.url, sizes, arguments.reads)
    with temporary_store("sqlite", "crud.db") as store:
        crud = measure_crud(str(store.sqlite_path), sizes, arguments.reads)
    emit(
        {
            "benchmark": "read_latency",
            "store": "sqlite",
            "reads": arguments.reads,
            "eventledger": eventledger,
            "crud": crud,
        }
    )


if __name__ == "__main__":
    main()
