"""A plain CRUD ledger: the baseline eventledger is compared with.

Two tables: ``accounts`` (balance and a version column) and ``transfers`` (one row per
transfer id, the idempotency record). One database transaction per transfer, the same
durability as eventledger: SQLite in WAL mode with ``synchronous=FULL``; PostgreSQL
with its defaults (fsync on commit).

Concurrency control is pessimistic, the idiomatic choice for hot rows in one database:
- SQLite: ``BEGIN IMMEDIATE`` takes the database's single write lock before the first
  read, so the read-check-write cannot interleave with another writer. (A deferred
  transaction that reads and then writes can fail with SQLITE_BUSY on the lock
  upgrade, which ``busy_timeout`` cannot wait out in WAL mode; optimistic retries
  would only add work to a database that admits one writer anyway.)
- PostgreSQL: ``SELECT ... FOR UPDATE`` on both accounts, in id order so two
  transfers between the same accounts cannot deadlock. Read committed suffices: the
  locked rows are re-read at their latest committed version.
The version column is bumped on every change (the ETag a client would see).

Semantics match ``Ledger.transfer``: amounts 1..10**15, two distinct accounts of the
transfer's currency; insufficient funds and currency mismatch are refused *and
recorded* (a rejected row), so a retry with the same id gets the same answer; the same
id with another request is ``idempotency_key_reused``; an unknown account is refused
and recorded nowhere. ``transfer_batch`` applies 1..1000 transfers all-or-nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg import sql

AMOUNT_MAX = 10**15
BATCH_SIZE_MAX = 1000
SQLITE_BUSY_TIMEOUT_SECONDS = 30

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS accounts (
        id TEXT PRIMARY KEY,
        currency TEXT NOT NULL,
        balance BIGINT NOT NULL,
        version BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS transfers (
        id TEXT PRIMARY KEY,
        debit_account_id TEXT NOT NULL,
        credit_account_id TEXT NOT NULL,
        amount BIGINT NOT NULL,
        currency TEXT NOT NULL,
        status TEXT NOT NULL,
        error_code TEXT,
        created_at TEXT NOT NULL)""",
)


class CrudError(Exception):
    code = "error"


class AccountNotFound(CrudError):
    code = "not_found"


class InvalidRequest(CrudError):
    code = "validation_error"


class IdempotencyKeyReused(CrudError):
    code = "idempotency_key_reused"


