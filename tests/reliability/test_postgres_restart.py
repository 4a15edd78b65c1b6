"""PostgreSQL stopped in immediate mode (a crash: no checkpoint, no clean shutdown) and
restarted while clients write.

Goal: an acknowledged transfer survives a database crash; one whose outcome the
client could not learn (the connection died under it) is there at most once; the
service recovers by itself, without a restart of its own.

Method: four threads make random transfers among six accounts through one Ledger
(group commit on) on a schema of this test's own. After a second of writing, the
cluster is stopped with ``pg_ctlcluster ... stop -m immediate``, left down for a
second, started again, and the writers go on for two more seconds. Then a new
Ledger checks every acknowledged transfer is posted, every refused one is recorded
with its code, every transfer among the accounts was sent by someone, the balances
and the world account sum to 0, and writes succeeded after the restart.

It needs to control the local cluster (root with ``pg_ctlcluster``, as on the
development machines and in CI); elsewhere it skips, except under ``CI=true``.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import PersistenceError

from domain.errors import LedgerError
from domain.ledger import Ledger
from domain.transfer import Transfer
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from tests.support import funded_account, wait_until

WRITERS = 4
# `make soak` crashes the cluster more times through PG_RESTART_ROUNDS.
ROUNDS = int(os.environ.get("PG_RESTART_ROUNDS", "1"))
WRITE_BEFORE_CRASH_SECONDS = 1.0
DOWN_SECONDS = 1.0
WRITE_AFTER_RESTART_SECONDS = 2.0
READY_TIMEOUT_SECONDS = 60


def _cluster_version() -> str | None:
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        return None
    versions = sorted(Path("/etc/postgresql").glob("*/main"))
    return versions[-1].parent.name if versions else None


def _pg_ctl(version: str, *args: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", *args],
        check=True, capture_output=True, timeout=READY_TIMEOUT_SECONDS,
    )  # fmt: skip


def _wait_until_ready() -> None:
    def ready() -> bool:
        probe = ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]
        return subprocess.run(probe, timeout=10).returncode == 0

    wait_until(ready, READY_TIMEOUT_SECONDS, describe=lambda: "PostgreSQL did not come back")


def test_acknowledged_transfers_survive_an_immediate_stop(fresh_postgres_url: str) -> None:
    version = _cluster_version()
    if version is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must be able to stop and start the local PostgreSQL cluster")
        pytest.skip("needs root and pg_ctlcluster to crash the local cluster")
    settings = Settings(database_url=fresh_postgres_url, postgres_connect_timeout_seconds=2)
    ledger = build_ledger(settings)
    accounts = [funded_account(ledger, 10_000) for _ in range(6)]
    outcomes: dict[UUID, str] = {}  # transfer id -> "ok", a refusal code, or "unknown"
    acknowledged_after_restart = 0
    restarted = threading.Event()
    stop = threading.Event()

    def write(seed: int) -> None:
        nonlocal acknowledged_after_restart
        chooser = random.Random(seed)
        while not stop.is_set():
            payer, payee = chooser.sample(accounts, 2)
            transfer_id = uuid4()
            try:
                ledger.transfer(payer, payee, chooser.randint(1, 3_000), "USD",
                                transfer_id=transfer_id)  # fmt: skip
                outcomes[transfer_id] = "ok"
                if restarted.is_set():
                    acknowledged_after_restart += 1
            except LedgerError as error:
                outcomes[transfer_id] = error.code
            except PersistenceError:
                outcomes[transfer_id] = "unknown"  # the database went away under it
                time.sleep(0.05)

    threads = [threading.Thread(target=write, args=(seed,)) for seed in range(WRITERS)]
    try:
        for thread in threads:
            thread.start()
        for _ in range(ROUNDS):
            time.sleep(WRITE_BEFORE_CRASH_SECONDS)
            _pg_ctl(version, "stop", "-m", "immediate")
            time.sleep(DOWN_SECONDS)
            _pg_ctl(version, "start")
            _wait_until_ready()
            restarted.set()
        time.sleep(WRITE_AFTER_RESTART_SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        _wait_until_ready()  # whatever happened, leave the cluster running
        ledger.close()

    # "unknown" may be 0: the store's connections wait out a short outage (connect
    # timeout, pre-ping) and the writer retries, so callers often never notice.
    counts = Counter(outcomes.values())
    assert counts["ok"] > 0, counts
    assert acknowledged_after_restart > 0, "the service did not recover by itself"
    checker = build_ledger(settings.model_copy(update={"aggregate_cache_size": 0}))
    try:
        posted = _posted_among(checker, set(accounts))
        for transfer_id, outcome in outcomes.items():
            if outcome == "ok":
                assert checker.get_transfer(transfer_id).status == "posted"
            elif outcome != "unknown":
                recorded = checker.get_transfer(transfer_id)
                assert (recorded.status, recorded.error_code) == ("rejected", outcome)
        assert posted <= set(outcomes), "a transfer nobody sent"
        # A schema of its own: all its USD came from its world account.
        balances = sum(checker.get_account(account).balance for account in accounts)
        assert balances + checker.world_account("USD").balance == 0
        assert balances == 60_000
    finally:
        checker.close()


def _posted_among(ledger: Ledger, accounts: set[UUID]) -> set[UUID]:
    topic = f"{Transfer.Posted.__module__}:{Transfer.Posted.__qualname__}"
    posted, position = set(), 0
    while True:
        page = ledger.recorder.select_notifications(position + 1, 1_000, topics=[topic])
        if not page:
            return posted
        for notification in page:
            event = ledger.mapper.to_domain_event(notification)
            if {event.debit_account_id, event.credit_account_id} <= accounts:
                posted.add(event.originator_id)
        position = page[-1].id
