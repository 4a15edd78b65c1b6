"""Settings -> eventsourcing environment -> a ready ``Ledger``.

Every key is given explicitly, and the Ledger does not read ``os.environ``, so a stray
variable cannot switch the store. SQLite connections are made durable here: the
library sets WAL but leaves ``synchronous`` at NORMAL, which can lose the last commits
on power loss; we set FULL on every connection and check it took. Each store's
recorder also reads chosen versions of one aggregate in one query
(``select_versions``), for the point-in-time reads of ``domain.timeline``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    InterfaceError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.popo import POPOApplicationRecorder, POPOFactory
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteFactory,
)

from domain.errors import OutcomeUnknown
from infrastructure.settings import DatabaseUrl, Settings
from infrastructure.transfer_queue import QueuedLedger
from infrastructure.tuned_ledger import TunedLedger

if TYPE_CHECKING:
    import psycopg

SQLITE_SYNCHRONOUS_FULL = 2
SQLITE_ROWID_MAX = 2**63 - 1
# Saves up to this many events go in one executemany; larger ones in multi-row INSERTs
# of SQLITE_ROWS_PER_INSERT rows (4 parameters each, far below SQLite's 32,766).
SQLITE_EXECUTEMANY_ROWS_MAX = 100
SQLITE_ROWS_PER_INSERT = 500
SQLITE_IDS_PER_QUERY = 500


class DurableSQLiteConnectionPool(SQLiteConnectionPool):
    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        raw = connection._sqlite_conn
        raw.execute("PRAGMA synchronous=FULL")
        (synchronous,) = raw.execute("PRAGMA synchronous").fetchone()
        (journal_mode,) = raw.execute("PRAGMA journal_mode").fetchone()
        if synchronous != SQLITE_SYNCHRONOUS_FULL or journal_mode.lower() != "wal":
            raise InterfaceError(
                f"SQLite refused durable settings: synchronous={synchronous}, "
                f"journal_mode={journal_mode}"
            )
        return connection


class CommitTracking:
    """Tells a failed commit apart from a failure before it, per thread.

    ``Ledger`` answers a store failure as ``ServiceUnavailable`` (nothing written,
    safe to retry). That holds until the COMMIT is sent; if it fails after that, the
    transaction may or may not be durable, and the honest answer is ``OutcomeUnknown``
    (retry with the same id: it replays or completes). A recorder calls
    ``commit_sending`` as the last step before its COMMIT, and wraps its insert in
    ``outcome_of_commit``. A conflict stays an ``IntegrityError``: the command's retry
    reads the store and replays its own write if that is what conflicted.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def commit_sending(self) -> None:
        self._local.sent = True

    @contextmanager
    def outcome_of_commit(self) -> Iterator[None]:
        self._local.sent = False
        try:
            yield
        except IntegrityError:
            raise
        except PersistenceError as error:
            if getattr(self._local, "sent", False):
                raise OutcomeUnknown(
                    f"the commit was sent and failed ({type(error).__name__}); it may or may "
                    "not be written: retry with the same id"
                ) from error
            raise


class FewCallsSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    """Inserts a save's events in one or a few calls instead of one call per event.

    The library executes an INSERT per event to read each ``lastrowid``, and every
    call releases and re-takes the GIL, which under load costs more than the insert.
    A small save (a group of single transfers) goes in one ``executemany``; a large
    one (a batch) in multi-row ``INSERT ... VALUES (...), (...)`` statements of up to
    500 rows. ``executemany`` still releases the GIL once per row (thousands of
    waits behind the projection threads for a batch), and a multi-row statement
    costs SQLite about twice the CPU per row, so each is used where it is cheaper.

    The positions follow from the last one: inside the transaction this connection
    is the only writer, and SQLite gives each new row the largest rowid so far plus
    one, until the largest possible rowid is used, which is checked.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_tracking = CommitTracking()

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with self.commit_tracking.outcome_of_commit():
            return super().insert_events(stored_events, **kwargs)

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        rows = [
            (
                s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
                s.originator_version,
                s.topic,
                s.state,
            )
            for s in stored_events
        ]
        if len(rows) <= SQLITE_EXECUTEMANY_ROWS_MAX:
            c.executemany(self.insert_events_statement, rows)
        else:
            for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
                chunk = rows[start : start + SQLITE_ROWS_PER_INSERT]
                values = ",".join(["(?,?,?,?)"] * len(chunk))
                c.execute(
                    f"INSERT INTO {self.events_table_name} VALUES {values}",
                    [value for row in chunk for value in row],
                )
        c.execute("SELECT last_insert_rowid()")
        (last,) = c.fetchone()
        if last >= SQLITE_ROWID_MAX:
            raise InterfaceError("the events table used the largest rowid: positions would break")
        self.commit_tracking.commit_sending()  # the library's transaction commits next
        return list(range(last - len(rows) + 1, last + 1))

    def max_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The latest version of each aggregate that has events, in one query."""
        found: dict[UUID, int] = {}
        for start in range(0, len(originator_ids), SQLITE_IDS_PER_QUERY):
            chunk = originator_ids[start : start + SQLITE_IDS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            with self.datastore.transaction(commit=False) as c:
                raw = c.sqlite_cursor
                raw.row_factory = None
                raw.execute(
                    f"SELECT originator_id, MAX(originator_version) FROM {self.events_table_name} "
                    f"WHERE originator_id IN ({marks}) GROUP BY originator_id",
                    [i.hex for i in chunk],
                )
                found.update((UUID(hex_id), version) for hex_id, version in raw.fetchall())
        return found

    def select_versions(self, originator_id: UUID, versions: Sequence[int]) -> list[StoredEvent]:
        """The events of one aggregate at ``versions`` (``domain.timeline.ReadsVersions``)."""
        marks = ",".join("?" * len(versions))
        with self.datastore.transaction(commit=False) as c:
            raw = c.sqlite_cursor
            raw.row_factory = None
            raw.execute(
                f"SELECT originator_version, topic, state FROM {self.events_table_name} "
                f"WHERE originator_id = ? AND originator_version IN ({marks}) "
                "ORDER BY originator_version",
                [originator_id.hex, *versions],
            )
            return [
                StoredEvent(originator_id, version, topic, state)
                for version, topic, state in raw.fetchall()
            ]


class DurableSQLiteFactory(SQLiteFactory):
    """SQLiteFactory whose connections use WAL with synchronous=FULL, and whose
    application recorder inserts each save in few calls."""

    application_recorder_class = FewCallsSQLiteApplicationRecorder

    def __init__(self, env: object) -> None:
        super().__init__(env)  # type: ignore[arg-type]
        old_pool = self.datastore.pool
        self.datastore.pool = DurableSQLiteConnectionPool(
            db_name=old_pool.db_name, lock_timeout=old_pool.lock_timeout
        )
        old_pool.close()


class VersionsPOPOApplicationRecorder(POPOApplicationRecorder):
    """The library's in-memory recorder, reading chosen versions by its index."""

    def select_versions(self, originator_id: UUID, versions: Sequence[int]) -> list[StoredEvent]:
        """The events of one aggregate at ``versions`` (``domain.timeline.ReadsVersions``)."""
        with self._database_lock:
            index = self._stored_events_index.get(str(originator_id), {})
            return [self._stored_events[index[v]] for v in versions if v in index]


class VersionsPOPOFactory(POPOFactory):
    def application_recorder(self) -> ApplicationRecorder:
        return VersionsPOPOApplicationRecorder()


def ledger_env(settings: Settings) -> dict[str, str]:
    """The complete eventsourcing environment for ``settings``."""
    database = settings.database
    env: dict[str, str] = {}
    if database.kind == "memory":
        env["PERSISTENCE_MODULE"] = f"{__name__}:VersionsPOPOFactory"
    elif database.kind == "sqlite":
        env["PERSISTENCE_MODULE"] = f"{__name__}:DurableSQLiteFactory"
        env["SQLITE_DBNAME"] = database.path
        env["SQLITE_LOCK_TIMEOUT"] = str(settings.sqlite_lock_timeout_seconds)
    else:
        env.update(_postgres_env(settings, database))
    env["CREATE_TABLE"] = "y"
    # The library's event format, written and read faster (see infrastructure.transcoder).
    env["TRANSCODER_TOPIC"] = "infrastructure.transcoder:OrjsonTranscoder"
    if settings.aggregate_cache_size:
        # Fast-forward reads the events newer than the cached version on every load,
        # so a cached aggregate is never stale, even with other writer processes.
        env["AGGREGATE_CACHE_MAXSIZE"] = str(settings.aggregate_cache_size)
        env["AGGREGATE_CACHE_FASTFORWARD"] = "y"
    if settings.cipher_key is not None:
        env["CIPHER_TOPIC"] = "eventsourcing.cryptography:AESCipher"
        env["CIPHER_KEY"] = settings.cipher_key.get_secret_value()
    if settings.compress:
        env["COMPRESSOR_TOPIC"] = "eventsourcing.compressor:ZlibCompressor"
    return env


def _postgres_env(settings: Settings, database: DatabaseUrl) -> dict[str, str]:
    return {
        # A module of its own, so that a SQLite ledger is opened without psycopg.
        "PERSISTENCE_MODULE": "infrastructure.postgres_store:ArraysPostgresFactory",
        "POSTGRES_DBNAME": database.dbname,
        "POSTGRES_HOST": database.host,
        "POSTGRES_PORT": str(database.port),
        "POSTGRES_USER": database.user,
        "POSTGRES_PASSWORD": database.password,
        "POSTGRES_SCHEMA": database.schema,
        "POSTGRES_CONNECT_TIMEOUT": str(settings.postgres_connect_timeout_seconds),
        "POSTGRES_LOCK_TIMEOUT": str(settings.postgres_lock_timeout_seconds),
        "POSTGRES_POOL_SIZE": str(settings.postgres_pool_size),
        "POSTGRES_MAX_OVERFLOW": str(settings.postgres_max_overflow),
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": str(
            settings.postgres_idle_in_transaction_timeout_seconds
        ),
        "POSTGRES_PRE_PING": "y",
    }


