"""Benchmark: in-process transfers/s from N threads, for one implementation and store.

Opens ``--accounts`` funded accounts in a fresh store, then N threads each post
single transfers (random pairs of those accounts, amounts 1..100) until the duration
is over. Every transfer is its own durable command. Prints one JSON document:
transfers/s, how many failed (by exception class), and the conflict retries.

Run: ``.venv/bin/python benchmarks/inprocess.py --impl eventledger_per_command
--store sqlite --threads 16 --duration-seconds 10``
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    CURRENCY,
    OPENING_BALANCE,
    build,
    emit,
    eventledger_settings,
    exit_on_sigterm,
    open_funded_accounts,
    temporary_store,
)
from benchmarks.crud_baseline import CrudLedger  # noqa: E402

Transfer = Callable[[UUID, UUID, int], Any]


@contextmanager
def implementation(
    name: str, kind: str, url: str, schema: str, accounts: int
) -> Iterator[tuple[Transfer, list[UUID], Callable[[], int]]]:
    """Yields (transfer function, funded account ids, conflict retry counter)."""
    if name == "crud":
        target = url.split("?")[0] if kind == "postgresql" else url[len("sqlite:///") :]
        crud = CrudLedger(kind, target, schema)
        try:
            ids = crud.open_accounts(accounts, CURRENCY, OPENING_BALANCE)
            yield (lambda a, b, amount: crud.transfer(a, b, amount, CURRENCY)), ids, lambda: 0
        finally:
            crud.close()
        return
    mode = name.removeprefix("eventledger_")
    ledger = build(eventledger_settings(url, mode))
    try:
        ids = open_funded_accounts(ledger, accounts)
        ledger.conflict_retries = 0
        yield (
            (lambda a, b, amount: ledger.transfer(a, b, amount, CURRENCY)),
            ids,
            lambda: ledger.conflict_retries,
        )
    finally:
        ledger.close()


def drive(
    transfer: Transfer, accounts: list[UUID], threads: int, duration_seconds: float
) -> dict[str, Any]:
    """Runs ``threads`` posting transfers until the duration is over."""
    done = [0] * threads
    failures: Counter[str] = Counter()
    failures_lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def work(number: int) -> None:
        chooser = random.Random(number)
        start.wait()
        while time.perf_counter() < deadline[0]:
            debit, credit = chooser.sample(accounts, 2)
            try:
                transfer(debit, credit, chooser.randint(1, 100))
                done[number] += 1
            except Exception as error:  # counted and reported, never hidden
                with failures_lock:
                    failures[type(error).__name__] += 1

    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    deadline[0] = time.perf_counter() + duration_seconds
    started = time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join(duration_seconds + 120)
    elapsed = time.perf_counter() - started
    return {
        "transfers": sum(done),
        "seconds": round(elapsed, 3),
        "transfers_per_second": round(sum(done) / elapsed, 1),
        "failures": dict(failures),
    }


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", required=True)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--duration-seconds", type=float, default=10.0)
    parser.add_argument("--accounts", type=int, default=1000)
    arguments = parser.parse_args()
    with (
        temporary_store(arguments.store) as store,
        implementation(arguments.impl, store.kind, store.url, store.schema, arguments.accounts) as (
            transfer,
            accounts,
            retries,
        ),
    ):
        result = drive(transfer, accounts, arguments.threads, arguments.duration_seconds)
        result["conflict_retries"] = retries()
    emit(
        {
            "benchmark": "inprocess_transfers",
            "impl": arguments.impl,
            "store": arguments.store,
            "threads": arguments.threads,
            "accounts": arguments.accounts,
            **result,
        }
    )


if __name__ == "__main__":
    main()
