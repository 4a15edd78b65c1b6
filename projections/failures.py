"""A projection that cannot apply an event: how that is told apart, recorded and read.

A follower meets two kinds of failure. A *transient* one says the databases cannot be
used for now (a lost connection, a locked SQLite file, a serialization failure, a lock
or statement timeout): it backs off and tries again, and nothing is recorded. A
*permanent* one says this event cannot be applied, now or on any retry (a number
beyond the column's range, text the column refuses, a state that does not decode):
the follower stops before the save that holds the event, so no view moves past it
and the views stay consistent with each other, and records the failure here.

``projection_failures`` has one row per stalled view (its tracking name), written in
the views database so that every process sees it: the API's ``/readyz``, ``/metrics``
and ``GET /v1/projections``, ``eventledger projections status`` and ``audit verify``.
The follower deletes a view's row in the transaction that applies the save it could
not apply before (after a repair), and a rebuild that is swapped in past it deletes
it too.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from infrastructure.views import ViewTransaction

FAILURES_TABLE = "projection_failures"
ERROR_LENGTH_MAX = 500

CREATE_FAILURES_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {FAILURES_TABLE} (name TEXT PRIMARY KEY, "
    "position {int} NOT NULL, last_position {int} NOT NULL, cause TEXT, "
    "error TEXT NOT NULL, since TEXT NOT NULL)"
)

# The databases cannot be used for now; the same work may succeed on a retry. psycopg's
# OperationalError covers lost or refused connections, serialization failures,
# deadlocks, lock and statement timeouts, a server shutting down and a pool timeout
# (psycopg_pool.PoolTimeout is one); SQLite's covers a locked or busy file and I/O
# errors; the library wraps both in its own OperationalError and InterfaceError.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlite3.OperationalError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    # The server ended a session left idle inside a transaction (a stalled client).
    psycopg.errors.IdleInTransactionSessionTimeout,
    OperationalError,
    InterfaceError,
)


def is_transient(error: BaseException) -> bool:
    """True when ``error`` says the databases are unavailable for now."""
    return isinstance(error, TRANSIENT_ERRORS)


def describe_error(error: BaseException) -> str:
    """``Class: message``, one line, bounded."""
    message = " ".join(str(error).split())
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text[:ERROR_LENGTH_MAX]


@dataclass(frozen=True)
class ProjectionFailure:
    """A view that stopped before an event it cannot apply.

    ``position`` is the first log position it cannot get past (the view stays before
    it) and ``last_position`` the end of the save that holds it: an apply failure is
    known per save, a view transaction never ends inside one. ``cause`` is the
    projection whose apply failed (this one, or another followed in the same
    transactions, which holds this one back), None when the event cannot be read or
    decoded at all.
    """

    name: str
    position: int
    last_position: int
    cause: str | None
    error: str
    since: str  # ISO 8601, UTC: when it was first recorded

    @property
    def error_class(self) -> str:
        return self.error.split(":", 1)[0]

    def describe(self) -> str:
        where = (
            f"the event at position {self.position}"
            if self.last_position == self.position
            else f"the save at positions {self.position}..{self.last_position}"
        )
        if self.cause is None:
            return f"{self.name} cannot read {where}: {self.error}"
        if self.cause == self.name:
            return f"{self.name} cannot apply {where}: {self.error}"
        return (
            f"{self.name} is held before position {self.position}: {self.cause}, "
            f"followed with it, cannot apply {where}: {self.error}"
        )


def create_failures_table(tx: ViewTransaction) -> None:
    tx.execute(CREATE_FAILURES_TABLE)


def read_failures(tx: ViewTransaction, *, table_known: bool = True) -> dict[str, ProjectionFailure]:
    """Every recorded failure, by view name. ``table_known=False`` first checks that
    the table exists (a views database no follower has used yet)."""
    if not table_known and not tx.table_exists(FAILURES_TABLE):
        return {}
    rows = tx.fetchall(
        f"SELECT name, position, last_position, cause, error, since FROM {FAILURES_TABLE} "
        "ORDER BY name"
    )
    return {
        row[0]: ProjectionFailure(row[0], int(row[1]), int(row[2]), row[3], row[4], row[5])
        for row in rows
    }


def record_failures(
    tx: ViewTransaction, failures: Iterable[ProjectionFailure]
) -> list[ProjectionFailure]:
    """Writes each failure, keeping the first ``since`` of one already recorded for the
    same view, position, cause and error class (a retry that failed again); returns
    them as written."""
    known = read_failures(tx)
    written = []
    for failure in failures:
        since = failure.since
        previous = known.get(failure.name)
        if previous is not None and (
            previous.position,
            previous.cause,
            previous.error_class,
        ) == (failure.position, failure.cause, failure.error_class):
            since = previous.since
        tx.execute(
            f"INSERT INTO {FAILURES_TABLE} (name, position, last_position, cause, error, since) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "position = excluded.position, last_position = excluded.last_position, "
            "cause = excluded.cause, error = excluded.error, since = excluded.since",
            (
                failure.name,
                failure.position,
                failure.last_position,
                failure.cause,
                failure.error,
                since,
            ),
        )
        written.append(dataclasses.replace(failure, since=since))
    return written


def clear_failures(tx: ViewTransaction, names: Sequence[str], reached: int) -> None:
    """Forgets the failures of ``names`` at or before ``reached``: those views have
    applied the event they could not apply."""
    if not names:
        return
    marks = ", ".join("?" for _ in names)
    tx.execute(
        f"DELETE FROM {FAILURES_TABLE} WHERE name IN ({marks}) AND position <= ?",
        (*names, reached),
    )
