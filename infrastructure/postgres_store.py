"""The PostgreSQL event recorder and its factory, named by ``ledger_env``.

Kept apart from ``infrastructure.persistence`` so that a SQLite or in-memory ledger
never imports psycopg (a tenth of a second of every CLI command's start).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from psycopg import sql
from psycopg.rows import tuple_row

from infrastructure.persistence import CommitTracking


class ArraysPostgresApplicationRecorder(PostgresApplicationRecorder):
    """Inserts a save's events from four arrays instead of one array of a composite type.

    The library sends the events as an array of its composite ``stored_event`` type,
    which psycopg writes as text, escaping every field of every event with a regular
    expression: about a fifth of the group-commit writer's time on PostgreSQL. Arrays
    of uuid, integer, text and bytea are sent in binary (``%b``) by psycopg's C
    dumpers. The rest (the table lock that keeps positions in commit order, the
    NOTIFY, the pipeline, RETURNING the positions in insert order) is the library's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_tracking = CommitTracking()
        # The ledger's aggregate ids are UUIDs, kept in the library's default uuid column.
        assert self.datastore.originator_id_type == "uuid", self.datastore.originator_id_type
        self.insert_arrays_statement = sql.SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(
            schema=sql.Identifier(self.datastore.schema),
            table=sql.Identifier(self.events_table_name),
        )
        self.max_versions_statement = sql.SQL(
            "SELECT originator_id, MAX(originator_version) FROM {schema}.{table} "
            "WHERE originator_id = ANY(%s::uuid[]) GROUP BY originator_id"
        ).format(
            schema=sql.Identifier(self.datastore.schema),
            table=sql.Identifier(self.events_table_name),
        )
        self.select_versions_statement = sql.SQL(
            "SELECT originator_version, topic, state FROM {schema}.{table} "
            "WHERE originator_id = %s AND originator_version = ANY(%s::bigint[]) "
            "ORDER BY originator_version"
        ).format(
            schema=sql.Identifier(self.datastore.schema),
            table=sql.Identifier(self.events_table_name),
        )

    def _insert_stored_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.insert_arrays_statement,
            (
                [s.originator_id for s in stored_events],
                [s.originator_version for s in stored_events],
                [s.topic for s in stored_events],
                [s.state for s in stored_events],
            ),
            prepare=True,
        )

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with self.commit_tracking.outcome_of_commit():
            positions: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return positions

    def _fetch_ids_after_insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids: Sequence[int] | None = super()._fetch_ids_after_insert_events(
            curs, stored_events, **kwargs
        )
        self.commit_tracking.commit_sending()  # the library's transaction commits next
        return ids

    def max_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The latest version of each aggregate that has events, in one query."""
        with (
            self.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute(self.max_versions_statement, (list(originator_ids),))
            return dict(cursor.fetchall())

    def select_versions(self, originator_id: UUID, versions: Sequence[int]) -> list[StoredEvent]:
        """The events of one aggregate at ``versions`` (``domain.timeline.ReadsVersions``)."""
        with (
            self.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute(
                self.select_versions_statement, (originator_id, list(versions)), prepare=True
            )
            return [
                StoredEvent(originator_id, version, topic, bytes(state))
                for version, topic, state in cursor.fetchall()
            ]


class ArraysPostgresFactory(PostgresFactory):
    application_recorder_class = ArraysPostgresApplicationRecorder
