"""Whether a ledger (or its views) exists at a database URL, asked without creating
anything, and what the URL names in words a user can act on.

Opening a store through the eventsourcing recorders creates its tables (and our
``prepare_database`` its folder or schema), so a read must ask first: a typo in a
URL would otherwise answer from a new, empty ledger. "Exists" means: the SQLite file
exists and has the events table; on PostgreSQL the database is reachable and the
schema (``public`` without ``?schema=``) has the events table.

Imports of psycopg stay inside the PostgreSQL branch: the SQLite path of the CLI
starts without it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from infrastructure.settings import DatabaseUrl

# The tables whose presence says "a ledger is here": eventsourcing's SQLite recorder
# names its table ``stored_events``; the PostgreSQL one prefixes the application's
# name (``Ledger``). tests/infrastructure/test_store_presence.py checks both against
# a ledger built by ``build_ledger``.
EVENTS_TABLE = {"sqlite": "stored_events", "postgresql": "ledger_events"}
VIEWS_TABLE = "projection_tracking"
REASON_LENGTH_MAX = 300


class StoreUnavailable(Exception):
    """The database cannot be reached or read (not: it has no ledger yet)."""

    def __init__(self, database: DatabaseUrl, reason: str) -> None:
        super().__init__(f"cannot open {location(database)}: {reason}")
        self.database = database
        self.reason = reason


def location(database: DatabaseUrl) -> str:
    """The URL as a user should read it: a SQLite path made absolute (the default one
    is relative to the current directory), never a password."""
    if database.kind == "sqlite":
        return f"sqlite:///{Path(database.path).resolve()}"
    return repr(database)


def one_line(error: BaseException, database: DatabaseUrl | None = None) -> str:
    """The first line of an error's message, without the URL's password."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if database is not None and database.password:
        text = text.replace(database.password, "***")
    return text[:REASON_LENGTH_MAX]


def has_table(database: DatabaseUrl, table: str, connect_timeout_seconds: int = 5) -> bool:
    """True if ``table`` exists at ``database``; creates nothing.

    Raises StoreUnavailable when the database cannot be reached or read.
    """
    if database.kind == "memory":
        return True
    if database.kind == "sqlite":
        return _sqlite_has_table(database, table)
    return _postgres_has_table(database, table, connect_timeout_seconds)


def _sqlite_has_table(database: DatabaseUrl, table: str) -> bool:
    path = Path(database.path)
    if not path.exists():
        return False
    try:
        # mode=ro: opening never creates the file (it might be removed meanwhile).
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise StoreUnavailable(database, one_line(error)) from None
    return row is not None


def _postgres_has_table(database: DatabaseUrl, table: str, connect_timeout_seconds: int) -> bool:
    import psycopg

    arguments = {**database.connection_kwargs(), "connect_timeout": connect_timeout_seconds}
    try:
        with psycopg.connect(**arguments) as connection:
            row = connection.execute(
                "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))",
                (database.schema or "public", table),
            ).fetchone()
    except psycopg.Error as error:
        raise StoreUnavailable(database, one_line(error, database)) from None
    return row is not None and row[0] is not None
