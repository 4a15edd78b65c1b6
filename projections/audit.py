"""The audit use cases the CLI and the API share: the digest, and a full verify.

Both first bring the ``audit_chain`` projection up to the log's head (it only
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

from infrastructure.hashing import Digest
from infrastructure.views import ViewStore
from projections.audit_chain import CHECKPOINT_INTERVAL_DEFAULT, AuditChain
from projections.audit_read_models import (
    BalancesViewCheck,
    SnapshotsCheck,
    StatementsViewCheck,
    TotalsViewCheck,
)
from projections.audit_verify import VerifyResult, verify

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
        return verify(
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
