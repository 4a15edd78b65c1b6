"""SQL for the audit: reading the stored event log fast, and the chain's own tables.

The event log is read with plain SQL on the recorder's own connections (the
recorder's ``select_notifications`` builds a UUID and a dataclass per row, which
halves the throughput of the chain). Rows are ``(position, originator_id bytes,
version, topic, state)``.

The ``audit_chain`` projection keeps three tables with the read models (the views
database, ``ViewChainStore``) or, with no views database, next to the events (same
SQLite file or PostgreSQL schema):

- ``audit_chain_tracking``: one row, the head: last position chained, its hash and
  how many events it covers. It is the projection's tracking record.
- ``audit_chain_checkpoints``: (position, hash, events) every N events.
- ``audit_chain_gaps``: positions that held no event when the chain passed them
  (PostgreSQL consumes sequence numbers on rolled-back inserts).

A batch writes its checkpoints, its gaps and the new head in one transaction, and
only if the head is still the one it started from (compare-and-set), so two
followers never both apply a batch: exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsourcing.application import Application
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from psycopg import sql
from psycopg.rows import tuple_row

from infrastructure.hashing import GENESIS, Row, originator_bytes
from infrastructure.views import StalePosition, ViewStore

TRACKING_NAME = "audit_chain"


@dataclass(frozen=True)
class ChainPoint:
    """The chain hash after the event at ``position``, covering ``events`` events."""

    position: int
    hash: bytes
    events: int


START = ChainPoint(position=0, hash=GENESIS, events=0)


@dataclass(frozen=True)
class ChainBatch:
    """What one step of the projection writes, atomically."""

    previous: ChainPoint
    head: ChainPoint
    checkpoints: Sequence[ChainPoint] = field(default_factory=list)
    gaps: Sequence[int] = field(default_factory=list)


class EventLog(Protocol):
    def head_position(self) -> int: ...

    def read(self, after: int, stop: int, limit: int) -> list[Row]:
        """Events with ``after < position <= stop`` in order, at most ``limit``."""
        ...


class ChainStore(Protocol):
    def head(self) -> ChainPoint: ...

    def commit(self, batch: ChainBatch) -> bool:
        """Writes the batch unless the head moved on; returns whether it wrote."""
        ...

    def checkpoints(self, after: int, stop: int) -> list[ChainPoint]: ...

    def gaps(self, after: int, stop: int) -> list[int]: ...


# Reading the event log.


class SQLiteEventLog:
    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self.datastore: SQLiteDatastore = recorder.datastore
        table = recorder.events_table_name
        self.select = (
            f"SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
            "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        self.select_head = f"SELECT MAX(rowid) FROM {table}"

    def head_position(self) -> int:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(self.select_head)
            return int(cursor.fetchone()[0] or 0)

    def read(self, after: int, stop: int, limit: int) -> list[Row]:
        with self.datastore.transaction(commit=False) as cursor:
            raw = cursor.sqlite_cursor  # type: ignore[attr-defined]
            raw.row_factory = None  # plain tuples: faster than sqlite3.Row
            raw.execute(self.select, (after, stop, limit))
            rows = raw.fetchall()
        # SQLite keeps a UUID originator id as 32 hex digits.
        return [
            (position, _hex_or_uuid(originator), version, topic, state)
            for position, originator, version, topic, state in rows
        ]


def _hex_or_uuid(originator: str) -> bytes:
    if len(originator) == 32:
        return bytes.fromhex(originator)
    return originator_bytes(originator)


class PostgresEventLog:
    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self.datastore: PostgresDatastore = recorder.datastore
        table = sql.Identifier(self.datastore.schema, recorder.events_table_name)
        self.select = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {} WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(table)
        self.select_head = sql.SQL("SELECT MAX(notification_id) FROM {}").format(table)

    def head_position(self) -> int:
        with self.datastore.get_connection() as connection:
            row = connection.execute(self.select_head).fetchone()
        assert row is not None
        return int(next(iter(row.values())) or 0)

    def read(self, after: int, stop: int, limit: int) -> list[Row]:
        with (
            self.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute(self.select, (after, stop, limit))
            rows = cursor.fetchall()
        return [
            (position, originator_bytes(originator), version, topic, bytes(state))
            for position, originator, version, topic, state in rows  # type: ignore[misc]
        ]


class RecorderEventLog:
    """Any recorder (the in-memory one in tests and demos), through its public API."""

    def __init__(self, application: Application[Any]) -> None:
        self.recorder = application.recorder

    def head_position(self) -> int:
        return int(self.recorder.max_notification_id() or 0)

    def read(self, after: int, stop: int, limit: int) -> list[Row]:
        notifications = self.recorder.select_notifications(
            after, limit, stop=stop, inclusive_of_start=False
        )
        return [
            (n.id, originator_bytes(n.originator_id), n.originator_version, n.topic, n.state)
            for n in notifications
        ]


def event_log_for(application: Application[Any]) -> EventLog:
    recorder = application.recorder
    if isinstance(recorder, SQLiteApplicationRecorder):
        return SQLiteEventLog(recorder)
    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresEventLog(recorder)
    return RecorderEventLog(application)


# The chain's tables.

SQLITE_CREATE = (
    "CREATE TABLE IF NOT EXISTS audit_chain_tracking ("
    "name TEXT PRIMARY KEY, position INTEGER NOT NULL, hash BLOB NOT NULL, "
    "events INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_chain_checkpoints ("
    "position INTEGER PRIMARY KEY, hash BLOB NOT NULL, events INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_chain_gaps (position INTEGER PRIMARY KEY)",
)


class SQLiteChainStore:
    def __init__(self, datastore: SQLiteDatastore) -> None:
        self.datastore = datastore
        with self.datastore.transaction(commit=True) as cursor:
            for statement in SQLITE_CREATE:
                cursor.execute(statement)

    def head(self) -> ChainPoint:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT position, hash, events FROM audit_chain_tracking WHERE name = ?",
                (TRACKING_NAME,),
            )
            row = cursor.fetchone()
        return START if row is None else ChainPoint(row[0], bytes(row[1]), row[2])

    def commit(self, batch: ChainBatch) -> bool:
        try:
            self._commit(batch)
        except _LostRace:
            return False
        return True

    def _commit(self, batch: ChainBatch) -> None:
        head = batch.head
        with self.datastore.transaction(commit=True) as cursor:
            if batch.previous == START:
                cursor.execute(
                    "INSERT INTO audit_chain_tracking VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    (TRACKING_NAME, head.position, head.hash, head.events),
                )
            else:
                cursor.execute(
                    "UPDATE audit_chain_tracking SET position = ?, hash = ?, events = ? "
                    "WHERE name = ? AND position = ? AND hash = ?",
                    (head.position, head.hash, head.events, TRACKING_NAME,
                     batch.previous.position, batch.previous.hash),
                )  # fmt: skip
            if cursor.sqlite_cursor.rowcount != 1:  # type: ignore[attr-defined]
                raise _LostRace
            cursor.executemany(
                "INSERT INTO audit_chain_checkpoints VALUES (?, ?, ?)",
                [(c.position, c.hash, c.events) for c in batch.checkpoints],
            )
            cursor.executemany(
                "INSERT INTO audit_chain_gaps VALUES (?)", [(g,) for g in batch.gaps]
            )

    def checkpoints(self, after: int, stop: int) -> list[ChainPoint]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT position, hash, events FROM audit_chain_checkpoints "
                "WHERE position > ? AND position <= ? ORDER BY position",
                (after, stop),
            )
            return [ChainPoint(r[0], bytes(r[1]), r[2]) for r in cursor.fetchall()]

    def gaps(self, after: int, stop: int) -> list[int]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT position FROM audit_chain_gaps "
                "WHERE position > ? AND position <= ? ORDER BY position",
                (after, stop),
            )
            return [r[0] for r in cursor.fetchall()]


class _LostRace(Exception):
    """Another follower moved the head first; the batch was rolled back."""


POSTGRES_CREATE = (
    "CREATE TABLE IF NOT EXISTS {schema}.audit_chain_tracking ("
    "name text PRIMARY KEY, position bigint NOT NULL, hash bytea NOT NULL, "
    "events bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {schema}.audit_chain_checkpoints ("
    "position bigint PRIMARY KEY, hash bytea NOT NULL, events bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {schema}.audit_chain_gaps (position bigint PRIMARY KEY)",
)


class PostgresChainStore:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self.schema = sql.Identifier(datastore.schema)
        with self.datastore.transaction(commit=True) as cursor:
            # Two processes creating the tables at once would race on the catalog.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('audit_chain_tables'))")
            for statement in POSTGRES_CREATE:
                cursor.execute(sql.SQL(statement).format(schema=self.schema))

    def _sql(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(schema=self.schema)

    def head(self) -> ChainPoint:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                self._sql(
                    "SELECT position, hash, events FROM {schema}.audit_chain_tracking "
                    "WHERE name = %s"
                ),
                (TRACKING_NAME,),
            )
            row = cursor.fetchone()
        if row is None:
            return START
        return ChainPoint(row["position"], bytes(row["hash"]), row["events"])

    def commit(self, batch: ChainBatch) -> bool:
        try:
            self._commit(batch)
        except _LostRace:
            return False
        return True

    def _commit(self, batch: ChainBatch) -> None:
        head = batch.head
        with self.datastore.transaction(commit=True) as cursor:
            if batch.previous == START:
                cursor.execute(
                    self._sql(
                        "INSERT INTO {schema}.audit_chain_tracking VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT (name) DO NOTHING"
                    ),
                    (TRACKING_NAME, head.position, head.hash, head.events),
                )
            else:
                cursor.execute(
                    self._sql(
                        "UPDATE {schema}.audit_chain_tracking "
                        "SET position = %s, hash = %s, events = %s "
                        "WHERE name = %s AND position = %s AND hash = %s"
                    ),
                    (head.position, head.hash, head.events, TRACKING_NAME,
                     batch.previous.position, batch.previous.hash),
                )  # fmt: skip
            if cursor.rowcount != 1:
                raise _LostRace
            if batch.checkpoints:
                cursor.executemany(
                    self._sql("INSERT INTO {schema}.audit_chain_checkpoints VALUES (%s, %s, %s)"),
                    [(c.position, c.hash, c.events) for c in batch.checkpoints],
                )
            if batch.gaps:
                cursor.executemany(
                    self._sql("INSERT INTO {schema}.audit_chain_gaps VALUES (%s)"),
                    [(g,) for g in batch.gaps],
                )

    def checkpoints(self, after: int, stop: int) -> list[ChainPoint]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                self._sql(
                    "SELECT position, hash, events FROM {schema}.audit_chain_checkpoints "
                    "WHERE position > %s AND position <= %s ORDER BY position"
                ),
                (after, stop),
            )
            return [
                ChainPoint(r["position"], bytes(r["hash"]), r["events"]) for r in cursor.fetchall()
            ]

    def gaps(self, after: int, stop: int) -> list[int]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                self._sql(
                    "SELECT position FROM {schema}.audit_chain_gaps "
                    "WHERE position > %s AND position <= %s ORDER BY position"
                ),
                (after, stop),
            )
            return [r["position"] for r in cursor.fetchall()]


class MemoryChainStore:
    """For the in-memory event store: the chain lives as long as the process."""

    def __init__(self) -> None:
        self._head = START
        self._checkpoints: list[ChainPoint] = []
        self._gaps: list[int] = []

    def head(self) -> ChainPoint:
        return self._head

    def commit(self, batch: ChainBatch) -> bool:
        if batch.previous != self._head:
            return False
        self._checkpoints.extend(batch.checkpoints)
        self._gaps.extend(batch.gaps)
        self._head = batch.head
        return True

    def checkpoints(self, after: int, stop: int) -> list[ChainPoint]:
        return [c for c in self._checkpoints if after < c.position <= stop]

    def gaps(self, after: int, stop: int) -> list[int]:
        return [g for g in self._gaps if after < g <= stop]


def chain_store_for(application: Application[Any], views: ViewStore | None = None) -> ChainStore:
    """The chain's tables: with the read models when ``views`` is given, else beside
    the application's events (created if missing)."""
    if views is not None:
        return ViewChainStore(views)
    recorder = application.recorder
    if isinstance(recorder, SQLiteApplicationRecorder):
        return SQLiteChainStore(recorder.datastore)
    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresChainStore(recorder.datastore)
    store = getattr(application, "_audit_chain_store", None)
    if store is None:
        store = MemoryChainStore()
        application._audit_chain_store = store  # type: ignore[attr-defined]
    return store


