"""``audit verify``: recompute the chain from the stored events and check everything.

The log is streamed from position 1 in batches up to the head as it was when the
run began; only the chain hash, one record per account and the transfers still
being matched are held, so memory does not grow with the log. Checked:

- the chain against every stored checkpoint, the stored head and the given digest
  (a digest taken before a legacy chain was re-chained may be of either algorithm);
- positions: a missing position is a deleted event unless the chain recorded it as
  empty when it passed (PostgreSQL consumes sequence numbers on rollback); an event
  at a position recorded as empty was inserted later;
- each row's stored form against the ledger's (``projections.audit.stored``);
- the ledger invariants (``projections.audit.invariants``), and that no aggregate
  holds a world account's id (``projections.audit.world_ids``);
- pluggable read-model checks, each comparing its view with the replayed accounts,
  and the views stalled before an event they cannot apply (``projection_stalled``).

A row in any form, a state that does not decode, a view that cannot be read: each is
a problem at its position, never an exception (the databases being unavailable is
the one error that stops a run). Problems are sorted by position, those of the log's
integrity (chain, checkpoints, positions, digest, stored form) before the invariants,
which a broken log makes fail as a consequence: the first problem is the first place
where the stored data disagree with the chain or the digest, else the first place
where an invariant fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eventsourcing.application import Application

from projections.audit.chain import AuditChain
from projections.audit.digests import DigestCheck
from projections.audit.event_log import EventLog
from projections.audit.hashing import CHAIN_FUNCTIONS, GENESIS, Digest, Row
from projections.audit.invariants import ACCOUNT, LedgerInvariants, Problem
from projections.audit.problems import ReadModelCheck, VerifyResult
from projections.audit.replay import Replay, ViewChecks, state_decoder
from projections.audit.store import START, ChainPoint, ViewChainStore
from projections.audit.stored import Replayable, findings, parse_id, shown
from projections.failures import ProjectionFailure

BATCH_SIZE_DEFAULT = 5000
GAP_RUN_LISTED_MAX = 10_000
# A broken log explains every invariant that fails after it, so its problems come
# first: the first problem is the root cause, not a consequence.
INTEGRITY_CHECKS = frozenset(
    {"chain", "checkpoint", "gap", "inserted", "digest", "originator_id", "stored_type"}
)
STALLED_CHECK = "projection_stalled"


class Verifier:
    """One verification run; use ``run``."""

    def __init__(
        self,
        chain: AuditChain,
        decode: Callable[[bytes], Any] | None,
        digest: Digest | None = None,
        read_model_checks: Sequence[ReadModelCheck] = (),
        batch_size: int = BATCH_SIZE_DEFAULT,
        *,
        algorithm: str | None = None,
        stalls: Sequence[ProjectionFailure] = (),
    ) -> None:
        self.log: EventLog = chain.log
        self.store: ViewChainStore = chain.store
        self.decode = decode
        self.read_model_checks = read_model_checks
        self.batch_size = batch_size
        self.stalls = stalls
        # The stored checkpoints' algorithm (the legacy one only to check a chain
        # before it is upgraded, or one that could not be).
        self.algorithm = algorithm or chain.algorithm()
        self.chain_hashes = CHAIN_FUNCTIONS[self.algorithm]
        upgrade = self.store.upgrade() if digest is not None else None
        self.digest_check = (
            None
            if digest is None
            else DigestCheck(digest, self.algorithm, None if upgrade is None else upgrade[0])
        )
        self.replayable = Replayable()
        self.invariants = LedgerInvariants()
        self.replay = None if decode is None else Replay(self.invariants, self.replayable, decode)
        self.views = ViewChecks(read_model_checks if decode is not None else (), self.invariants)
        self.chain_hash = GENESIS
        self.events = 0
        self.expected_position = 1
        self.chain_broken = False
        self.last_good_checkpoint = 0
        self.tracked: ChainPoint = START
        self.tracked_seen = False

    def report(self, check: str, detail: str, position: int | None, row: Row | None = None) -> None:
        """Records a problem; with the ``row`` stored at ``position``, names its event
        and, for an account's event, the account."""
        account_id = None
        if row is not None:
            originator = parse_id(row[1])
            topic = self.replayable.topic(row[3])
            kind = shown(row[3]) if topic is None else topic.rsplit(":", 1)[-1]
            of = shown(row[1]) if originator is None else str(originator)
            detail += f" (stored there: {kind} v{shown(row[2])} of {of})"
            if topic is not None and topic.startswith(ACCOUNT):
                account_id = originator
        self.invariants.report(Problem(check, detail, position, account_id))

    def run(
        self, progress: Callable[[int], None] | None = None, stop: int | None = None
    ) -> VerifyResult:
        # The stored head is read before the log's head, so a follower moving on
        # concurrently can never put it past the end of what is checked.
        self.tracked = self.store.head()
        self.views.load()
        if stop is None:
            stop = self.log.head_position()
        after = 0
        # One thread reads the next batch (events, checkpoints, gaps) while this one
        # checks the current batch: the database's time overlaps ours.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-read") as reader:
            pending = reader.submit(self._fetch, after, stop)
            while True:
                batch = pending.result()
                if batch is None:
                    break
                rows = batch[0]
                pending = reader.submit(self._fetch, rows[-1][0], stop)
                self._check_batch(after, *batch)
                after = rows[-1][0]
                if progress is not None:
                    progress(len(rows))
        self._finish(after)
        return self._result(after)

    def _fetch(self, after: int, stop: int) -> Batch | None:
        rows = self.log.read(after, stop, self.batch_size)
        if not rows:
            return None
        last = rows[-1][0]
        return rows, self.store.checkpoints(after, last), self.store.gaps(after, last)

    def _check_batch(
        self,
        after: int,
        rows: list[Row],
        checkpoints: list[tuple[int, bytes, int]],
        known_gaps: list[int],
    ) -> None:
        last = rows[-1][0]
        hashes = self.chain_hashes(self.chain_hash, rows)
        index = _indexer(rows)
        self._check_positions(rows, index, known_gaps)
        for at, (check, detail) in findings(rows):
            self.report(check, detail, rows[at][0], rows[at])
        events_before = self.events
        for position, chain_hash, events in checkpoints:
            i = index(position)
            if i is None:
                self.report("checkpoint", "a checkpoint names a position with no event", position)
            elif not self.chain_broken and (
                chain_hash != hashes[i] or events != events_before + i + 1
            ):
                self._chain_differs(position, events_before + i + 1, events, rows[i])
            else:
                self.last_good_checkpoint = position
        if after < self.tracked.position <= last:
            i = index(self.tracked.position)
            if i is not None:
                self._check_tracked(
                    self.tracked.position, hashes[i], events_before + i + 1, rows[i]
                )
        if self.digest_check is not None:
            position = self.digest_check.digest.position
            i = index(position) if after < position <= last else None
            self.digest_check.batch(after, rows, hashes, i, self.report)
        self.chain_hash = hashes[-1]
        self.events += len(rows)
        self.expected_position = last + 1
        if self.replay is not None:
            self._feed_batch(after, rows)

    def _check_positions(self, rows: list[Row], index: Indexer, known_gaps: list[int]) -> None:
        """Gaps nobody recorded (deleted events) and events in recorded gaps."""
        for gap in known_gaps:
            i = index(gap)
            if i is not None:
                self.report(
                    "inserted",
                    "an event is stored at a position that held none when it was chained",
                    gap,
                    rows[i],
                )
        first, last = rows[0][0], rows[-1][0]
        if first == self.expected_position and last - first == len(rows) - 1:
            return  # contiguous: the common case
        known = set(known_gaps)
        expected = self.expected_position
        for row in rows:
            if row[0] != expected:
                self._check_gap(expected, row[0], known)
            expected = row[0] + 1

    def _feed_batch(self, after: int, rows: list[Row]) -> None:
        assert self.replay is not None
        views, feed = self.views, self.replay.feed
        self.invariants.postings = [] if views.streaming else None
        for row in rows:
            due = views.next_position()
            if due is not None and due < row[0]:
                views.run_until(row[0] - 1)
            feed(row)
        if views.streaming:
            views.stream(after, rows[-1][0])
        self.invariants.postings = None

    def _check_gap(self, first: int, position: int, known_gaps: set[int]) -> None:
        if position - first > GAP_RUN_LISTED_MAX:
            self.report("gap", f"positions {first} to {position - 1} hold no event", first)
            return
        missing = [p for p in range(first, position) if p not in known_gaps]
        if missing:
            self.report(
                "gap",
                f"no event at position {missing[0]}"
                + (f" (and {len(missing) - 1} more before {position})" if len(missing) > 1 else "")
                + ": deleted, or not chained yet",
                missing[0],
            )

    def _chain_differs(self, position: int, recomputed: int, recorded: int, row: Row) -> None:
        self.chain_broken = True  # every later checkpoint differs too: report the first
        self.report(
            "chain",
            f"the recomputed chain differs from the checkpoint at position {position} "
            f"({recomputed} events recomputed, {recorded} recorded): an event in "
            f"positions {self.last_good_checkpoint + 1}..{position} was changed, moved, "
            "inserted or deleted after it was chained",
            position,
            row,
        )

    def _check_tracked(self, position: int, chain_hash: bytes, events: int, row: Row) -> None:
        self.tracked_seen = True
        if not self.chain_broken and (
            self.tracked.hash != chain_hash or self.tracked.events != events
        ):
            self.chain_broken = True
            self.report(
                "chain",
                f"the recomputed chain differs from the audit_chain head at position "
                f"{position}: an event in positions {self.last_good_checkpoint + 1}.."
                f"{position} was changed, moved, inserted or deleted after it was chained",
                position,
                row,
            )

    def _finish(self, last: int) -> None:
        if self.tracked.position > 0 and not self.tracked_seen:
            self.report(
                "chain",
                f"the audit_chain head is at position {self.tracked.position} but no event "
                f"is stored there (the log ends at {last}): events were deleted",
                min(self.tracked.position, last + 1),
            )
        if self.digest_check is not None:
            self.digest_check.finish(self.report)
        if self.replay is None:
            return
        self.views.run_until(last)
        for failure in self.stalls:
            detail = f"{failure.describe()} (since {failure.since})"
            self.invariants.report(Problem(STALLED_CHECK, detail, failure.position))
        self.views.finish(last)
        self.invariants.finish(last)

    def _result(self, last: int) -> VerifyResult:
        problems = sorted(
            self.invariants.problems,
            key=lambda p: (
                p.check not in INTEGRITY_CHECKS,
                p.position if p.position is not None else last + 1,
            ),
        )
        checks = ["chain", "checkpoints", "positions", "stored form"]
        if self.digest_check is not None:
            checks.append(self.digest_check.check_name)
        if self.replay is not None:
            checks += ["invariants", "world ids", *self.views.checked]
            checks += [f"{name} (view not built: skipped)" for name in self.views.skipped]
            checks.append("projections")
        return VerifyResult(
            ok=not problems,
            events_checked=self.events,
            head={"position": last, "hash": self.chain_hash.hex(), "algorithm": self.algorithm},
            problems=problems,
            problems_dropped=self.invariants.problems_dropped,
            checks=checks,
        )


