"""Where the read models live: a SQLite file or a PostgreSQL schema, and its tracking.

A ``ViewStore`` hands out write transactions (one per projection batch) and read
transactions (one per API query). Each projection's position is a row of
``projection_tracking``; it is updated in the same transaction as the view rows, by
compare-and-set, so two followers racing on one view cannot both apply a batch, and a
crash at any point leaves rows and position agreeing.

SQL is written once with ``?`` placeholders and ``{id}``/``{int}``/``{wide}``/``{ts}``
column types; ``Dialect`` adapts it to SQLite or PostgreSQL.

``{wide}`` holds a number that may need more than 64 bits: a world account's balance
and pending amounts range over signed 128 bits (``domain.money``). PostgreSQL stores
it as NUMERIC(39,0), exactly. SQLite's INTEGER is 64-bit, Python's sqlite3 cannot
bind a bigger int, and INTEGER or NUMERIC affinity would turn the decimal text of one
into a lossy REAL; so the column is declared BLOB (no affinity) and holds an INTEGER
when the value fits in 64 bits, its decimal text otherwise (``Dialect.wide_value``).
Either reads back exactly with ``Dialect.wide_from``. SQL never computes with such a
column: the projections add in Python.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from infrastructure.private_text import PrivateText
from infrastructure.settings import DatabaseUrl, Settings, parse_database_url

TRACKING_TABLE = "projection_tracking"
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
SQLITE_BUSY_TIMEOUT_SECONDS = 30
POSTGRES_READ_POOL_SIZE_MAX = 8
POSTGRES_STATEMENT_TIMEOUT_MILLISECONDS = 30_000
SCHEMA_LOCK_KEY = 0x6576_6C65_6467  # "evledg": any constant unique to this program


class StalePosition(Exception):
    """Another writer moved a projection's position since this batch was read."""


def views_database(settings: Settings) -> DatabaseUrl:
    """The views location ``settings`` name, or the default next to the events.

    ``memory://`` (explicit, or the default for in-memory events) means a temporary
    SQLite file that the ``ViewStore`` deletes when it closes.
    """
    events = settings.database
    if settings.views_database_url is not None:
        views = parse_database_url(settings.views_database_url)
        if events.kind != "memory" and views.kind not in (events.kind, "memory"):
            raise ValueError(
                f"views must live in the same kind of database as the events ({events.kind})"
            )
        return views
    if events.kind == "sqlite":
        path = Path(events.path)
        return DatabaseUrl("sqlite", path=str(path.with_name(f"{path.stem}.views{path.suffix}")))
    return events