def postgres_connect(database: DatabaseUrl, **kwargs: object) -> psycopg.Connection:
    """A plain psycopg connection to the database the URL names."""
    import psycopg

    return psycopg.connect(**database.connection_kwargs(), **kwargs)  # type: ignore[arg-type]


def prepare_database(settings: Settings) -> None:
    """Creates what the eventsourcing recorders expect to exist already."""
    database = settings.database
    if database.kind == "sqlite":
        Path(database.path).parent.mkdir(parents=True, exist_ok=True)
    elif database.kind == "postgresql" and database.schema:
        from psycopg import sql

        with postgres_connect(database, autocommit=True) as connection:
            connection.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(database.schema))
            )


def build_ledger(
    settings: Settings, *, clock: Callable[[], datetime] | None = None
) -> QueuedLedger:
    """A Ledger on the store ``settings`` name, tables created, durability checked.

    ``clock`` decides when pending transfers expire; tests inject one.
    """
    prepare_database(settings)
    ledger_class = TunedLedger if settings.group_commit else QueuedLedger
    with schema_lock(settings):
        ledger = ledger_class(
            ledger_env(settings),
            snapshot_interval=settings.snapshot_interval,
            retry_attempts=settings.retry_attempts,
            clock=clock,
        )
    if settings.database.kind == "sqlite":
        check_sqlite_durability(settings.database.path)
    return ledger


# Any fixed number names the lock; this one spells "evtledgr" in ASCII.
SCHEMA_ADVISORY_LOCK_KEY = 0x6576746C65646772


@contextmanager
def schema_lock(settings: Settings) -> Iterator[None]:
    """Serialises table creation across processes on PostgreSQL.

    Several API processes starting at once would otherwise race in CREATE TABLE IF
    NOT EXISTS and fail with "tuple concurrently updated". SQLite serialises DDL
    itself; the memory store is one process.
    """
    if settings.database.kind != "postgresql":
        yield
        return
    with postgres_connect(settings.database, autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_ADVISORY_LOCK_KEY,))
        try:
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_ADVISORY_LOCK_KEY,))


def check_sqlite_durability(path: str) -> None:
    """Asserts the file is in WAL mode (persistent) — synchronous is per connection
    and is checked as each pooled connection is made."""
    with sqlite3.connect(path) as connection:
        (journal_mode,) = connection.execute("PRAGMA journal_mode").fetchone()
    connection.close()
    if journal_mode.lower() != "wal":
        raise InterfaceError(f"{path} is in journal_mode={journal_mode}, expected wal")
