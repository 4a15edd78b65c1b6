"""Benchmark: in-process transfers/s from 1 and 16 threads, every implementation.

Opens ``--accounts`` funded accounts in a fresh store (one for eventledger, shared by
its two modes, one for the CRUD baseline), then, in ``--repeats`` interleaved rounds,
N threads each post single transfers (random pairs of those accounts, amounts 1..100)
until the duration is over. Every transfer is its own durable command, answered only
once committed. Prints one JSON document: per implementation and thread count, the
median transfers/s, every run, failures and conflict retries.

Run: ``.venv/bin/python benchmarks/inprocess.py --store postgresql --threads 1,16``
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    CURRENCY,
    OPENING_BALANCE,
    Store,
    build,
    emit,
    eventledger_settings,
    exit_on_sigterm,
    implementations,
    median,
    open_funded_accounts,
    temporary_store,
)
from benchmarks.crud_baseline import CrudLedger  # noqa: E402

Transfer = Callable[[UUID, UUID, int], Any]


def drive(
    transfer: Transfer,
    accounts: list[UUID],
    threads: int,
    duration_seconds: float,
    warmup_seconds: float = 0.0,
) -> dict[str, Any]:
    """Runs ``threads`` posting transfers for the warm-up, then for the duration;
    only the transfers answered within the duration count.

    The warm-up (the same for every implementation) lets a fresh process load the
    accounts it will use and fill its caches, so that the figure is the steady state
    rather than the start, which a long-running server pays once.
    """
    done = [0] * threads
    failures: Counter[str] = Counter()
    failures_lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    window = [0.0, 0.0]  # measured from, until

    def work(number: int) -> None:
        chooser = random.Random(number)
        start.wait()
        while (now := time.perf_counter()) < window[1]:
            debit, credit = chooser.sample(accounts, 2)
            try:
                transfer(debit, credit, chooser.randint(1, 100))
                if now >= window[0]:
                    done[number] += 1
            except Exception as error:  # counted and reported, never hidden
                if now >= window[0]:
                    with failures_lock:
                        failures[type(error).__name__] += 1

    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    now = time.perf_counter()
    window[:] = [now + warmup_seconds, now + warmup_seconds + duration_seconds]
    start.wait()
    for worker in workers:
        worker.join(warmup_seconds + duration_seconds + 120)
    elapsed = time.perf_counter() - window[0]
    return {
        "transfers": sum(done),
        "seconds": round(elapsed, 3),
        "transfers_per_second": round(sum(done) / elapsed, 1),
        "failures": dict(failures),
    }


def measure(arguments: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds: every round runs each thread count for each implementation,
    so a change in the machine's load hits them all alike. The two eventledger modes
    share one store (same event format), each run with a fresh Ledger."""
    impls = arguments.impls.split(",") if arguments.impls else implementations()
    thread_counts = [int(n) for n in arguments.threads.split(",")]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        impl: {str(n): [] for n in thread_counts} for impl in impls
    }
    kind = arguments.store
    with temporary_store(kind) as store, temporary_store(kind, "crud.db") as crud_store:
        accounts = prepare_eventledger(store.url, arguments.accounts)
        crud = CrudLedger(kind, crud_target(crud_store), crud_store.schema)
        try:
            crud_accounts = crud.open_accounts(arguments.accounts, CURRENCY, OPENING_BALANCE)
            for _ in range(arguments.repeats):
                for threads in thread_counts:
                    for impl in impls:
                        if impl == "crud":
                            result = drive(
                                lambda a, b, amount: crud.transfer(a, b, amount, CURRENCY),
                                crud_accounts, threads, arguments.duration_seconds,
                                arguments.warmup_seconds,
                            )  # fmt: skip
                        else:
                            result = drive_eventledger(
                                store.url, impl, accounts, threads,
                                arguments.duration_seconds, arguments.warmup_seconds,
                            )  # fmt: skip
                        runs[impl][str(threads)].append(result)
        finally:
            crud.close()
    return {
        impl: {
            threads: {
                "transfers_per_second": median([r["transfers_per_second"] for r in results]),
                "runs": [r["transfers_per_second"] for r in results],
                "failures": sum(sum(r["failures"].values()) for r in results),
                "conflict_retries": sum(r.get("conflict_retries", 0) for r in results),
            }
            for threads, results in by_threads.items()
        }
        for impl, by_threads in runs.items()
    }


def prepare_eventledger(url: str, accounts: int) -> list[UUID]:
    ledger = build(eventledger_settings(url, "per_command"))
    try:
        return open_funded_accounts(ledger, accounts)
    finally:
        ledger.close()


def crud_target(store: Store) -> str:
    return str(store.sqlite_path) if store.kind == "sqlite" else store.url.split("?")[0]


def drive_eventledger(
    url: str,
    impl: str,
    accounts: list[UUID],
    threads: int,
    duration_seconds: float,
    warmup_seconds: float = 0.0,
) -> dict[str, Any]:
    ledger = build(eventledger_settings(url, impl.removeprefix("eventledger_")))
    try:
        result = drive(
            lambda a, b, amount: ledger.transfer(a, b, amount, CURRENCY),
            accounts, threads, duration_seconds, warmup_seconds,
        )  # fmt: skip
        result["conflict_retries"] = ledger.conflict_retries
        return result
    finally:
        ledger.close()


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--impls", default="", help="comma-separated; default: all available")
    parser.add_argument("--threads", default="1,16", help="comma-separated thread counts")
    parser.add_argument("--duration-seconds", type=float, default=5.0)
    parser.add_argument(
        "--warmup-seconds", type=float, default=1.0, help="before each run, not counted"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=1000)
    arguments = parser.parse_args()
    emit(
        {
            "benchmark": "inprocess_transfers",
            "store": arguments.store,
            "accounts": arguments.accounts,
            "duration_seconds": arguments.duration_seconds,
            "warmup_seconds": arguments.warmup_seconds,
            "repeats": arguments.repeats,
            "results": measure(arguments),
        }
    )


if __name__ == "__main__":
    main()
