"""The audit: a hash chain over the stored event log, and a verifier of everything.

``Audit`` holds the use cases the CLI and the API share: the digest, and a full
verify. The package's modules, from the bytes up:

- ``hashing``: the chain's algorithm (``link``, ``Digest``), as the README states it;
- ``event_log``: reads the stored events fast, as the rows the chain hashes;
- ``store``: the ``audit_chain`` projection's tables, beside the other read models;
- ``chain``: the ``audit_chain`` projection, which extends and stores the chain;
- ``problems``, ``postings``, ``invariants``: what replaying the log checks;
- ``read_models``: each read model compared with the replayed aggregates;
- ``verify``: the verifier that recomputes the chain and runs every check.

Both use cases first bring the ``audit_chain`` projection up to the log's head (it only
appends to its own tables), so the digest is the latest head and every position a
verify meets has been classified by the chain: a position PostgreSQL left empty
after a rollback is recorded as such, and is not taken for a deleted event.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import PersistenceError

from infrastructure.views import ViewStore
from projections.audit.chain import CHECKPOINT_INTERVAL_DEFAULT, AuditChain
from projections.audit.hashing import Digest
from projections.audit.problems import VerifyResult
from projections.audit.read_models import (
    BalancesViewCheck,
    SnapshotsCheck,
    StatementsViewCheck,
    TotalsViewCheck,
)
from projections.audit.verify import verify as verify_log

logger = logging.getLogger(__name__)
POLL_INTERVAL_SECONDS_MAX = 60.0


class Audit:
    def __init__(
        self,
        application: Application[Any],
        views: ViewStore,
        checkpoint_interval: int = CHECKPOINT_INTERVAL_DEFAULT,
    ) -> None:
        self.application = application
        self.views = views
        self.chain = AuditChain(application, views=views, checkpoint_interval=checkpoint_interval)

    def head_position(self) -> int:
        return self.chain.log.head_position()

    def digest(self, catch_up: bool = True) -> dict[str, Any]:
        """``{position, hash, algorithm, events, digest}`` of the chain's head."""
        if catch_up:
            self.chain.catch_up()
        return self.chain.digest()

    def verify(
        self,
        digest: Digest | None = None,
        *,
        catch_up: bool = True,
        invariants: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> VerifyResult:
        if catch_up:
            self.chain.catch_up()
        return verify_log(
            self.application,
            self.chain,
            digest=digest,
            invariants=invariants,
            read_model_checks=[
                BalancesViewCheck(self.views),
                TotalsViewCheck(self.views),
                StatementsViewCheck(self.views),
                SnapshotsCheck(self.application),
            ],
            progress=progress,
        )

    def follow(self, stop: threading.Event, poll_interval_seconds: float) -> None:
        """Keeps the chain at the log's head until ``stop`` is set (a thread's body)."""
        assert 0 < poll_interval_seconds <= POLL_INTERVAL_SECONDS_MAX
        while not stop.is_set():
            try:
                self.chain.catch_up()
            except (PersistenceError, sqlite3.Error, psycopg.Error):
                # The store is unreachable for now; the next poll tries again.
                logger.warning("audit_chain could not catch up", exc_info=True)
            stop.wait(poll_interval_seconds)
