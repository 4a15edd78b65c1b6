"""Fixtures of the audit tests: a ledger on its own database (a SQLite file in
``tmp_path``, or a PostgreSQL schema of its own, dropped afterwards), its views, the
audit use cases, and ``Tamper``: direct SQL on the stored events and on the chain's
tables, the way an attacker with database access would change them.

Each PostgreSQL test gets a fresh schema because tampering with the session's shared
schema would break every other test's log.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import sql

from domain.errors import AccountFrozen
from domain.ledger import Ledger
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from infrastructure.views import ViewStore, views_database
from projections.audit import Audit
from projections.audit.hashing import StoredText, StoredUuid, link
from tests.support import funded_account

POSTGRES_BASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgres"])
def audit_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}")
        return
    request.getfixturevalue("postgres_url")  # skips when PostgreSQL is unreachable
    schema = f"audit_{secrets.token_hex(6)}"
    yield Settings(database_url=f"{POSTGRES_BASE_URL}?schema={schema}")
    with psycopg.connect(POSTGRES_BASE_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@dataclass
class Audited:
    settings: Settings
    ledger: Ledger
    views: ViewStore
    audit: Audit


@pytest.fixture
def audited(audit_settings: Settings) -> Iterator[Audited]:
    ledger = build_ledger(audit_settings)
    views = ViewStore.from_settings(audit_settings)
    try:
        yield Audited(audit_settings, ledger, views, Audit(ledger, views))
    finally:
        views.close()
        ledger.close()


def populate(ledger: Ledger) -> dict[str, Any]:
    """A small ledger using every kind of event; returns the ids it made."""
    alice = funded_account(ledger, 10_000, name="alice")
    bob = ledger.open_account("USD", "bob", overdraft_limit=500).id
    carol = funded_account(ledger, 700, "EUR", name="carol")
    first = ledger.transfer(alice, bob, 2_500, "USD").id
    ledger.transfer(bob, alice, 2_900, "USD")  # bob goes 400 into his overdraft
    pending = ledger.transfer(alice, bob, 1_000, "USD", pending=True).id
    ledger.post_pending(pending, 600)
    voided = ledger.transfer(alice, bob, 50, "USD", pending=True).id
    ledger.void_pending(voided)
    ledger.reverse(first, 500)
    ledger.withdraw(carol, 200)
    ledger.update_metadata(carol, name="carol b")
    ledger.freeze(bob)
    with pytest.raises(AccountFrozen):
        ledger.transfer(alice, bob, 1, "USD")
    ledger.unfreeze(bob)
    ledger.deposit(bob, 10_000)
    return {"alice": alice, "bob": bob, "carol": carol, "first": first}


class Tamper:
    """Direct SQL on the stored events and the chain's tables of ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.is_sqlite = settings.database.kind == "sqlite"
        database = settings.database
        if self.is_sqlite:
            self.events = sqlite3.connect(database.path, isolation_level=None)
            self.views = sqlite3.connect(views_database(settings).path, isolation_level=None)
            self.table, self.position = "stored_events", "rowid"
        else:
            self.events = psycopg.connect(
                POSTGRES_BASE_URL, autocommit=True, options=f"-c search_path={database.schema}"
            )
            self.views = self.events
            self.table, self.position = "ledger_events", "notification_id"

    def close(self) -> None:
        self.events.close()
        if self.views is not self.events:
            self.views.close()

    def _sql(self, text: str) -> str:
        text = text.format(table=self.table, position=self.position)
        return text if self.is_sqlite else text.replace("?", "%s")

    def run(self, text: str, params: tuple[Any, ...] = ()) -> list[Any]:
        cursor = self.events.execute(self._sql(text), params)
        return list(cursor.fetchall()) if cursor.description else []

    def run_views(self, text: str, params: tuple[Any, ...] = ()) -> list[Any]:
        cursor = self.views.execute(self._sql(text), params)
        return list(cursor.fetchall()) if cursor.description else []

    def positions(self) -> list[int]:
        return [r[0] for r in self.run("SELECT {position} FROM {table} ORDER BY {position}")]

    def position_of(self, topic_suffix: str, nth: int = 0) -> int:
        rows = self.run(
            "SELECT {position} FROM {table} WHERE topic LIKE ? ORDER BY {position}",
            ("%" + topic_suffix,),
        )
        return int(rows[nth][0])

    def state(self, position: int) -> bytes:
        return bytes(self.run("SELECT state FROM {table} WHERE {position} = ?", (position,))[0][0])

    def set_state(self, position: int, state: bytes) -> None:
        self.run("UPDATE {table} SET state = ? WHERE {position} = ?", (state, position))

    def flip_timestamp_digit(self, position: int) -> None:
        """Changes one byte: the last microsecond digit of the event's timestamp."""
        state = bytearray(self.state(position))
        index = state.index(b"+00:00") - 1
        state[index] = ord("1") if state[index] != ord("1") else ord("2")
        self.set_state(position, bytes(state))

    def delete(self, position: int) -> None:
        self.run("DELETE FROM {table} WHERE {position} = ?", (position,))

    def swap(self, first: int, second: int) -> None:
        parking = -1
        for old, new in ((first, parking), (second, first), (parking, second)):
            self.run("UPDATE {table} SET {position} = ? WHERE {position} = ?", (new, old))

    def insert(
        self, position: int, originator_id: UUID, version: int, topic: str, state: bytes
    ) -> None:
        originator: Any = originator_id.hex if self.is_sqlite else originator_id
        self.run(
            "INSERT INTO {table} ({position}, originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?, ?)",
            (position, originator, version, topic, state),
        )

    def forge_credit(self, position: int, account_id: UUID, amount: int) -> None:
        """Appends a Credited event to ``account_id`` that no transfer accounts for."""
        (version,) = self.run(
            "SELECT MAX(originator_version) FROM {table} WHERE originator_id = ?",
            (account_id.hex if self.is_sqlite else account_id,),
        )[0]
        (balance_state,) = self.run(
            "SELECT state FROM {table} WHERE originator_id = ? AND topic LIKE ? "
            "ORDER BY originator_version DESC LIMIT 1",
            (account_id.hex if self.is_sqlite else account_id, "%Credited"),
        )[0]
        balance = int(bytes(balance_state).split(b'"balance_after":')[1].rstrip(b"}"))
        state = (
            b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"},'
            b'"transfer_id":{"_type_":"uuid_hex","_data_":"' + uuid4().hex.encode() + b'"},'
            b'"amount":' + str(amount).encode() + b',"balance_after":'
            + str(balance + amount).encode() + b"}"
        )  # fmt: skip
        self.insert(position, account_id, version + 1, "domain.account:Account.Credited", state)

    def stored_rows(self) -> list[tuple[Any, ...]]:
        """Every event as stored, in position order, in the README's terms: a text
        value as ``("text", its stored bytes)``, a PostgreSQL uuid as ``("uuid", its
        16 bytes)``, a blob as bytes, integers, reals and NULL as themselves."""
        if self.is_sqlite:
            factory = self.events.text_factory
            self.events.text_factory = lambda data: ("text", data)
            try:
                return self.run(
                    "SELECT rowid, originator_id, originator_version, topic, state "
                    "FROM stored_events ORDER BY rowid"
                )
            finally:
                self.events.text_factory = factory
        rows = self.run(
            "SELECT notification_id, uuid_send(originator_id), originator_version, "
            "convert_to(topic, 'UTF8'), state FROM ledger_events ORDER BY notification_id"
        )
        return [(p, ("uuid", bytes(o)), v, ("text", bytes(t)), bytes(s)) for p, o, v, t, s in rows]

    def rechain_from(self, position: int) -> None:
        """Recomputes the chain from the start and rewrites every checkpoint and the
        head from ``position`` on: what an attacker who knows the algorithm does."""
        kinds = {"text": StoredText, "uuid": StoredUuid}
        chain_hash = bytes(32)
        for row_position, *values in self.stored_rows():
            stored = [kinds[v[0]](v[1]) if isinstance(v, tuple) else v for v in values]
            chain_hash = link(chain_hash, row_position, *stored)
            if row_position >= position:
                self.run_views(
                    "UPDATE audit_chain_checkpoints SET hash = ? WHERE position = ?",
                    (chain_hash, row_position),
                )
        self.run_views("UPDATE audit_chain_head SET hash = ?", (chain_hash,))


@pytest.fixture
def tamper(audited: Audited) -> Iterator[Tamper]:
    tamper = Tamper(audited.settings)
    yield tamper
    tamper.close()
