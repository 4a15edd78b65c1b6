"""Reading the views: account lists, statements, totals, projection status, and
waiting for a position (read-your-writes).

Every method returns plain dataclasses. Each listing is one SQL statement, so it sees
one committed batch: a page of balances never mixes the two sides of a transfer.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.errors import AccountNotFound, InvalidRequest, LedgerError
from domain.limits import VIEW_PAGE_SIZE_MAX
from infrastructure.views import ViewStore, ViewTransaction
from projections.balances import COLUMNS as BALANCE_COLUMNS
from projections.base import REBUILD_TRACKING_SUFFIX, create_tables
from projections.catalog import all_projections
from projections.failures import ProjectionFailure, read_failures

WAIT_SECONDS_MAX = 30.0
WAIT_INTERVAL_SECONDS = 0.01
STATUSES = ("open", "frozen", "closed")


class ViewBehind(LedgerError):
    """A view has not reached the position a client asked for within the wait."""

    code = "view_behind"

    def __init__(self, names: list[str], position: int, reached: int) -> None:
        super().__init__(
            f"{', '.join(names)} reached position {reached}, not yet {position}; retry"
        )
        self.position = position
        self.reached = reached


class ViewStalled(LedgerError):
    """A view the read waits for is stalled before the position asked for: it cannot
    apply an event there, and waiting will not help until an operator repairs it."""

    code = "view_stalled"

    def __init__(self, failures: list[ProjectionFailure], position: int, reached: int) -> None:
        super().__init__(
            "; ".join(failure.describe() for failure in failures)
            + f". The view will not reach position {position} until that is repaired "
            "(GET /v1/projections shows it)"
        )
        self.failures = failures
        self.position = position
        self.reached = reached


@dataclass(frozen=True)
class AccountRow:
    id: UUID
    currency: str
    name: str
    status: str
    is_world: bool
    balance: int
    available_balance: int
    pending_debits: int
    pending_credits: int
    overdraft_limit: int
    metadata: dict[str, str]
    version: int
    created_at: datetime
    updated_at: datetime
    position: int


@dataclass(frozen=True)
class AccountPage:
    items: list[AccountRow]
    next_cursor: str | None
    position: int  # the balances view's position when it was read


@dataclass(frozen=True)
class Posting:
    position: int
    transfer_id: UUID
    amount: int  # signed: credits positive, debits negative
    balance_after: int
    timestamp: datetime
    description: str


@dataclass(frozen=True)
class Statement:
    account_id: UUID
    currency: str
    items: list[Posting]
    next_cursor: str | None
    position: int


@dataclass(frozen=True)
class CurrencyTotals:
    currency: str
    balance_sum: int
    accounts: int
    transfers: int
    rejected: int


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    head: int
    lag: int
    rebuilding: int | None  # the position of an unfinished rebuild
    stalled: ProjectionFailure | None = None  # the event it cannot apply, if any


class ReadModels:
    """The queries the API and the CLI run against the views."""

    def __init__(
        self,
        store: ViewStore,
        head_position: Callable[[], int],
        wake_follower: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.head_position = head_position
        # An in-process follower polls; a reader waiting for a position wakes it.
        self.wake_follower = wake_follower
        # Empty views until a follower has run, rather than "no such table".
        with store.transaction() as tx:
            for projection in all_projections().values():
                create_tables(tx, projection, rebuilding=False, generation="g0")

    def list_accounts(
        self,
        currency: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> AccountPage:
        """Accounts ordered by id, after ``cursor`` (the last id of the previous page).

        Raises InvalidRequest (limit, status or cursor malformed).
        """
        _check_limit(limit)
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}")
        conditions, params = [], []
        if currency is not None:
            conditions.append("currency = ?")
            params.append(currency)
        if status is not None:
            conditions.append("status = ?")
            params.append(status)
        dialect = self.store.dialect
        if cursor is not None:
            conditions.append("account_id > ?")
            params.append(dialect.id_value(_parse_id_cursor(cursor)))
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        query = (
            f"SELECT {', '.join(BALANCE_COLUMNS)} FROM balances {where}"
            f"ORDER BY account_id LIMIT {limit + 1}"
        )
        with self.store.read() as tx:
            position = tx.positions().get("balances", 0)
            rows = tx.fetchall(query, params)
        accounts = [_account_row(tx, row) for row in rows[:limit]]
        next_cursor = str(accounts[-1].id) if len(rows) > limit else None
        return AccountPage(accounts, next_cursor, position)

    def statement(self, account_id: UUID, cursor: str | None = None, limit: int = 100) -> Statement:
        """Postings of an account, oldest first, after ``cursor`` (a position).

        Raises InvalidRequest, AccountNotFound (not in the balances view).
        """
        _check_limit(limit)
        after = parse_position_cursor(cursor)
        dialect = self.store.dialect
        with self.store.read() as tx:
            position = tx.positions().get("statements", 0)
            found = tx.fetchall(
                "SELECT currency FROM balances WHERE account_id = ?",
                [dialect.id_value(account_id)],
            )
            rows = tx.fetchall(
                "SELECT position, transfer_id, amount, balance_after, timestamp, description "
                "FROM statements WHERE account_id = ? AND position > ? "
                f"ORDER BY position LIMIT {limit + 1}",
                [dialect.id_value(account_id), after],
            )
        if not found:
            raise AccountNotFound(account_id)
        postings = [
            Posting(
                position=int(row[0]),
                transfer_id=dialect.id_from(row[1]),
                amount=int(row[2]),
                balance_after=dialect.wide_from(row[3]),
                timestamp=dialect.ts_from(row[4]),
                description=tx.private.open(row[5]),
            )
            for row in rows[:limit]
        ]
        next_cursor = str(postings[-1].position) if len(rows) > limit else None
        return Statement(account_id, found[0][0], postings, next_cursor, position)

    def totals(self) -> list[CurrencyTotals]:
        with self.store.read() as tx:
            rows = tx.fetchall(
                "SELECT currency, balance_sum, accounts, transfers, rejected "
                "FROM totals ORDER BY currency",
                [],
            )
        wide_from = self.store.dialect.wide_from
        return [
            CurrencyTotals(r[0], wide_from(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows
        ]

    def balance_sums(self) -> dict[str, int]:
        """Sum of all balances per currency from the balances view, in one query.

        Added up here, exactly: SQL cannot add a world account's balance (a ``{wide}``
        column, infrastructure/views.py) on SQLite.
        """
        dialect = self.store.dialect
        sums: dict[str, int] = {}
        with self.store.read() as tx:
            rows = tx.fetchall("SELECT currency, balance FROM balances")
        for currency, balance in rows:
            sums[currency] = sums.get(currency, 0) + dialect.wide_from(balance)
        return sums

    def failures(self) -> dict[str, ProjectionFailure]:
        """The views stalled before an event they cannot apply, by name."""
        with self.store.read() as tx:
            return read_failures(tx)

    def status(self) -> list[ProjectionStatus]:
        """Ours first, then any other view that keeps a tracking row (audit_chain)."""
        head = self.head_position()
        positions, failures = self._positions_and_failures()
        names = list(all_projections())
        names += sorted(
            name
            for name in positions
            if name not in names and not name.endswith(REBUILD_TRACKING_SUFFIX)
        )
        return [
            ProjectionStatus(
                name=name,
                position=positions.get(name, 0),
                head=head,
                lag=max(0, head - positions.get(name, 0)),
                rebuilding=positions.get(name + REBUILD_TRACKING_SUFFIX),
                stalled=failures.get(name),
            )
            for name in names
        ]

    def _positions_and_failures(self) -> tuple[dict[str, int], dict[str, ProjectionFailure]]:
        with self.store.read() as tx:
            return tx.positions(), read_failures(tx)

    def wait_for(
        self, position: int, names: Iterable[str] = (), timeout_seconds: float = 5.0
    ) -> None:
        """Returns once every view in ``names`` (all when empty) has applied the log up
        to ``position``; raises ViewBehind after ``timeout_seconds`` (at most 30), and
        ViewStalled at once when one of them is stalled before ``position``."""
        names = list(names) or list(all_projections())
        deadline = time.monotonic() + min(max(timeout_seconds, 0.0), WAIT_SECONDS_MAX)
        while True:
            positions, failures = self._positions_and_failures()
            reached = min(positions.get(name, 0) for name in names)
            if reached >= position:
                return
            stalled = [
                failures[name]
                for name in names
                if name in failures and failures[name].position <= position
            ]
            if stalled:
                raise ViewStalled(stalled, position, reached)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ViewBehind(names, position, reached)
            if self.wake_follower is not None:
                self.wake_follower()
            time.sleep(min(WAIT_INTERVAL_SECONDS, remaining))


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= VIEW_PAGE_SIZE_MAX:
        raise InvalidRequest(f"limit must be 1..{VIEW_PAGE_SIZE_MAX}")


_POSITION_CURSOR = re.compile("[0-9]{1,19}")
_ID_CURSOR = re.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
POSITION_CURSOR_MAX = 2**63 - 1


def _parse_id_cursor(cursor: str) -> UUID:
    """Only the form a page sends: ``UUID()`` alone would take full-width digits."""
    if _ID_CURSOR.fullmatch(cursor) is None:
        raise InvalidRequest("cursor must be the next_cursor of a previous page")
    return UUID(cursor)


def parse_position_cursor(cursor: str | None) -> int:
    """A position cursor (a statement's, or the version cursor of an account's events)
    as the int it holds; None is the start. Parses, rather than checks then converts:
    ``str.isdigit`` accepts "²", which ``int`` refuses, and 19 digits can pass
    2**63 - 1, which SQLite cannot bind. Raises InvalidRequest."""
    if cursor is None:
        return 0
    match = _POSITION_CURSOR.fullmatch(cursor)
    if match is None or int(cursor) > POSITION_CURSOR_MAX:
        raise InvalidRequest("cursor must be the next_cursor of a previous page")
    return int(cursor)


def _account_row(tx: ViewTransaction, row: Any) -> AccountRow:
    dialect, private = tx.dialect, tx.private
    values = dict(zip(BALANCE_COLUMNS, row, strict=True))
    return AccountRow(
        id=dialect.id_from(values["account_id"]),
        currency=values["currency"],
        name=private.open(values["name"]),
        status=values["status"],
        is_world=bool(values["is_world"]),
        balance=dialect.wide_from(values["balance"]),
        available_balance=dialect.wide_from(values["available_balance"]),
        pending_debits=dialect.wide_from(values["pending_debits"]),
        pending_credits=dialect.wide_from(values["pending_credits"]),
        overdraft_limit=int(values["overdraft_limit"]),
        metadata=json.loads(private.open(values["metadata"])),
        version=int(values["version"]),
        created_at=dialect.ts_from(values["created_at"]),
        updated_at=dialect.ts_from(values["updated_at"]),
        position=int(values["position"]),
    )
