"""The ``audit_chain`` projection's tables, and the types its stores share.

The projection keeps, with the other read models (the views database):

- ``audit_chain_head``: the head's hash and how many events the chain covers; its
  position is the ``audit_chain`` row of ``projection_tracking``;
- ``audit_chain_checkpoints``: (position, hash, events) every N events;
- ``audit_chain_gaps``: positions that held no event when the chain passed them
  (PostgreSQL consumes sequence numbers on rolled-back inserts).

A batch writes its checkpoints, its gaps and the new head in one transaction, and
only if the head is still the one it started from (compare-and-set), so two
followers never both apply a batch: exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from infrastructure.views import StalePosition, ViewStore
from projections.audit.hashing import GENESIS

TRACKING_NAME = "audit_chain"


class ChainPoint(NamedTuple):
    """The chain hash after the event at ``position``, covering ``events`` events.

    A named tuple, so it compares equal to the plain (position, hash, events) tuples
    ``ChainStore.checkpoints`` returns."""

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

    def checkpoints(self, after: int, stop: int) -> list[tuple[int, bytes, int]]:
        with self.views.read() as tx:
            rows = tx.fetchall(
                "SELECT position, hash, events FROM audit_chain_checkpoints "
                "WHERE position > ? AND position <= ? ORDER BY position",
                (after, stop),
            )
        # SQLite and psycopg already give int, bytes, int.
        return [tuple(row) for row in rows]

    def gaps(self, after: int, stop: int) -> list[int]:
        with self.views.read() as tx:
            rows = tx.fetchall(
                "SELECT position FROM audit_chain_gaps "
                "WHERE position > ? AND position <= ? ORDER BY position",
                (after, stop),
            )
        return [int(r[0]) for r in rows]
