"""The audit: a hash chain over the stored event log, and a verifier of everything.

``Audit`` holds the use cases the CLI and the API share: the digest, and a full
verify. The package's modules, from the bytes up:

- ``hashing``: the chain's algorithm (``link``, ``Digest``), as the README states it;
- ``event_log``: reads the stored events fast, as the rows the chain hashes;
- ``store``: the ``audit_chain`` projection's tables, beside the other read models;
- ``chain``: the ``audit_chain`` projection, which extends and stores the chain;
- ``upgrade``: re-chains a store chained with the legacy algorithm, once checked;
- ``stored``: each row's stored form against the ledger's;
- ``problems``, ``postings``, ``invariants``, ``world_ids``: what replaying checks;
- ``read_models``: each read model compared with the replayed aggregates;
- ``replay``, ``verify``: the verifier that recomputes the chain and runs every check.

Both use cases first bring the ``audit_chain`` projection up to the log's head (it only
appends to its own tables; a legacy chain is upgraded first), so the digest is the
latest head and every position a verify meets has been classified by the chain: a
position PostgreSQL left empty after a rollback is recorded as such, and is not
taken for a deleted event. A verify also reports the views stalled before an event
they cannot apply (``projections.failures``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from eventsourcing.application import Application

from infrastructure.views import ViewStore
from projections.audit.chain import CHECKPOINT_INTERVAL_DEFAULT, AuditChain
from projections.audit.hashing import ALGORITHM, Digest
from projections.audit.problems import Problem, VerifyResult
from projections.audit.read_models import (
    BalancesViewCheck,
    SnapshotsCheck,
    StatementsViewCheck,
    TotalsViewCheck,
)
from projections.audit.upgrade import ChainMoving, ChainUpgradeBlocked, upgrade
from projections.audit.verify import verify as verify_log
from projections.failures import TRANSIENT_ERRORS, ProjectionFailure, read_failures

__all__ = ["Audit", "ChainMoving", "ChainUpgradeBlocked"]

logger = logging.getLogger(__name__)
POLL_INTERVAL_SECONDS_MAX = 60.0
# A blocked upgrade stays blocked until someone acts: look again this rarely.
BLOCKED_RETRY_SECONDS = 60.0
REBUILD_ATTEMPTS_MAX = 10
# The store unreachable for now, or an older process still extending a legacy chain.
_RETRIED: tuple[type[BaseException], ...] = (ChainMoving, *TRANSIENT_ERRORS)


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
        """``{position, hash, algorithm, events, digest}`` of the chain's head.

        Raises ChainUpgradeBlocked (a legacy chain the log no longer matches) and
        ChainMoving.
        """
        if catch_up:
            upgrade(self.chain, self.application)
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
        """Checks everything (``invariants=False``: the chain and the stored form).

        A legacy chain that cannot be upgraded is checked with its own algorithm,
        and the result says so (``chain_algorithm``). Raises ChainMoving.
        """
        if catch_up:
            try:
                upgrade(self.chain, self.application)
                self.chain.catch_up()
            except ChainUpgradeBlocked:
                pass  # checked below with the legacy algorithm, which finds why
        result = verify_log(
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
            stalls=self.stalls() if invariants else (),
        )
        algorithm = self.chain.algorithm()
        if algorithm == ALGORITHM:
            return result
        note = Problem(
            "chain_algorithm",
            f"the audit chain is still stored with {algorithm}: it is re-chained with "
            f"{ALGORITHM} only once the log matches it, and the problems above say where it "
            "does not; `eventledger audit rechain` accepts the log as it is now",
        )
        return dataclasses.replace(result, ok=False, problems=[*result.problems, note])

    def stalls(self) -> list[ProjectionFailure]:
        """The views stalled before an event they cannot apply."""
        with self.views.read() as tx:
            return list(read_failures(tx, table_known=False).values())

    def rechain(self) -> dict[str, Any]:
        """Empties the chain and chains the log as it is now; returns the new digest.

        For an operator who has looked at why a legacy chain could not be upgraded
        (or repaired the log on purpose). A digest taken before still verifies, or
        shows what changed since: the chain is a function of the log alone. Raises
        ChainMoving.
        """
        for _ in range(REBUILD_ATTEMPTS_MAX):
            head = self.chain.store.head()
            if self.chain.store.restart(head, replaced=self.chain.algorithm()):
                self.chain.catch_up()
                return self.chain.digest()
        raise ChainMoving("another follower kept moving the chain's head")

    def follow(self, stop: threading.Event, poll_interval_seconds: float) -> None:
        """Keeps the chain at the log's head until ``stop`` is set (a thread's body).

        It never dies of a failure: the store being unreachable is retried at the
        next poll; a legacy chain that cannot be upgraded is logged once and looked
        at again every minute; anything else is logged with its traceback.
        """
        assert 0 < poll_interval_seconds <= POLL_INTERVAL_SECONDS_MAX
        blocked_reported = False
        while not stop.is_set():
            wait = poll_interval_seconds
            try:
                upgrade(self.chain, self.application)
                self.chain.catch_up()
                blocked_reported = False
            except ChainUpgradeBlocked as blocked:
                if not blocked_reported:
                    logger.error("audit_chain is not extended: %s", blocked)
                    blocked_reported = True
                wait = BLOCKED_RETRY_SECONDS
            except _RETRIED:
                logger.warning("audit_chain could not catch up", exc_info=True)
            except Exception:
                logger.exception("audit_chain failed; retrying at the next poll")
            stop.wait(wait)