Indexer = Callable[[int], int | None]
# A batch as read: events, the checkpoints and the recorded gaps in its range.
Batch = tuple[list[Row], list[tuple[int, bytes, int]], list[int]]


def _indexer(rows: list[Row]) -> Indexer:
    """position -> index in ``rows`` (None if no event there); O(1) when contiguous."""
    first, count = rows[0][0], len(rows)
    if rows[-1][0] - first == count - 1:
        return lambda position: position - first if 0 <= position - first < count else None
    where = {row[0]: i for i, row in enumerate(rows)}
    return where.get


def verify(
    application: Application[Any],
    chain: AuditChain,
    *,
    digest: Digest | None = None,
    invariants: bool = True,
    read_model_checks: Sequence[ReadModelCheck] = (),
    batch_size: int = BATCH_SIZE_DEFAULT,
    progress: Callable[[int], None] | None = None,
    algorithm: str | None = None,
    stalls: Sequence[ProjectionFailure] = (),
    stop: int | None = None,
) -> VerifyResult:
    """Verifies ``application``'s log against ``chain``'s stored checkpoints, up to
    ``stop`` (default: the log's head when it starts).

    ``invariants=False`` checks the chain, the checkpoints, the positions, the stored
    form and the digest only (it decodes nothing). ``algorithm`` is the stored
    chain's by default. ``stalls`` are reported with the invariants.
    """
    decode = state_decoder(application) if invariants else None
    verifier = Verifier(
        chain,
        decode,
        digest,
        read_model_checks,
        batch_size,
        algorithm=algorithm,
        stalls=stalls,
    )
    return verifier.run(progress, stop)
