"""``eventledger projections run`` survives SIGKILL at any moment, exactly once.

Method: a writer thread streams transfers (single, atomic batches, pending then
posted) into the store while a ``projections run`` subprocess is started and killed
with SIGKILL 20 times (8 on PostgreSQL), each time 0.1-0.5 s after it reports it is
following. Then the views are caught up and compared with a from-scratch rebuild and
with every account aggregate. A batch applied twice would break the statements' primary key or
double a total; a batch lost would leave a balance behind.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from domain.errors import LedgerError
from domain.ledger import Ledger
from domain.money import world_account_id
from infrastructure.settings import Settings
from infrastructure.views import ViewStore
from projections.catalog import select_projections
from projections.follower import follower_for
from projections.rebuild import rebuild
from tests.projections.conftest import assert_rows_match_aggregates, dump
from tests.support import wait_until

# At least 20 on SQLite; fewer on PostgreSQL, whose runs start slower (time budget).
KILLS = {"sqlite": 20, "postgres": 8}
# ``eventledger projections run`` without importing the HTTP stack: the same Typer app.
RUN_COMMAND = [sys.executable, "-m", "api.cli_projections", "run"]
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 30


def write_until(ledger: Ledger, stop: threading.Event, errors: list[BaseException]) -> None:
    rng = random.Random(13)
    accounts = [ledger.open_account("USD").id for _ in range(8)]
    try:
        while not stop.is_set():
            ledger.transfer_batch(
                [
                    dict(
                        from_account=world_account_id("USD"),
                        to_account=a,
                        amount=rng.randint(1, 99),
                        currency="USD",
                    )
                    for a in rng.sample(accounts, 3)
                ]
            )
            a, b = rng.sample(accounts, 2)
            try:
                ledger.transfer(a, b, rng.randint(1, 50), "USD")
                held = ledger.transfer(b, a, rng.randint(1, 20), "USD", pending=True)
                ledger.post_pending(held.id)
            except LedgerError:
                pass  # an insufficient-funds rejection is an event too
            time.sleep(0.02)
    except BaseException as error:  # noqa: BLE001 - reported by the test
        errors.append(error)


def start_runner(settings: Settings) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "EVENTLEDGER_DATABASE_URL": settings.database_url,
        "EVENTLEDGER_PROJECTIONS_BATCH_SIZE": "20",
        "EVENTLEDGER_PROJECTIONS_POLL_INTERVAL_SECONDS": "0.05",
    }
    return subprocess.Popen(
        RUN_COMMAND,
        env=environment,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_until_following(process: subprocess.Popen[bytes]) -> None:
    assert process.stderr is not None
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    line = b""
    while b"following" not in line:
        assert time.monotonic() < deadline and process.poll() is None, line
        line = process.stderr.readline()


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_sigkill_at_random_moments_loses_and_repeats_nothing(
    store: str, settings: Settings, ledger: Ledger, views: ViewStore
) -> None:
    kills = KILLS[store]
    rng = random.Random(2024)
    stop, errors = threading.Event(), []
    writer = threading.Thread(target=write_until, args=(ledger, stop, errors))
    writer.start()
    positions = []
    try:
        for _ in range(kills):
            process = start_runner(settings)
            try:
                wait_until_following(process)
                time.sleep(rng.uniform(0.1, 0.5))
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                assert process.stderr is not None
                process.stderr.close()
            assert process.returncode == -signal.SIGKILL
            positions.append(min(views.positions().get(p.name, 0) for p in select_projections()))
    finally:
        stop.set()
        writer.join(30)
    assert not errors
    assert len(set(positions)) > kills // 2, positions  # the runs made progress
    follower_for(ledger, views, select_projections()).catch_up()
    assert views.positions()["balances"] == ledger.head_position()
    assert assert_rows_match_aggregates(ledger, views) == 9
    live = dump(views)
    assert rebuild(ledger, views, select_projections()).swapped
    assert dump(views) == live


@pytest.mark.parametrize("store", ["sqlite"])
def test_a_rebuild_killed_midway_resumes_where_it_stopped(
    settings: Settings, ledger: Ledger, views: ViewStore
) -> None:
    accounts = [ledger.open_account("USD").id for _ in range(50)]
    for _ in range(6):
        ledger.transfer_batch(
            [
                dict(from_account=world_account_id("USD"), to_account=a, amount=3, currency="USD")
                for a in accounts * 4
            ]
        )
    follower_for(ledger, views, select_projections()).catch_up()
    live = dump(views)
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli_projections", "rebuild", "--batch-size", "20"],
        env={**os.environ, "EVENTLEDGER_DATABASE_URL": settings.database_url},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def rebuilding() -> bool:
            assert process.poll() is None, "the rebuild exited before it began"
            return views.positions().get("balances:rebuild", 0) > 0

        wait_until(rebuilding, START_TIMEOUT_SECONDS)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    killed_at = views.positions()["balances:rebuild"]
    assert 0 < killed_at < ledger.head_position()
    assert dump(views) == live  # nothing was swapped in
    report = rebuild(ledger, views, select_projections())
    assert report.swapped and report.resumed_from >= killed_at
    assert dump(views) == live
    assert "balances:rebuild" not in views.positions()
