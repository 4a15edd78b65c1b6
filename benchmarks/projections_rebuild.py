"""Rebuild throughput and memory of the projections on SQLite; prints one JSON document.

Method: write a ledger of at least ``--events`` events (1,000 accounts, atomic batches
of deposits and account-to-account transfers, as ``Ledger.transfer_batch`` writes
them) into a SQLite file, then rebuild all projections (balances, statements, totals)
from position 0 into a fresh views file, in a child process so its peak RSS is the
rebuild's alone. With several ``--events`` sizes the same log grows between
rebuilds, to show whether peak RSS grows with the number of events.

    .venv/bin/python benchmarks/projections_rebuild.py                  # 200,000 events
    .venv/bin/python benchmarks/projections_rebuild.py --events 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.ledger import Ledger  # noqa: E402
from domain.money import world_account_id  # noqa: E402
from infrastructure.persistence import build_ledger  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402

ACCOUNTS = 1000
TRANSFERS_PER_BATCH = 1000


def grow(ledger: Ledger, accounts: list[UUID], events: int, rng: random.Random) -> float:
    """Writes batches until the log holds ``events``; returns the seconds it took."""
    started = time.monotonic()
    world = world_account_id("USD")
    while ledger.head_position() < events:
        deposits = [
            dict(from_account=world, to_account=a, amount=rng.randint(100, 10_000), currency="USD")
            for a in rng.choices(accounts, k=TRANSFERS_PER_BATCH // 2)
        ]
        moves = []
        for _ in range(TRANSFERS_PER_BATCH // 2):
            a, b = rng.sample(accounts, 2)
            moves.append(
                dict(from_account=a, to_account=b, amount=rng.randint(1, 50), currency="USD")
            )
        ledger.transfer_batch(deposits)
        ledger.transfer_batch(moves)
    return time.monotonic() - started


def rebuild_in_child(events_url: str, views_path: Path) -> dict[str, object]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{views_path}{suffix}").unlink(missing_ok=True)
    completed = subprocess.run(
        [sys.executable, __file__, "--child", events_url, f"sqlite:///{views_path}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def child(events_url: str, views_url: str) -> None:
    """The rebuild itself, measured from inside the process that does it."""
    from infrastructure.views import ViewStore
    from projections.catalog import select_projections
    from projections.rebuild import rebuild

    settings = Settings(database_url=events_url, views_database_url=views_url)
    ledger = build_ledger(settings)
    store = ViewStore.from_settings(settings)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu_started = time.process_time()
    report = rebuild(ledger, store, select_projections())
    cpu_seconds = time.process_time() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store.close()
    ledger.close()
    print(
        json.dumps(
            {
                "events": report.events,
                "seconds": round(report.seconds, 2),
                "events_per_second": round(report.events_per_second),
                # The machine is shared: CPU time shows the cost without the waiting.
                "cpu_seconds": round(cpu_seconds, 2),
                "events_per_cpu_second": round(report.events / cpu_seconds),
                "peak_rss_mib": round(peak / 1024, 1),
                "rss_before_rebuild_mib": round(rss_before / 1024, 1),
                "swapped": report.swapped,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[200_000])
    parser.add_argument("--directory", help="where the SQLite files go (default: a temp dir)")
    parser.add_argument("--child", nargs=2, metavar=("EVENTS_URL", "VIEWS_URL"), help="internal")
    arguments = parser.parse_args()
    if arguments.child:
        child(*arguments.child)
        return
    directory = Path(arguments.directory or tempfile.mkdtemp(prefix="eventledger-bench-"))
    events_url = f"sqlite:///{directory / 'ledger.db'}"
    ledger = build_ledger(Settings(database_url=events_url))
    rng = random.Random(1)
    # An overdraft line, so that random moves never fail a whole batch.
    accounts = [
        ledger.open_account("USD", f"bench-{i}", overdraft_limit=10**12).id for i in range(ACCOUNTS)
    ]
    runs = []
    for target in sorted(arguments.events):
        write_seconds = grow(ledger, accounts, target, rng)
        run = rebuild_in_child(events_url, directory / "views.db")
        run["log_events"] = ledger.head_position()
        run["write_seconds"] = round(write_seconds, 1)
        runs.append(run)
    ledger.close()
    print(
        json.dumps(
            {
                "benchmark": "projections_rebuild",
                "store": "sqlite",
                "projections": ["balances", "statements", "totals"],
                "accounts": ACCOUNTS,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "target_events_per_second": 40_000,
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
