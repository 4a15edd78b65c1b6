"""Persistence wiring: durable SQLite, explicit environments, encryption and compression.

Method: build Ledgers from Settings the way the service does, then look at the
database files and connections directly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import IntegrityError, OperationalError

from domain.errors import OutcomeUnknown
from domain.ledger import Ledger
from infrastructure.persistence import CommitTracking, build_ledger, ledger_env
from infrastructure.settings import Settings, parse_database_url
from tests.support import funded_account


def test_sqlite_connections_are_wal_with_synchronous_full(tmp_path: Path) -> None:
    ledger = build_ledger(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"))
    try:
        ledger.open_account("USD")
        connection = ledger.factory.datastore.pool.get_connection()  # type: ignore[attr-defined]
        try:
            raw = connection._sqlite_conn
            assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            ledger.factory.datastore.pool.put_connection(connection)  # type: ignore[attr-defined]
    finally:
        ledger.close()


def test_the_environment_is_complete_and_ignores_stray_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stray variable that would switch the library to another store.
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.popo")
    monkeypatch.setenv("LEDGER_PERSISTENCE_MODULE", "eventsourcing.popo")
    path = tmp_path / "l.db"
    ledger = build_ledger(Settings(database_url=f"sqlite:///{path}"))
    try:
        ledger.open_account("USD")
    finally:
        ledger.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0] == 2
    connection.close()


def test_encryption_and_compression_at_rest(tmp_path: Path) -> None:
    path = tmp_path / "secret.db"
    settings = Settings(
        database_url=f"sqlite:///{path}",
        cipher_key=AESCipher.create_key(32),
        compress=True,
    )
    assert "CIPHER_TOPIC" in ledger_env(settings)
    ledger = build_ledger(settings)
    try:
        account = ledger.open_account("USD", "a-very-recognisable-name")
        assert ledger.get_account(account.id).name == "a-very-recognisable-name"
    finally:
        ledger.close()
    files = [path, Path(f"{path}-wal")]
    raw = b"".join(file.read_bytes() for file in files if file.exists())
    assert b"stored_events" in raw  # the file is the store
    assert b"a-very-recognisable-name" not in raw


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", "memory"),
        ("sqlite:///./data/x.db", "sqlite"),
        ("postgresql://u:p%40ss@db.example:6432/ledger?schema=s1", "postgresql"),
    ],
)
def test_database_urls(url: str, kind: str) -> None:
    database = parse_database_url(url)
    assert database.kind == kind
    assert "p@ss" not in repr(database)


@pytest.mark.parametrize("url", ["mysql://x", "sqlite:///", "postgresql://h/db?schema=a;drop"])
def test_bad_database_urls_fail_at_start(url: str) -> None:
    with pytest.raises(ValueError):
        Settings(database_url=url)


@pytest.fixture(params=["sqlite", "postgres"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQLite file or PostgreSQL schema: the two stores with our own recorders."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'l.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


def test_one_save_is_inserted_in_order(sql_url: str) -> None:
    """A batch of 600 transfers is 1,800 events (several INSERT statements' worth on
    SQLite, one arrays insert on PostgreSQL): one position per event, with no gaps, in
    the order saved, a Transfer's event after its postings, and the events read back."""
    ledger = build_ledger(Settings(database_url=sql_url, group_commit=False))
    try:
        payer, payee = funded_account(ledger, 10**6), ledger.open_account("USD").id
        items = [
            {"from_account": payer, "to_account": payee, "amount": 1, "currency": "USD"}
            for _ in range(600)
        ]
        before = ledger.head_position()
        views = ledger.transfer_batch(items)
        after = ledger.head_position()
        notifications = ledger.recorder.select_notifications(before + 1, 2000)
        assert ledger.get_account(payer).balance == 10**6 - 600
    finally:
        ledger.close()
    assert after - before == 600 * 3  # a debit, a credit and a Transfer each
    assert {view.position for view in views} == {after}
    assert [n.id for n in notifications] == list(range(before + 1, after + 1))
    # Saved account by account, then the transfers: the order the save lists them in.
    kinds = [n.topic.rsplit(".", 1)[-1] for n in notifications]
    assert kinds == ["Debited"] * 600 + ["Credited"] * 600 + ["Posted"] * 600
    payer_versions = [n.originator_version for n in notifications if n.originator_id == payer]
    assert payer_versions == sorted(payer_versions) and len(payer_versions) == 600


