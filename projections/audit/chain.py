"""The ``audit_chain`` projection: hash chain checkpoints over the event log.

It follows the notification log in position order, extends the chain
(``projections.audit.hashing``) and, per batch, writes in one transaction: a checkpoint
every ``checkpoint_interval`` events, the positions it found empty, and its head,
which is also its tracking record. The write is a compare-and-set on the head it
started from, so a restart or a second follower never applies a batch twice.

It is self-contained (it does not need the generic projection runner) because the
chain must be computed over the stored values, not over decoded events. It only
extends a chain of the current algorithm (``hashing.ALGORITHM``): a chain of the
legacy one must first be upgraded (``projections.audit.upgrade``), or hashes of two
algorithms would be mixed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.application import Application

from infrastructure.views import ViewStore
from projections.audit.event_log import EventLog, event_log_for
from projections.audit.hashing import ALGORITHM, Digest, Row, chain_hashes
from projections.audit.store import ChainBatch, ChainPoint, ViewChainStore

NAME = "audit_chain"
CHECKPOINT_INTERVAL_DEFAULT = 1
BATCH_SIZE_DEFAULT = 5000
BATCH_SIZE_MAX = 50_000


class LegacyChain(Exception):
    """The stored chain is of the legacy algorithm; it is not extended until upgraded."""

    def __init__(self, algorithm: str) -> None:
        super().__init__(
            f"the audit chain is stored with {algorithm}; it is re-chained with {ALGORITHM} "
            "once the log is shown to match it (eventledger audit verify says why not)"
        )
        self.algorithm = algorithm


class AuditChain:
    """Extends and reads the stored chain of one application's event log."""

    name = NAME

    def __init__(
        self,
        application: Application[Any],
        *,
        views: ViewStore,
        checkpoint_interval: int = CHECKPOINT_INTERVAL_DEFAULT,
        batch_size: int = BATCH_SIZE_DEFAULT,
        log: EventLog | None = None,
    ) -> None:
        assert checkpoint_interval >= 1 and 1 <= batch_size <= BATCH_SIZE_MAX
        self.checkpoint_interval = checkpoint_interval
        self.batch_size = batch_size
        self.log = log or event_log_for(application)
        self.store = ViewChainStore(views)
        self._current = False  # known to be of ALGORITHM (it never goes back)

    def algorithm(self) -> str:
        """The algorithm of the stored chain."""
        if self._current:
            return ALGORITHM
        algorithm = self.store.algorithm()
        self._current = algorithm == ALGORITHM
        return algorithm

    def head(self) -> ChainPoint:
        return self.store.head()

    def digest(self) -> dict[str, Any]:
        """The head as ``{position, hash, algorithm, events, digest}``."""
        head = self.store.head()
        return {
            "position": head.position,
            "hash": head.hash.hex(),
            "algorithm": self.algorithm(),
            "events": head.events,
            "digest": str(Digest(head.position, head.hash)),
        }

    def lag(self) -> int:
        return max(0, self.log.head_position() - self.store.head().position)

    def catch_up(
        self, stop: int | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Chains every event up to ``stop`` (default: the log's head now).

        Returns the number of events this follower chained (another follower may have
        chained the rest). ``progress`` gets each batch's size.
        """
        stop = self.log.head_position() if stop is None else stop
        chained = 0
        while True:
            done = self.step(stop)
            if done is None:
                return chained
            chained += done
            if progress is not None and done:
                progress(done)

    def step(self, stop: int) -> int | None:
        """Chains one batch after the stored head.

        Returns how many events it chained: 0 when another follower moved the head
        first (that is progress too: the next step starts from its head), None when
        the head has reached ``stop`` or the log has nothing after it. Raises
        LegacyChain when the stored chain is of the legacy algorithm.
        """
        algorithm = self.algorithm()
        if algorithm != ALGORITHM:
            raise LegacyChain(algorithm)
        previous = self.store.head()
        if previous.position >= stop:
            return None
        rows = self.log.read(previous.position, stop, self.batch_size)
        if not rows:
            return None
        return len(rows) if self.store.commit(self._extend(previous, rows)) else 0

    def _extend(self, previous: ChainPoint, rows: list[Row]) -> ChainBatch:
        hashes = chain_hashes(previous.hash, rows)
        interval = self.checkpoint_interval
        checkpoints = [
            ChainPoint(row[0], chain_hash, previous.events + number)
            for number, (row, chain_hash) in enumerate(zip(rows, hashes, strict=True), 1)
            if (previous.events + number) % interval == 0
        ]
        gaps: list[int] = []
        expected = previous.position + 1
        if rows[0][0] != expected or rows[-1][0] - rows[0][0] != len(rows) - 1:
            for row in rows:
                gaps.extend(range(expected, row[0]))
                expected = row[0] + 1
        head = ChainPoint(rows[-1][0], hashes[-1], previous.events + len(rows))
        return ChainBatch(previous=previous, head=head, checkpoints=checkpoints, gaps=gaps)
