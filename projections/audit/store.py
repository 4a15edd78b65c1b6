"""The ``audit_chain`` projection's tables, and the types its stores share.

The projection keeps, with the other read models (the views database):

- ``audit_chain_head``: the head's hash and how many events the chain covers; its
  position is the ``audit_chain`` row of ``projection_tracking``;
- ``audit_chain_checkpoints``: (position, hash, events) every N events;
- ``audit_chain_gaps``: positions that held no event when the chain passed them
  (PostgreSQL consumes sequence numbers on rolled-back inserts);
- ``audit_chain_meta``: the algorithm of every hash above (``algorithm``; a store
  chained before it was recorded has none and is ``sha256-chain-v1``) and, once a
  v1 chain was re-chained, where (``upgraded_at``: the v1 head's position, at or
  before which a digest may be of either algorithm) and from what.

A batch writes its checkpoints, its gaps and the new head in one transaction, and
only if the head is still the one it started from (compare-and-set), so two
followers never both apply a batch: exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from infrastructure.views import StalePosition, ViewStore, ViewTransaction
from projections.audit.hashing import ALGORITHM, GENESIS, LEGACY_ALGORITHM

TRACKING_NAME = "audit_chain"
META_TABLE = "audit_chain_meta"


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
            tx.execute(
                f"CREATE TABLE IF NOT EXISTS {META_TABLE} (name TEXT PRIMARY KEY, "
                "value TEXT NOT NULL)"
            )
            if TRACKING_NAME not in tx.positions():
                tx.set_position(TRACKING_NAME, 0)
            if tx.positions()[TRACKING_NAME] == 0:
                # Nothing chained yet: it is chained with today's algorithm.
                _set_meta(tx, "algorithm", ALGORITHM, replace=False)

    def algorithm(self) -> str:
        """The algorithm of the stored hashes."""
        with self.views.read() as tx:
            return _meta(tx).get("algorithm", LEGACY_ALGORITHM)

    def upgrade(self) -> tuple[int, str] | None:
        """(the position up to which the log was chained with it, the algorithm) of a
        chain this one replaced, or None."""
        with self.views.read() as tx:
            meta = _meta(tx)
        if "upgraded_at" not in meta:
            return None
        return int(meta["upgraded_at"]), meta["upgraded_from"]

    def restart(self, previous: ChainPoint, replaced: str | None) -> bool:
        """Empties the chain, to be chained again from position 0 with ``ALGORITHM``,
        if its head is still ``previous`` (compare-and-set: False when another
        follower moved it). ``replaced``, the algorithm of the emptied chain, is
        recorded with ``previous``'s position, for the digests taken before.
        """
        try:
            with self.views.transaction() as tx:
                tx.advance(TRACKING_NAME, previous.position, 0)
                for table in ("audit_chain_head", "audit_chain_checkpoints", "audit_chain_gaps"):
                    tx.execute(f"DELETE FROM {table}")
                _set_meta(tx, "algorithm", ALGORITHM)
                if replaced is not None and replaced != ALGORITHM:
                    _set_meta(tx, "upgraded_at", str(previous.position))
                    _set_meta(tx, "upgraded_from", replaced)
        except StalePosition:
            return False
        return True

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


def _meta(tx: ViewTransaction) -> dict[str, str]:
    return {name: value for name, value in tx.fetchall(f"SELECT name, value FROM {META_TABLE}")}


def _set_meta(tx: ViewTransaction, name: str, value: str, *, replace: bool = True) -> None:
    conflict = "UPDATE SET value = excluded.value" if replace else "NOTHING"
    tx.execute(
        f"INSERT INTO {META_TABLE} (name, value) VALUES (?, ?) ON CONFLICT (name) DO {conflict}",
        (name, value),
    )
