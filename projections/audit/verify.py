"""``audit verify``: recompute the chain from the stored events and check everything.

The log is streamed from position 1 in batches up to the head as it was when the
run began; only the chain hash, one record per account and the transfers still
being matched are held, so memory does not grow with the log. Checked:

- the chain against every stored checkpoint, the stored head and the given digest;
- positions: a missing position is a deleted event unless the chain recorded it as
  empty when it passed (PostgreSQL consumes sequence numbers on rollback); an event
  at a position recorded as empty was inserted later;
- the ledger invariants (``projections.audit.invariants``);
- pluggable read-model checks, each comparing its view with the replayed accounts.

Problems are sorted by position, those of the log's integrity (chain, checkpoints,
positions, digest) before the invariants, which a broken log makes fail as a
consequence: the first problem is the first place where the stored data disagree
with the chain or the digest, else the first place where an invariant fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from projections.audit.chain import AuditChain
from projections.audit.event_log import EventLog
from projections.audit.hashing import ALGORITHM, GENESIS, Digest, Row, chain_hashes
from projections.audit.invariants import ACCOUNT, LedgerInvariants, Problem
from projections.audit.problems import PostingsCheck, ReadModelCheck, VerifyResult
from projections.audit.store import START, ChainPoint, ViewChainStore

BATCH_SIZE_DEFAULT = 5000
GAP_RUN_LISTED_MAX = 10_000
# A broken log explains every invariant that fails after it, so its problems come
# first: the first problem is the root cause, not a consequence.
INTEGRITY_CHECKS = frozenset({"chain", "checkpoint", "gap", "inserted", "digest"})


def state_decoder(application: Application[Any]) -> Callable[[bytes], Any]:
    """Stored state bytes -> the event's field dict, through the app's own mapper."""
    mapper = application.mapper
    cipher, compressor, transcoder = mapper.cipher, mapper.compressor, mapper.transcoder

    def decode(state: bytes) -> Any:
        if cipher is not None:
            state = cipher.decrypt(state)
        if compressor is not None:
            state = compressor.decompress(state)
        return transcoder.decode(state)

    return decode


class Verifier:
    """One verification run; use ``run``."""

    def __init__(
        self,
        chain: AuditChain,
        decode: Callable[[bytes], Any] | None,
        digest: Digest | None = None,
        read_model_checks: Sequence[ReadModelCheck] = (),
        batch_size: int = BATCH_SIZE_DEFAULT,
    ) -> None:
        self.log: EventLog = chain.log
        self.store: ViewChainStore = chain.store
        self.decode = decode
        self.digest = digest
        self.read_model_checks = read_model_checks
        self.batch_size = batch_size
        self.invariants = LedgerInvariants()
        self.chain_hash = GENESIS
        self.events = 0
        self.expected_position = 1
        self.chain_broken = False
        self.last_good_checkpoint = 0
        self.tracked: ChainPoint = START
        self.tracked_seen = False
        self.digest_seen = False
        self.batch_after = 0
        self.due: list[tuple[int, ReadModelCheck]] = []
        self.checked: list[str] = []
        self.skipped: list[str] = []

    def report(self, check: str, detail: str, position: int | None, row: Row | None = None) -> None:
        """Records a problem; with the ``row`` stored at ``position``, names its event
        and, for an account's event, the account."""
        account_id = None
        if row is not None:
            originator = UUID(bytes=row[1])
            detail += f" (stored there: {row[3].rsplit(':', 1)[-1]} v{row[2]} of {originator})"
            account_id = originator if row[3].startswith(ACCOUNT) else None
        self.invariants.report(Problem(check, detail, position, account_id))

    def run(self, progress: Callable[[int], None] | None = None) -> VerifyResult:
        # The stored head is read before the log's head, so a follower moving on
        # concurrently can never put it past the end of what is checked.
        self.tracked = self.store.head()
        self._load_read_models()
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
        hashes = chain_hashes(self.chain_hash, rows)
        index = _indexer(rows)
        self._check_positions(rows, index, known_gaps)
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
        if self.digest is not None and after < self.digest.position <= last:
            i = index(self.digest.position)
            if i is not None:
                self._check_digest(self.digest.position, hashes[i], rows[i])
        self.chain_hash = hashes[-1]
        self.events += len(rows)
        self.expected_position = last + 1
        if self.decode is not None:
            self.batch_after = after
            self._feed_batch(rows)

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

    def _feed_batch(self, rows: list[Row]) -> None:
        decode, invariants = self.decode, self.invariants
        assert decode is not None
        streaming = [c for c in self.read_model_checks if isinstance(c, PostingsCheck)]
        invariants.postings = [] if streaming else None
        for position, originator_id, version, topic, state in rows:
            if self.due and self.due[0][0] < position:
                self._run_read_model_checks(position - 1)
            self._feed(invariants, decode, position, originator_id, version, topic, state)
        for check in streaming:
            assert invariants.postings is not None
            for problem in check.check_postings(self.batch_after, rows[-1][0], invariants.postings):
                invariants.report(problem)
        invariants.postings = None

    def _feed(
        self,
        invariants: LedgerInvariants,
        decode: Callable[[bytes], Any],
        position: int,
        originator_id: bytes,
        version: int,
        topic: str,
        state: bytes,
    ) -> None:
        try:
            data = decode(state)
        except Exception as error:  # noqa: BLE001 - any undecodable state is a finding.
            self.report("decode", f"stored state does not decode: {error}", position)
            return
        try:
            invariants.feed(position, UUID(bytes=originator_id), version, topic, data)
        except (KeyError, TypeError, ValueError) as error:
            invariants.report(
                Problem("decode", f"{topic} lacks or mistypes a field: {error!r}", position)
            )

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

    def _check_digest(self, position: int, chain_hash: bytes, row: Row) -> None:
        assert self.digest is not None
        self.digest_seen = True
        if self.digest.hash != chain_hash:
            self.report(
                "digest",
                f"the recomputed chain at position {position} is {chain_hash.hex()}, "
                f"the digest says {self.digest.hash.hex()}: the log up to {position} is "
                "not the one the digest was taken from",
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
        if self.digest is not None and not self.digest_seen:
            self.report(
                "digest",
                f"the digest names position {self.digest.position}, where no event is stored",
                self.digest.position,
            )
        if self.decode is None:
            return
        self._run_read_model_checks(last)
        for position, check in self.due:
            self.report(
                check.name, f"the view is at position {position}, past the log's end {last}",
                last + 1,
            )  # fmt: skip
        self.invariants.finish(last)

    def _load_read_models(self) -> None:
        if self.decode is None:
            return
        for check in self.read_model_checks:
            position = check.load()
            if position is None:
                self.skipped.append(check.name)
            else:
                self.due.append((position, check))
        self.due.sort(key=lambda due: due[0])

    def _run_read_model_checks(self, reached: int) -> None:
        """Runs the checks whose view position the replay has reached."""
        while self.due and self.due[0][0] <= reached:
            _, check = self.due.pop(0)
            self.checked.append(check.name)
            for problem in check.check(self.invariants, reached):
                self.invariants.report(problem)

    def _result(self, last: int) -> VerifyResult:
        problems = sorted(
            self.invariants.problems,
            key=lambda p: (
                p.check not in INTEGRITY_CHECKS,
                p.position if p.position is not None else last + 1,
            ),
        )
        checks = ["chain", "checkpoints", "positions"]
        if self.digest is not None:
            checks.append("digest")
        if self.decode is not None:
            checks += ["invariants", *self.checked]
            checks += [f"{name} (view not built: skipped)" for name in self.skipped]
        return VerifyResult(
            ok=not problems,
            events_checked=self.events,
            head={"position": last, "hash": self.chain_hash.hex(), "algorithm": ALGORITHM},
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
) -> VerifyResult:
    """Verifies ``application``'s log against ``chain``'s stored checkpoints.

    ``invariants=False`` checks the chain, the checkpoints, the positions and the
    digest only (it decodes nothing).
    """
    decode = state_decoder(application) if invariants else None
    verifier = Verifier(chain, decode, digest, read_model_checks, batch_size)
    return verifier.run(progress)
