"""Re-chaining a store chained with the legacy algorithm, once it is shown unchanged.

A store chained by an earlier version holds ``sha256-chain-v1`` checkpoints, which
the current algorithm cannot extend. The first digest, verify or chain follower of
this version upgrades it:

1. it verifies the log up to the chain's head against the v1 checkpoints, head and
   recorded gaps, with the stored-form checks (``projections.audit.stored``): the log
   is as it was chained, and every row is in the form the ledger writes (v1 hashed
   the parsed id, so a change of the stored id's form was invisible to it; the form
   check finds it);
2. if all of that holds, it empties the chain, recording the old head's position and
   algorithm (a digest taken before is checked with v1 up to that position), and the
   chain is computed again from position 0 with the current algorithm;
3. if not, it changes nothing and raises ``ChainUpgradeBlocked`` with the problems:
   re-chaining would bless a log that was changed after it was chained. ``audit
   verify`` then checks with v1 and reports them, with ``chain_algorithm``; ``audit
   digest`` refuses; the follower waits. ``eventledger audit rechain`` re-chains the
   log as it is, once someone has looked.
"""

from __future__ import annotations

import logging
from typing import Any

from eventsourcing.application import Application

from projections.audit.chain import AuditChain
from projections.audit.hashing import ALGORITHM
from projections.audit.problems import VerifyResult
from projections.audit.verify import verify

logger = logging.getLogger(__name__)
UPGRADE_ATTEMPTS_MAX = 3


class ChainUpgradeBlocked(Exception):
    """The legacy chain does not match the log: it is not re-chained."""

    def __init__(self, algorithm: str, result: VerifyResult) -> None:
        first = result.problems[0]
        super().__init__(
            f"the audit chain is stored with {algorithm} and the log no longer matches it "
            f"(first at position {first.position}: {first.check}); it is not re-chained with "
            f"{ALGORITHM}: run `eventledger audit verify`, then `eventledger audit rechain` "
            "to accept the log as it is"
        )
        self.algorithm = algorithm
        self.result = result


class ChainMoving(Exception):
    """Another follower kept extending the legacy chain (a process of the earlier
    version still running): the upgrade gave up for now."""


def upgrade(chain: AuditChain, application: Application[Any]) -> bool:
    """Makes ``chain`` one of the current algorithm; returns True if it re-chained.

    Raises ChainUpgradeBlocked, ChainMoving.
    """
    for _ in range(UPGRADE_ATTEMPTS_MAX):
        algorithm = chain.algorithm()
        if algorithm == ALGORITHM:
            return False
        head = chain.store.head()
        result = verify(application, chain, invariants=False, stop=head.position)
        if not result.ok:
            raise ChainUpgradeBlocked(algorithm, result)
        if chain.store.restart(head, replaced=algorithm):
            logger.warning(
                "audit chain: %s checkpoints up to position %d match the log; re-chaining "
                "it with %s",
                algorithm,
                head.position,
                ALGORITHM,
            )
            return True
    raise ChainMoving(f"the {chain.algorithm()} chain kept moving while it was checked")