class Rejected(CrudError):
    """A business refusal, recorded as a rejected transfer."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Request:
    transfer_id: UUID
    debit_account_id: UUID
    credit_account_id: UUID
    amount: int
    currency: str

    def check(self) -> None:
        if not isinstance(self.amount, int) or not 1 <= self.amount <= AMOUNT_MAX:
            raise InvalidRequest("amount_out_of_range")
        if self.debit_account_id == self.credit_account_id:
            raise InvalidRequest("same_account")


class CrudLedger:
    """Thread-safe: each thread gets its own connection."""

    def __init__(self, kind: str, target: str, schema: str = "") -> None:
        """``target``: a SQLite file path, or a PostgreSQL conninfo URL (and a schema)."""
        assert kind in ("sqlite", "postgresql"), kind
        self.kind = kind
        self.target = target
        self.schema = schema
        self.placeholder = "?" if kind == "sqlite" else "%s"
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        with self._transaction() as cursor:
            for statement in SCHEMA:
                cursor.execute(statement)

    # Connections and transactions.

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _connect(self) -> Any:
        if self.kind == "sqlite":
            connection = sqlite3.connect(
                self.target,
                isolation_level=None,  # we issue BEGIN IMMEDIATE ourselves
                timeout=SQLITE_BUSY_TIMEOUT_SECONDS,
                check_same_thread=False,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2
            return connection
        connection = psycopg.connect(self.target, connect_timeout=5)
        if self.schema:
            with connection.transaction():
                connection.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
                connection.execute(
                    sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema))
                )
            connection.commit()
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        connection = self._connection()
        if self.kind == "sqlite":
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection.cursor()
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return
        with connection.transaction(), connection.cursor() as cursor:
            yield cursor

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.placeholder)

    # Accounts.

    def open_accounts(self, count: int, currency: str, balance: int) -> list[UUID]:
        """Opens ``count`` funded accounts in one transaction (fixture set-up)."""
        ids = [uuid4() for _ in range(count)]
        now = _now()
        with self._transaction() as cursor:
            cursor.executemany(
                self._sql("INSERT INTO accounts VALUES (?, ?, ?, 1, ?, ?)"),
                [(str(account_id), currency, balance, now, now) for account_id in ids],
            )
        return ids

    def get_account(self, account_id: UUID) -> dict[str, Any]:
        """Raises AccountNotFound."""
        connection = self._connection()
        statement = self._sql(
            "SELECT id, currency, balance, version, created_at, updated_at "
            "FROM accounts WHERE id = ?"
        )
        if self.kind == "sqlite":
            row = connection.execute(statement, (str(account_id),)).fetchone()
        else:
            with connection.transaction():
                row = connection.execute(statement, (str(account_id),)).fetchone()
        if row is None:
            raise AccountNotFound(str(account_id))
        keys = ("id", "currency", "balance", "version", "created_at", "updated_at")
        return dict(zip(keys, row, strict=True))

    # Transfers.

    def transfer(
        self,
        from_account: UUID,
        to_account: UUID,
        amount: int,
        currency: str,
        transfer_id: UUID | None = None,
    ) -> dict[str, Any]:
        """Moves ``amount``; exactly once per ``transfer_id``.

        Raises InvalidRequest, AccountNotFound (recorded nowhere), Rejected
        (insufficient_funds, currency_mismatch: recorded, raised again on a retry),
        IdempotencyKeyReused.
        """
        request = Request(transfer_id or uuid4(), from_account, to_account, amount, currency)
        request.check()
        try:
            return self._transfer_once(request)
        except psycopg.errors.UniqueViolation:
            # The same id committed by a concurrent transaction after our replay check
            # (PostgreSQL only: SQLite's write lock serialises the check): now a replay.
            return self._transfer_once(request)

    def _transfer_once(self, request: Request) -> dict[str, Any]:
        rejection: Rejected | None = None
        with self._transaction() as cursor:
            replay = self._replay(cursor, request)
            if replay is not None:
                return replay
            try:
                self._apply(cursor, request, self._lock_accounts(cursor, [request]))
            except Rejected as error:
                self._insert(cursor, request, "rejected", error.code)
                rejection = error
        if rejection is not None:
            raise rejection
        return _result(request, "posted", replayed=False)

    def transfer_batch(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """1..1000 transfers in one transaction, all or none. Each item has the
        keyword arguments of ``transfer``. Raises CrudError naming the first failure."""
        if not 1 <= len(items) <= BATCH_SIZE_MAX:
            raise InvalidRequest("a batch holds 1 to 1000 transfers")
        requests = [
            Request(
                item.get("transfer_id") or uuid4(),
                item["from_account"],
                item["to_account"],
                item["amount"],
                item["currency"],
            )
            for item in items
        ]
        for request in requests:
            request.check()
        with self._transaction() as cursor:
            replays = [self._replay(cursor, request) for request in requests]
            if all(replay is not None for replay in replays):
                return [replay for replay in replays if replay is not None]
            if any(replay is not None for replay in replays):
                raise IdempotencyKeyReused("part of this batch was written before")
            accounts = self._lock_accounts(cursor, requests)
            for request in requests:
                self._apply(cursor, request, accounts)
        return [_result(request, "posted", replayed=False) for request in requests]

    def _replay(self, cursor: Any, request: Request) -> dict[str, Any] | None:
        cursor.execute(
            self._sql(
                "SELECT debit_account_id, credit_account_id, amount, currency, status, "
                "error_code FROM transfers WHERE id = ?"
            ),
            (str(request.transfer_id),),
        )
        row = cursor.fetchone()
        if row is None:
            return None
        debit, credit, amount, currency, status, error_code = row
        same = (debit, credit, amount, currency) == (
            str(request.debit_account_id),
            str(request.credit_account_id),
            request.amount,
            request.currency,
        )
        if not same:
            raise IdempotencyKeyReused(str(request.transfer_id))
        if status == "rejected":
            raise Rejected(error_code)
        return _result(request, status, replayed=True)

    def _lock_accounts(self, cursor: Any, requests: Sequence[Request]) -> dict[str, list[Any]]:
        """Reads (and on PostgreSQL row-locks, in id order) every account involved."""
        ids = sorted(
            {str(r.debit_account_id) for r in requests}
            | {str(r.credit_account_id) for r in requests}
        )
        if self.kind == "sqlite":
            marks = ", ".join("?" * len(ids))
            cursor.execute(f"SELECT id, currency, balance FROM accounts WHERE id IN ({marks})", ids)
        else:
            cursor.execute(
                "SELECT id, currency, balance FROM accounts WHERE id = ANY(%s) "
                "ORDER BY id FOR UPDATE",
                (ids,),
            )
        accounts = {row[0]: [row[1], row[2]] for row in cursor.fetchall()}
        for account_id in ids:
            if account_id not in accounts:
                raise AccountNotFound(account_id)
        return accounts

    def _apply(self, cursor: Any, request: Request, accounts: dict[str, list[Any]]) -> None:
        """Checks and writes one transfer; raises Rejected before writing anything."""
        debit = accounts[str(request.debit_account_id)]
        credit = accounts[str(request.credit_account_id)]
        if debit[0] != request.currency or credit[0] != request.currency:
            raise Rejected("currency_mismatch")
        if debit[1] < request.amount:
            raise Rejected("insufficient_funds")
        debit[1] -= request.amount
        credit[1] += request.amount
        now = _now()
        update = self._sql(
            "UPDATE accounts SET balance = balance + ?, version = version + 1, "
            "updated_at = ? WHERE id = ?"
        )
        cursor.execute(update, (-request.amount, now, str(request.debit_account_id)))
        cursor.execute(update, (request.amount, now, str(request.credit_account_id)))
        self._insert(cursor, request, "posted", None)

    def _insert(self, cursor: Any, request: Request, status: str, error_code: str | None) -> None:
        cursor.execute(
            self._sql("INSERT INTO transfers VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            (
                str(request.transfer_id),
                str(request.debit_account_id),
                str(request.credit_account_id),
                request.amount,
                request.currency,
                status,
                error_code,
                _now(),
            ),
        )


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _result(request: Request, status: str, replayed: bool) -> dict[str, Any]:
    return {
        "id": str(request.transfer_id),
        "from_account": str(request.debit_account_id),
        "to_account": str(request.credit_account_id),
        "amount": request.amount,
        "currency": request.currency,
        "status": status,
        "replayed": replayed,
    }
