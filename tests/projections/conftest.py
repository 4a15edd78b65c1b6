"""Fixtures for the projection tests: each test gets its own log and its own views.

Positions are log-wide, so a projection test cannot share a PostgreSQL schema with
other tests the way the ledger tests do: here every PostgreSQL test gets a fresh
schema (dropped at the end), and every SQLite test a fresh file in ``tmp_path``.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from domain.errors import LedgerError
from domain.ledger import Ledger
from domain.money import world_account_id
from infrastructure.settings import Settings
from infrastructure.views import ViewStore
from projections.catalog import all_projections
from tests.conftest import POSTGRES_BASE_URL, database_url_for
from tests.support import funded_account

LIVE_TABLES = ("balances", "statements", "statements_pending", "totals", "totals_pending")
# What a balances row shares with the account aggregate.
ACCOUNT_FIELDS = (
    "currency", "name", "status", "balance", "available_balance", "pending_debits",
    "pending_credits", "overdraft_limit", "metadata", "version",
)  # fmt: skip


@pytest.fixture
def settings(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    if store != "postgres":
        yield Settings(database_url=database_url_for(store, tmp_path, request))
        return
    schema = f"{request.getfixturevalue('postgres_schema')}_{secrets.token_hex(3)}"
    yield Settings(database_url=f"{POSTGRES_BASE_URL}?schema={schema}")
    with psycopg.connect(POSTGRES_BASE_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@pytest.fixture
def views(settings: Settings) -> Iterator[ViewStore]:
    store = ViewStore.from_settings(settings)
    yield store
    store.close()


def dump(views: ViewStore, tables: tuple[str, ...] = LIVE_TABLES) -> dict[str, list[Any]]:
    """Every row of the live tables, sorted, for comparing two builds of the views."""
    with views.read() as tx:
        return {
            table: sorted(map(tuple, tx.fetchall(f"SELECT * FROM {table}"))) for table in tables
        }


def assert_rows_match_aggregates(ledger: Ledger, views: ViewStore) -> int:
    """Every balances row equals its account aggregate; returns the number of rows."""
    from projections.queries import ReadModels

    read_models = ReadModels(views, ledger.head_position)
    rows, cursor = [], None
    while True:
        page = read_models.list_accounts(cursor=cursor, limit=1000)
        rows += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    for row in rows:
        account = ledger.get_account(row.id)
        for field in ACCOUNT_FIELDS:
            assert getattr(row, field) == getattr(account, field), (row.id, field)
    return len(rows)


def names() -> list[str]:
    return list(all_projections())


class Workload:
    """Opens accounts and moves money in every way the ledger can, reproducibly."""

    def __init__(self, ledger: Ledger, seed: int = 1, accounts: int = 6) -> None:
        self.ledger = ledger
        self.random = random.Random(seed)
        self.accounts: list[UUID] = []
        self.pending: list[UUID] = []
        for index in range(accounts):
            currency = "USD" if index % 3 else "EUR"
            fields = {"name": f"acct-{index}", "metadata": {"n": str(index)}}
            opening = f"opening {index}"
            self.accounts.append(funded_account(ledger, 10_000, currency, opening, **fields))

    def step(self) -> int:
        """One random command; returns the log position after it."""
        ledger, pick = self.ledger, self.random.random()
        a, b = self.random.sample(self.accounts, 2)
        try:
            if pick < 0.45:
                account = ledger.get_account(a)
                other = next(
                    x
                    for x in self.accounts
                    if x != a and ledger.get_account(x).currency == account.currency
                )
                return self._position(
                    ledger.transfer(a, other, self._amount(), account.currency, "pay")
                )
            if pick < 0.6:
                currency = ledger.get_account(a).currency
                items = [
                    dict(
                        from_account=world_account_id(currency),
                        to_account=x,
                        amount=self._amount(),
                        currency=currency,
                        description=f"batch {i}",
                    )
                    for i, x in enumerate(
                        y for y in self.accounts if ledger.get_account(y).currency == currency
                    )
                ]
                return self._position(ledger.transfer_batch(items)[-1])
            if pick < 0.7:
                currency = ledger.get_account(a).currency
                view = ledger.transfer(
                    a, world_account_id(currency), self._amount(), currency, "hold", pending=True
                )
                self.pending.append(view.id)
                return self._position(view)
            if pick < 0.8 and self.pending:
                transfer_id = self.pending.pop(0)
                if self.random.random() < 0.6:
                    return self._position(ledger.post_pending(transfer_id))
                return self._position(ledger.void_pending(transfer_id))
            if pick < 0.85:
                return self._position(ledger.withdraw(a, 10**9, "too much"))  # rejected
            if pick < 0.9:
                return self._position(
                    ledger.update_metadata(a, name=f"renamed-{self.random.randint(0, 99)}")
                )
            return self._position(ledger.deposit(a, self._amount(), "top-up"))
        except LedgerError:
            return ledger.head_position()

    def _amount(self) -> int:
        return self.random.randint(1, 500)

    def _position(self, view: Any) -> int:
        return view.position if view.position is not None else self.ledger.head_position()


@pytest.fixture
def workload(ledger: Ledger) -> Callable[..., Workload]:
    return lambda **kwargs: Workload(ledger, **kwargs)