class Dialect:
    """What differs between SQLite and PostgreSQL in our SQL."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.is_sqlite = kind == "sqlite"
        self.types = (
            {"id": "TEXT", "int": "INTEGER", "wide": "BLOB", "ts": "TEXT"}
            if self.is_sqlite
            else {"id": "UUID", "int": "BIGINT", "wide": "NUMERIC(39,0)", "ts": "TIMESTAMPTZ"}
        )

    def sql(self, text: str, **tables: str) -> str:
        text = text.format(**self.types, **tables)
        return text if self.is_sqlite else text.replace("?", "%s")

    # Ids are stored as 32-digit hex text in SQLite and as uuid in PostgreSQL (which
    # also accepts the hex text as a parameter).

    def id_value(self, value: UUID) -> Any:
        return value.hex if self.is_sqlite else value

    def id_from(self, value: Any) -> UUID:
        return UUID(value) if isinstance(value, str) else value

    def id_key(self, value: Any) -> str:
        """A stored id as the hex string the projections use."""
        return value if isinstance(value, str) else value.hex

    # Numbers of ``{wide}`` columns (see the module docstring).

    def wide_value(self, value: int) -> Any:
        if self.is_sqlite and not INT64_MIN <= value <= INT64_MAX:
            return str(value)
        return value

    def wide_from(self, value: Any) -> int:
        """An int from what a ``{wide}`` column holds: an int, the decimal text of a
        bigger one (SQLite), or a Decimal (PostgreSQL NUMERIC); all of them exact."""
        if isinstance(value, float):
            # Only a column with numeric affinity makes a float of a big number.
            raise ValueError(f"a {{wide}} column holds the float {value!r}: rebuild the views")
        return int(value)

    def ts_value(self, value: datetime) -> Any:
        return value.isoformat() if self.is_sqlite else value

    def ts_from(self, value: Any) -> datetime:
        return datetime.fromisoformat(value) if isinstance(value, str) else value


class ViewTransaction:
    """One open transaction on the views: execute SQL, move tracking positions."""

    def __init__(self, dialect: Dialect, cursor: Any, private: PrivateText) -> None:
        self.dialect = dialect
        self.cursor = cursor
        self.private = private

    def execute(self, text: str, params: Sequence[Any] = (), **tables: str) -> Any:
        return self.cursor.execute(self.dialect.sql(text, **tables), params)

    def executemany(self, text: str, rows: Sequence[Sequence[Any]], **tables: str) -> None:
        if rows:
            self.cursor.executemany(self.dialect.sql(text, **tables), rows)

    def fetchall(self, text: str, params: Sequence[Any] = (), **tables: str) -> list[Any]:
        self.execute(text, params, **tables)
        return list(self.cursor.fetchall())

    def positions(self) -> dict[str, int]:
        rows = self.fetchall(f"SELECT name, position FROM {TRACKING_TABLE}")
        return {name: int(position) for name, position in rows}

    def advance(self, name: str, expected: int, position: int) -> None:
        """Moves ``name`` from ``expected`` to ``position``; raises StalePosition if
        another writer moved it first. Called first in a write transaction, it also
        takes the row lock that serialises writers of that view on PostgreSQL."""
        self.execute(
            f"UPDATE {TRACKING_TABLE} SET position = ? WHERE name = ? AND position = ?",
            (position, name, expected),
        )
        if self.cursor.rowcount != 1:
            raise StalePosition(name)

    def lock_positions(self, names: Sequence[str]) -> dict[str, int]:
        """Reads the positions of ``names``, locking their rows until the end of the
        transaction (SQLite's write transaction locks everything already). A
        transaction that changes tables of several views takes these locks first,
        as followers do, so the two never wait for each other in opposite orders."""
        if self.dialect.is_sqlite or not names:
            return {n: p for n, p in self.positions().items() if n in names}
        marks = ", ".join("?" for _ in names)
        rows = self.fetchall(
            f"SELECT name, position FROM {TRACKING_TABLE} WHERE name IN ({marks}) "
            "ORDER BY name FOR UPDATE",
            list(names),
        )
        return {name: int(position) for name, position in rows}

    def set_position(self, name: str, position: int) -> None:
        self.execute(
            f"INSERT INTO {TRACKING_TABLE} (name, position) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (name, position),
        )

    def forget(self, name: str) -> None:
        self.execute(f"DELETE FROM {TRACKING_TABLE} WHERE name = ?", (name,))

    def lock_schema(self) -> None:
        """Serialises table creation: two PostgreSQL sessions creating the same table
        at once fail on the catalog's unique keys, even with IF NOT EXISTS. (SQLite's
        write transaction is exclusive already.)"""
        if not self.dialect.is_sqlite:
            self.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_KEY,))

    def index_names(self, table: str) -> set[str]:
        if self.dialect.is_sqlite:
            query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
        else:
            query = (
                "SELECT indexname FROM pg_indexes "
                "WHERE schemaname = current_schema() AND tablename = ?"
            )
        return {row[0] for row in self.fetchall(query, (table,))}

    def column_types(self, table: str) -> dict[str, str]:
        """Each column of ``table`` and its declared type, upper case."""
        if self.dialect.is_sqlite:
            rows = self.fetchall("SELECT name, type FROM pragma_table_info(?)", (table,))
            return {name: str(kind).upper() for name, kind in rows}
        rows = self.fetchall(
            "SELECT column_name, data_type, numeric_precision, numeric_scale "
            "FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
        return {
            name: f"NUMERIC({precision},{scale})" if kind == "numeric" else str(kind).upper()
            for name, kind, precision, scale in rows
        }

    def table_exists(self, table: str) -> bool:
        if self.dialect.is_sqlite:
            query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            query = "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?"
        return bool(self.fetchall(query, (table,)))


class ViewStore:
    """The connections to the views database, for one process.

    Writes go through one connection guarded by a lock (one follower per store);
    reads use short-lived SQLite connections or a small PostgreSQL pool.
    """

    def __init__(self, database: DatabaseUrl, private: PrivateText | None = None) -> None:
        self.private = private or PrivateText(None)
        self._temporary_directory: str | None = None
        if database.kind == "memory":
            self._temporary_directory = tempfile.mkdtemp(prefix="eventledger-views-")
            database = DatabaseUrl("sqlite", path=f"{self._temporary_directory}/views.db")
        self.database = database
        self.dialect = Dialect(database.kind)
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._writer: Any = None
        self._read_pool: ConnectionPool | None = None
        if self.dialect.is_sqlite:
            Path(database.path).parent.mkdir(parents=True, exist_ok=True)
        elif database.schema:
            with self._connect_postgres(schema=False) as connection, connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                connection.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(database.schema)
                    )
                )
        with self.transaction() as tx:
            tx.lock_schema()
            tx.execute(
                f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} "
                "(name TEXT PRIMARY KEY, position {int} NOT NULL)"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> ViewStore:
        key = settings.cipher_key
        return cls(
            views_database(settings),
            PrivateText(None if key is None else key.get_secret_value()),
        )

    def __repr__(self) -> str:
        return f"ViewStore({self.database!r})"

    # Connections.

    def _connect_sqlite(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.database.path,
            timeout=SQLITE_BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        # WAL lets readers see the last committed batch while the follower writes.
        # synchronous=NORMAL may lose the last batches on power loss, but never splits
        # one: rows and position roll back together and are applied again.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def _connect_postgres(self, schema: bool = True) -> psycopg.Connection[Any]:
        database = self.database
        options = f"-c statement_timeout={POSTGRES_STATEMENT_TIMEOUT_MILLISECONDS}"
        if schema and database.schema:
            options += f" -c search_path={database.schema}"
        return psycopg.connect(
            **database.connection_kwargs(),
            autocommit=True,
            options=options,
            application_name="eventledger-views",
        )

    def _writer_connection(self) -> Any:
        if self._writer is None or (not self.dialect.is_sqlite and self._writer.closed):
            self._writer = (
                self._connect_sqlite() if self.dialect.is_sqlite else self._connect_postgres()
            )
        return self._writer

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    # Transactions.

    @contextmanager
    def transaction(self) -> Iterator[ViewTransaction]:
        """A write transaction; commits on success, rolls back on any exception."""
        with self._write_lock:
            connection = self._writer_connection()
            cursor = connection.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE" if self.dialect.is_sqlite else "BEGIN")
            except (sqlite3.Error, psycopg.Error):
                self._drop_writer()
                raise
            try:
                yield ViewTransaction(self.dialect, cursor, self.private)
            except BaseException:
                self._rollback(connection)
                raise
            else:
                try:
                    cursor.execute("COMMIT")
                except (sqlite3.Error, psycopg.Error):
                    self._rollback(connection)
                    raise
            finally:
                cursor.close()

    def _rollback(self, connection: Any) -> None:
        try:
            connection.execute("ROLLBACK")
        except (sqlite3.Error, psycopg.Error):
            # The connection is broken; a new one is made for the next transaction.
            self._drop_writer()

    @contextmanager
    def read(self) -> Iterator[ViewTransaction]:
        """Reads of committed views; each single query sees one whole batch.

        On SQLite the block is one read transaction (one WAL snapshot). On PostgreSQL
        each statement runs on its own (autocommit, READ COMMITTED): a statement takes
        its snapshot after its table locks, so a query that waited for a rebuild's
        swap sees the whole new table. A longer REPEATABLE READ transaction would keep
        a snapshot from before the swap and could see the new table half-filled.
        """
        if self.dialect.is_sqlite:
            connection = self._connect_sqlite()
            try:
                connection.execute("BEGIN")
                yield ViewTransaction(self.dialect, connection.cursor(), self.private)
                connection.execute("COMMIT")
            finally:
                connection.close()
            return
        with self._postgres_read_pool().connection() as pg_connection:
            yield ViewTransaction(self.dialect, pg_connection.cursor(), self.private)

    def _postgres_read_pool(self) -> ConnectionPool:
        if self._read_pool is None:
            with self._pool_lock:
                if self._read_pool is None:
                    database = self.database
                    options = f"-c statement_timeout={POSTGRES_STATEMENT_TIMEOUT_MILLISECONDS}"
                    if database.schema:
                        options += f" -c search_path={database.schema}"
                    self._read_pool = ConnectionPool(
                        kwargs=dict(
                            **database.connection_kwargs(),
                            autocommit=True,
                            options=options,
                            application_name="eventledger-views-read",
                        ),
                        min_size=1,
                        max_size=POSTGRES_READ_POOL_SIZE_MAX,
                        timeout=10,
                        open=True,
                        check=ConnectionPool.check_connection,
                    )
        return self._read_pool

    def positions(self) -> dict[str, int]:
        with self.read() as tx:
            return tx.positions()

    def close(self) -> None:
        with self._write_lock:
            self._drop_writer()
        if self._read_pool is not None:
            self._read_pool.close()
            self._read_pool = None
        if self._temporary_directory is not None:
            shutil.rmtree(self._temporary_directory, ignore_errors=True)
            self._temporary_directory = None