def test_max_versions_answers_many_aggregates_in_one_query(sql_url: str) -> None:
    """What batches use to trust cached accounts: every account's latest version,
    nothing for an id without events."""
    ledger = build_ledger(Settings(database_url=sql_url))
    try:
        ids = [ledger.open_account("USD").id for _ in range(3)]
        ledger.deposit(ids[0], 5, "USD")
        unknown = uuid4()
        versions = ledger.recorder.max_versions([*ids, unknown])  # type: ignore[attr-defined]
        expected = {account_id: ledger.get_account(account_id).version for account_id in ids}
    finally:
        ledger.close()
    assert versions == expected and expected[ids[0]] == 2


class TestTellingAFailedCommitApart:
    """A store failure before the COMMIT is sent leaves nothing written; after it, the
    outcome is unknown. The recorder tells the two apart (``CommitTracking``)."""

    def test_a_failure_before_the_commit_is_sent_stays_a_store_error(self) -> None:
        tracking = CommitTracking()
        with pytest.raises(OperationalError), tracking.outcome_of_commit():
            raise OperationalError("connection lost before the commit")

    def test_a_failure_after_the_commit_is_sent_is_an_unknown_outcome(self) -> None:
        tracking = CommitTracking()
        with pytest.raises(OutcomeUnknown), tracking.outcome_of_commit():
            tracking.commit_sending()
            raise OperationalError("connection lost during the commit")

    def test_a_conflict_stays_a_conflict_even_after_the_commit_is_sent(self) -> None:
        # The command's retry reads the store and replays its own write if that is
        # what conflicted (the library retries an insert whose COMMIT failed).
        tracking = CommitTracking()
        with pytest.raises(IntegrityError), tracking.outcome_of_commit():
            tracking.commit_sending()
            raise IntegrityError("duplicate key")

    def test_each_insert_starts_unsent(self) -> None:
        tracking = CommitTracking()
        with pytest.raises(OutcomeUnknown), tracking.outcome_of_commit():
            tracking.commit_sending()
            raise OperationalError("lost")
        with pytest.raises(OperationalError), tracking.outcome_of_commit():
            raise OperationalError("refused before the next commit")

    @pytest.fixture
    def failing_commit(self, ledger: Ledger) -> Iterator[Ledger]:
        """Every insert fails right after our last step before the library's COMMIT."""
        recorder: Any = ledger.events.recorder
        step = next(
            name
            for name in ("_insert_events", "_fetch_ids_after_insert_events")
            if name in type(recorder).__dict__
        )
        original = getattr(recorder, step)

        def fail_after(*args: Any, **kwargs: Any) -> Any:
            original(*args, **kwargs)
            raise OperationalError("injected: the COMMIT failed")

        setattr(recorder, step, fail_after)
        yield ledger
        setattr(recorder, step, original)

    @pytest.mark.parametrize("store", ["sqlite"], indirect=True)
    def test_on_sqlite_a_failed_commit_answers_outcome_unknown(
        self, failing_commit: Ledger
    ) -> None:
        account_id = uuid4()
        with pytest.raises(OutcomeUnknown):
            failing_commit.open_account("USD", account_id=account_id)
        assert failing_commit.find(account_id) is None  # SQLite rolled it back

    @pytest.mark.parametrize("store", ["postgres"], indirect=True)
    def test_on_postgresql_the_library_retries_and_the_command_replays(
        self, failing_commit: Ledger
    ) -> None:
        # The library's insert swallows the error until its transaction has committed,
        # then retries the insert; the retry conflicts, and the command reads the
        # store and answers its own write as a replay: a definite, true answer.
        account_id = uuid4()
        opened = failing_commit.open_account("USD", account_id=account_id)
        assert opened.replayed and failing_commit.get_account(account_id).currency == "USD"