# The chain in the views database, beside the other read models.


class ViewChainStore:
    """The chain's tables in the read models' database (``infrastructure.views``).

    Its position is the ``audit_chain`` row of ``projection_tracking``, moved by
    compare-and-set in the same transaction as the checkpoints, the gaps and the
    head hash (``audit_chain_head``), like every other projection.
    """

    def __init__(self, views: ViewStore) -> None:
        self.views = views
        blob = "BLOB" if views.dialect.is_sqlite else "BYTEA"
        with views.transaction() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS audit_chain_head (name TEXT PRIMARY KEY, "
                f"hash {blob} NOT NULL, events {{int}} NOT NULL)"
            )
            tx.execute(
                "CREATE TABLE IF NOT EXISTS audit_chain_checkpoints (position {int} "
                f"PRIMARY KEY, hash {blob} NOT NULL, events {{int}} NOT NULL)"
            )
            tx.execute("CREATE TABLE IF NOT EXISTS audit_chain_gaps (position {int} PRIMARY KEY)")
            if TRACKING_NAME not in tx.positions():
                tx.set_position(TRACKING_NAME, 0)

    def head(self) -> ChainPoint:
        with self.views.read() as tx:
            position = tx.positions().get(TRACKING_NAME, 0)
            rows = tx.fetchall(
                "SELECT hash, events FROM audit_chain_head WHERE name = ?", (TRACKING_NAME,)
            )
        if position == 0 or not rows:
            return START
        return ChainPoint(position, bytes(rows[0][0]), int(rows[0][1]))

    def commit(self, batch: ChainBatch) -> bool:
        head = batch.head
        try:
            with self.views.transaction() as tx:
                tx.advance(TRACKING_NAME, batch.previous.position, head.position)
                tx.execute(
                    "INSERT INTO audit_chain_head (name, hash, events) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, "
                    "events = excluded.events",
                    (TRACKING_NAME, head.hash, head.events),
                )
                tx.executemany(
                    "INSERT INTO audit_chain_checkpoints (position, hash, events) VALUES (?, ?, ?)",
                    [(c.position, c.hash, c.events) for c in batch.checkpoints],
                )
                tx.executemany(
                    "INSERT INTO audit_chain_gaps (position) VALUES (?)",
                    [(g,) for g in batch.gaps],
                )
        except StalePosition:
            return False
        return True

    def checkpoints(self, after: int, stop: int) -> list[ChainPoint]:
        with self.views.read() as tx:
            rows = tx.fetchall(
                "SELECT position, hash, events FROM audit_chain_checkpoints "
                "WHERE position > ? AND position <= ? ORDER BY position",
                (after, stop),
            )
        return [ChainPoint(int(r[0]), bytes(r[1]), int(r[2])) for r in rows]

    def gaps(self, after: int, stop: int) -> list[int]:
        with self.views.read() as tx:
            rows = tx.fetchall(
                "SELECT position FROM audit_chain_gaps "
                "WHERE position > ? AND position <= ? ORDER BY position",
                (after, stop),
            )
        return [int(r[0]) for r in rows]
