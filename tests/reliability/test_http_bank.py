"""The bank workload over HTTP with process faults (see ``http_bank`` for the harness
and ``http_bank_checker`` for the checker).

1. SQLite: one ``eventledger serve``, killed with ``kill -9`` every few seconds and
   restarted on the same file, while clients transfer and read.
2. PostgreSQL: two servers on one fresh schema; one is killed at random moments and
   restarted while the other carries on, and the other is paused with SIGSTOP/SIGCONT.
   PostgreSQL itself is never stopped (other sessions use it).
3. The checker against a hand-made history with a lie of each kind.
4. A planted bug: a server that answers 201 to one transfer in seven without
   committing it (``planted_http_app``); the checker must report those as lost.

Each runs ``HTTP_BANK_SECONDS`` (default 15) of workload; ``make soak`` sets it to
minutes. The figures of each run are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import sql

from domain.errors import LedgerError
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from tests.conftest import POSTGRES_BASE_URL
from tests.reliability.http_bank import (
    Bank,
    History,
    Operation,
    kill_and_restart,
    open_bank,
    pause_and_kill,
    run_workload,
)
from tests.reliability.http_bank_checker import check
from tests.reliability.http_bank_servers import ServerProcess, servers_running

SECONDS = float(os.environ.get("HTTP_BANK_SECONDS", "15"))
SOAK = SECONDS > 60
CLIENTS = 6
FUNDS = [10_000] * 6 + [0, 0]
LIMITS = [0, 0, 0, 0, 2_000, 5_000, 0, 1_000]
# Faults: a kill (or pause) every 1.5-3 s after the last restart, at most this many.
FAULT_EVERY_SECONDS = (1.5, 3.0)
FAULTS_MAX = 200 if SOAK else 5


def report_line(name: str, report: object) -> str:
    summary = report.summary  # type: ignore[attr-defined]
    return (
        f"\n{name}: {summary} unknown applied "
        f"{report.unknown_applied}, lost {len(report.lost)}, "  # type: ignore[attr-defined]
        f"doubled {len(report.doubled)}, bad reads {len(report.bad_reads)}, "  # type: ignore[attr-defined]
        f"audit ok {report.audit.get('ok')}"  # type: ignore[attr-defined]
    )


def test_sqlite_server_killed_every_few_seconds(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'bank.db'}"
    server = ServerProcess(tmp_path, database_url)
    history = History()
    with servers_running([server]):
        bank = open_bank(server.url, FUNDS, LIMITS)
        faults = kill_and_restart(server, history, FAULT_EVERY_SECONDS, FAULTS_MAX)
        run_workload([server], bank, history, SECONDS, CLIENTS, faults, seed=1)
    report = check(bank, history, database_url)
    print(report_line("sqlite kill -9", report))
    assert report.problems() == {}
    assert history.kills >= 2
    assert report.summary["acknowledged"] > 50
    assert report.summary["rejected"] > 0 and report.summary["reads"] > 10


@pytest.fixture
def bank_schema_url(postgres_schema: str) -> Iterator[str]:
    schema = f"{postgres_schema}_bank_{secrets.token_hex(3)}"
    yield f"{POSTGRES_BASE_URL}?schema={schema}"
    with psycopg.connect(
        host="127.0.0.1", port=5432, user="postgres", dbname="test", autocommit=True
    ) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def test_two_postgres_servers_one_killed_one_paused(tmp_path: Path, bank_schema_url: str) -> None:
    steady = ServerProcess(tmp_path, bank_schema_url)
    # The killed one runs no projection follower: the steady one keeps the views.
    victim = ServerProcess(tmp_path, bank_schema_url, ("--no-projections",))
    history = History()
    with servers_running([steady, victim]):
        bank = open_bank(steady.url, FUNDS, LIMITS)
        faults = pause_and_kill(steady, victim, history, FAULT_EVERY_SECONDS, FAULTS_MAX, seed=2)
        run_workload([steady, victim], bank, history, SECONDS, CLIENTS, faults, seed=2)
    report = check(bank, history, bank_schema_url)
    print(report_line("postgres 2 servers", report))
    assert report.problems() == {}
    assert history.kills + history.pauses >= 2
    assert report.summary["acknowledged"] > 50


def test_the_checker_catches_a_server_that_acknowledges_without_committing(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'planted.db'}"
    server = ServerProcess(tmp_path, database_url, app="tests.reliability.planted_http_app:create")
    history = History()
    with servers_running([server]):
        bank = open_bank(server.url, FUNDS, LIMITS)
        run_workload([server], bank, history, min(SECONDS, 5.0), 3, seed=3)
    report = check(bank, history, database_url)
    print(report_line("planted bug", report))
    problems = report.problems()
    assert "lost" in problems, problems
    # About one acknowledged transfer in seven was never committed.
    assert len(report.lost) >= report.summary["acknowledged"] // 20


def test_the_checker_flags_each_kind_of_violation(tmp_path: Path) -> None:
    """The checker against a hand-made history over a real SQLite store: first a
    truthful one (no problem), then one with a lie of each kind."""
    database_url = f"sqlite:///{tmp_path / 'checker.db'}"
    ledger = build_ledger(Settings(database_url=database_url))
    try:
        alice = ledger.open_account("USD").id
        bob = ledger.open_account("USD").id
        setup = {ledger.deposit(alice, 1_000).id}

        def transfer(payer: UUID, payee: UUID, amount: int) -> tuple[UUID, str]:
            transfer_id = uuid4()
            try:
                ledger.transfer(payer, payee, amount, "USD", transfer_id=transfer_id)
            except LedgerError as error:
                return transfer_id, error.code
            return transfer_id, "201"

        posted, rejected, other_rejected, applied, phantom = (
            transfer(alice, bob, 100), transfer(bob, alice, 5_000), transfer(bob, alice, 6_000),
            transfer(alice, bob, 50), transfer(alice, bob, 10),
        )  # fmt: skip
    finally:
        ledger.close()
    bank = Bank([alice, bob], {alice: 0, bob: 0}, 1_000, setup, 0)

    def op(sent: tuple[UUID, str], payer: UUID, payee: UUID, amount: int, outcome: str) -> Any:
        return Operation(
            "transfer", 0.0, outcome=outcome, code=sent[1], transfer_id=sent[0],
            from_account=payer, to_account=payee, amount=amount,
        )  # fmt: skip

    truthful = History()
    for operation in (
        op(posted, alice, bob, 100, "ok"),
        op(rejected, bob, alice, 5_000, "rejected"),
        op(other_rejected, bob, alice, 6_000, "rejected"),
        op(applied, alice, bob, 50, "unknown"),
        op(phantom, alice, bob, 10, "ok"),
        Operation("read", 0.0, outcome="ok", balances={alice: 840, bob: 160}),
    ):
        truthful.add(operation)
    assert check(bank, truthful, database_url).problems() == {}

    lies = History()
    for operation in (
        op(posted, alice, bob, 100, "ok"),
        op((uuid4(), "201"), alice, bob, 7, "ok"),  # acknowledged, never stored
        op(rejected, bob, alice, 5_000, "rejected"),
        op((other_rejected[0], "account_frozen"), bob, alice, 6_000, "rejected"),
        op(applied, alice, bob, 50, "failed"),  # "nothing was written", yet it was
        Operation("read", 0.0, outcome="ok", balances={alice: 840, bob: 150}),
        Operation("read", 0.0, outcome="ok", balances={alice: -10, bob: 1_010}),
    ):  # and the phantom is in no history
        lies.add(operation)
    report = check(bank, lies, database_url)
    assert set(report.problems()) == {
        "lost", "wrong_rejections", "applied_failures", "phantoms", "bad_reads",
    }  # fmt: skip
    assert len(report.lost) == 1 and report.phantoms == [phantom[0]]
    assert len(report.bad_reads) == 2
