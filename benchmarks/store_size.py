"""Benchmark: in-process transfers/s with 10k versus 1M events already in the store.

For each size, one fresh store is filled (``transfer_batch``, 1,000 transfers per
call, among ``--accounts`` accounts) until the log holds that many events; the CRUD
baseline's store gets the same number of transfers (a third of the events: each
transfer writes Debited, Credited and Posted). Then ``--repeats`` rounds, each running
every implementation in turn for ``--duration-seconds`` with ``--threads`` threads on
the same filled store (a round adds a few thousand transfers: negligible). Prints one
JSON document with every run, the medians, and the ratio large/small per
implementation (the target is >= 0.8).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    BATCH_SIZE,
    CURRENCY,
    OPENING_BALANCE,
    build,
    emit,
    eventledger_settings,
    exit_on_sigterm,
    fill_events,
    implementations,
    median,
    open_funded_accounts,
    temporary_store,
    transfer_item,
)
from benchmarks.crud_baseline import CrudLedger  # noqa: E402
from benchmarks.inprocess import drive  # noqa: E402


def fill_crud(crud: CrudLedger, accounts: list[Any], transfers: int) -> None:
    made = 0
    while made < transfers:
        size = min(BATCH_SIZE, transfers - made)
        crud.transfer_batch(
            [
                transfer_item(
                    accounts[(made + n) % len(accounts)],
                    accounts[((made + n) * 7 + 1) % len(accounts)],
                    1,
                )
                for n in range(size)
            ]
        )
        made += size


def measure_size(
    kind: str, events: int, arguments: argparse.Namespace, impls: list[str]
) -> dict[str, Any]:
    runs: dict[str, list[float]] = {impl: [] for impl in impls}
    fill_seconds: dict[str, float] = {}
    with temporary_store(kind) as store, temporary_store(kind, "crud.db") as crud_store:
        started = time.perf_counter()
        ledger = build(eventledger_settings(store.url, "per_command"))
        try:
            accounts = open_funded_accounts(ledger, arguments.accounts)
            fill_events(ledger, accounts, events)
            stored_events = ledger.head_position()
        finally:
            ledger.close()
        fill_seconds["eventledger"] = round(time.perf_counter() - started, 1)

        started = time.perf_counter()
        target = str(crud_store.sqlite_path) if kind == "sqlite" else crud_store.url.split("?")[0]
        crud = CrudLedger(kind, target, crud_store.schema)
        try:
            crud_accounts = crud.open_accounts(arguments.accounts, CURRENCY, OPENING_BALANCE)
            fill_crud(crud, crud_accounts, events // 3)
            fill_seconds["crud"] = round(time.perf_counter() - started, 1)
            for _ in range(arguments.repeats):
                for impl in impls:
                    if impl == "crud":
                        result = drive(
                            lambda a, b, amount: crud.transfer(a, b, amount, CURRENCY),
                            crud_accounts, arguments.threads, arguments.duration_seconds,
                            arguments.warmup_seconds,
                        )  # fmt: skip
                    else:
                        mode = impl.removeprefix("eventledger_")
                        ledger = build(eventledger_settings(store.url, mode))
                        try:
                            result = drive(
                                lambda a, b, amount, ledger=ledger: ledger.transfer(
                                    a, b, amount, CURRENCY
                                ),
                                accounts, arguments.threads, arguments.duration_seconds,
                                arguments.warmup_seconds,
                            )  # fmt: skip
                        finally:
                            ledger.close()
                    if result["failures"]:
                        raise RuntimeError(f"{impl} failures: {result['failures']}")
                    runs[impl].append(result["transfers_per_second"])
        finally:
            crud.close()
    return {
        "events_in_store": stored_events,
        "fill_seconds": fill_seconds,
        "transfers_per_second_runs": runs,
        "transfers_per_second_median": {impl: median(values) for impl, values in runs.items()},
    }


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="events: small,large")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--duration-seconds", type=float, default=10.0)
    parser.add_argument(
        "--warmup-seconds", type=float, default=1.0, help="before each run, not counted"
    )
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    small, large = (int(size) for size in arguments.sizes.split(","))
    impls = implementations()
    by_size = {
        str(size): measure_size(arguments.store, size, arguments, impls) for size in (small, large)
    }
    medians = {size: entry["transfers_per_second_median"] for size, entry in by_size.items()}
    emit(
        {
            "benchmark": "store_size",
            "store": arguments.store,
            "threads": arguments.threads,
            "accounts": arguments.accounts,
            "duration_seconds": arguments.duration_seconds,
            "warmup_seconds": arguments.warmup_seconds,
            "sizes": by_size,
            "ratio_large_to_small": {
                impl: round(medians[str(large)][impl] / medians[str(small)][impl], 3)
                for impl in impls
            },
        }
    )


if __name__ == "__main__":
    main()
