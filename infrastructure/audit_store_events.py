"""The ``audit_chain`` tables beside the events, for a ledger without a views database.

Same tables and the same compare-and-set as ``infrastructure.audit_store``, in the
events' SQLite file or PostgreSQL schema; the head row (``audit_chain_tracking``)
holds the position too.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from psycopg import sql

from infrastructure.audit_store import (
    START,
    TRACKING_NAME,
    ChainBatch,
    ChainPoint,
    ChainStore,
    MemoryChainStore,
    ViewChainStore,
)
from infrastructure.views import ViewStore

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
            if cursor.sqlite_cursor.rowcount != 1:
                raise _LostRace
            cursor.executemany(
                "INSERT INTO audit_chain_checkpoints VALUES (?, ?, ?)",
                [(c.position, c.hash, c.events) for c in batch.checkpoints],
            )
            cursor.executemany(
                "INSERT INTO audit_chain_gaps VALUES (?)", [(g,) for g in batch.gaps]
            )

    def checkpoints(self, after: int, stop: int) -> list[tuple[int, bytes, int]]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT position, hash, events FROM audit_chain_checkpoints "
                "WHERE position > ? AND position <= ? ORDER BY position",
                (after, stop),
            )
            return [(r[0], bytes(r[1]), r[2]) for r in cursor.fetchall()]

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

    def checkpoints(self, after: int, stop: int) -> list[tuple[int, bytes, int]]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                self._sql(
                    "SELECT position, hash, events FROM {schema}.audit_chain_checkpoints "
                    "WHERE position > %s AND position <= %s ORDER BY position"
                ),
                (after, stop),
            )
            return [(r["position"], bytes(r["hash"]), r["events"]) for r in cursor.fetchall()]

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
