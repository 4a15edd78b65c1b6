"""Reading the stored event log fast, for the audit chain and its verifier.

The log is read with plain SQL on the recorder's own connections (the recorder's
``select_notifications`` builds a UUID and a dataclass per row, which halves the
throughput of the chain). Rows are ``(position, originator_id, version, topic,
state)`` with each value as the database holds it (``projections.audit.hashing``
chains them so): SQLite text comes as ``StoredText``, its bytes undecoded, so an id
in another case or text that is not UTF-8 is read, not refused; a PostgreSQL uuid as
``StoredUuid``, its 16 bytes.
"""

from __future__ import annotations

from typing import Any, Protocol

from eventsourcing.application import Application
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from psycopg import sql
from psycopg.rows import tuple_row

from projections.audit.hashing import Row, StoredText, StoredUuid


class EventLog(Protocol):
    def head_position(self) -> int: ...

    def read(self, after: int, stop: int, limit: int) -> list[Row]:
        """Events with ``after < position <= stop`` in order, at most ``limit``."""
        ...


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
            raw = cursor.sqlite_cursor
            connection = raw.connection
            text_factory = connection.text_factory
            # Text as stored (the connection is ours until the transaction ends).
            connection.text_factory = StoredText
            try:
                raw.row_factory = None  # plain tuples: faster than sqlite3.Row
                raw.execute(self.select, (after, stop, limit))
                rows: list[Row] = raw.fetchall()
            finally:
                connection.text_factory = text_factory
        return rows


class PostgresEventLog:
    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self.datastore: PostgresDatastore = recorder.datastore
        table = sql.Identifier(self.datastore.schema, recorder.events_table_name)
        # uuid_send gives the id's 16 bytes, so no UUID object is built per row.
        self.uuid_ids = self.datastore.originator_id_type == "uuid"
        originator = "uuid_send(originator_id)" if self.uuid_ids else "originator_id"
        self.select = sql.SQL(
            "SELECT notification_id, " + originator + ", originator_version, topic, state "
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
            connection.cursor(row_factory=tuple_row, binary=True) as cursor,
        ):
            cursor.execute(self.select, (after, stop, limit))
            rows: list[Row] = cursor.fetchall()
        if not self.uuid_ids:
            return rows  # text ids, read as str
        return [
            (position, StoredUuid(originator), version, topic, state)
            for position, originator, version, topic, state in rows
        ]


class RecorderEventLog:
    """Any recorder (the in-memory one in tests and demos), through its public API:
    ids come as UUIDs, hashed as a uuid column's would be."""

    def __init__(self, application: Application[Any]) -> None:
        self.recorder = application.recorder

    def head_position(self) -> int:
        return int(self.recorder.max_notification_id() or 0)

    def read(self, after: int, stop: int, limit: int) -> list[Row]:
        notifications = self.recorder.select_notifications(
            after, limit, stop=stop, inclusive_of_start=False
        )
        return [
            (n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in notifications
        ]


def event_log_for(application: Application[Any]) -> EventLog:
    recorder = application.recorder
    if isinstance(recorder, SQLiteApplicationRecorder):
        return SQLiteEventLog(recorder)
    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresEventLog(recorder)
    return RecorderEventLog(application)
