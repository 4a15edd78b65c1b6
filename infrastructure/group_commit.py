"""Group commit: many concurrent transfers, one transaction, one fsync.

Callers queue their transfer and wait. One writer thread takes everything that queued
up while it was committing (no artificial delay, so a lone request is not slowed),
decides the transfers in order on the same copies of the accounts, so the second
payment from an account sees the first, and saves all their events in ONE ``save()``.
Only then is each caller answered, with its own result or its own business error:
nothing is acknowledged before it is committed.

Each attempt at a group is a unit of work (``_GroupUnit``): it takes copies of the
accounts it touches and decides on those. The writer keeps the last *committed*
state of the accounts it wrote (``CommittedAccounts``), so a group usually reads
nothing before it writes, and that cache is written in exactly one place: after a
save returned, with the saved aggregates. On any failure before that the unit is
dropped whole, so an unsaved event or an advanced version cannot reach the next
group: the leak that a failure while deciding once caused is impossible by
construction, not prevented by one more ``except``.

A committed copy may be stale when something else wrote since. That is safe because
a successful transfer writes to both of its accounts, so the save conflicts on a
stale version, and a refusal (the one outcome that writes nothing to the accounts) is
only recorded after the group was re-run on accounts brought up to date.

When the save conflicts (another process wrote, or a transfer id already existed) the
whole group is re-run from fresh state with the "does this id exist?" reads on:
nothing of it was written and no caller has been answered yet, so re-running is
exactly as safe as the per-command retry.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from copy import deepcopy
from dataclasses import dataclass, field
from uuid import UUID

from eventsourcing.persistence import IntegrityError, PersistenceError

from domain.account import Account
from domain.errors import ConcurrencyConflict, IdempotencyKeyReused, LedgerError, TransferRejected
from domain.ledger import Ledger, backoff_seconds, store_unavailable
from domain.results import TransferView
from domain.rules import decide_transfer
from domain.transfer import REJECTED, Transfer, TransferRequest

logger = logging.getLogger(__name__)

GROUP_SIZE_MAX = 512
ACCOUNTS_CACHED_MAX = 100_000
CLOSE_TIMEOUT_SECONDS = 30.0


@dataclass
class TransferCommand:
    transfer_id: UUID
    request: TransferRequest
    future: Future[TransferView] = field(default_factory=Future)


class CommittedAccounts:
    """The last committed state of the accounts the writer saved, most recent last.

    Only committed states go in (``put_committed``, called after a save returned);
    readers get a copy of their own. Another thread may ``evict`` at any time: a lost
    eviction only costs a version conflict, never a wrong decision.
    """

    def __init__(self, size_max: int = ACCOUNTS_CACHED_MAX) -> None:
        self.size_max = size_max
        self._accounts: dict[UUID, Account] = {}

    def copy_of(self, account_id: UUID) -> Account | None:
        account = self._accounts.get(account_id)
        return None if account is None else deepcopy(account)

    def put_committed(self, accounts: Iterable[Account]) -> None:
        for account in accounts:
            assert not account.pending_events, "only committed states are cached"
            self._accounts.pop(account.id, None)
            self._accounts[account.id] = account
        while len(self._accounts) > self.size_max:
            self._accounts.pop(next(iter(self._accounts)), None)

    def evict(self, account_ids: Iterable[UUID]) -> None:
        for account_id in account_ids:
            self._accounts.pop(account_id, None)


class _GroupUnit:
    """One attempt at a group: copies of its accounts, its transfers, its outcomes.

    Nothing outside refers to it; dropping it discards everything it decided.
    """

    def __init__(self, ledger: Ledger, committed: CommittedAccounts, verified: bool) -> None:
        self.ledger = ledger
        self.committed = committed
        self.verified = verified
        self.accounts: dict[UUID, Account] = {}
        self.transfers: dict[UUID, Transfer] = {}
        self.outcomes: list[Transfer | TransferView | LedgerError] = []
        self.rejected = False

    def decide_all(self, group: list[TransferCommand], check_existing: bool) -> None:
        for command in group:
            try:
                self.outcomes.append(self._decide(command, check_existing))
            except LedgerError as error:
                self.outcomes.append(error)

    def aggregates(self) -> list[Account | Transfer]:
        return [*self.accounts.values(), *self.transfers.values()]

    def first_events(self) -> dict[UUID, int]:
        """Identity of each new transfer's first event, to find its log position."""
        return {tid: id(t.pending_events[0]) for tid, t in self.transfers.items()}

    def _decide(self, command: TransferCommand, check_existing: bool) -> Transfer | TransferView:
        transfer_id, request = command.transfer_id, command.request
        earlier = self.transfers.get(transfer_id)
        if earlier is not None:  # the same id twice in one group
            if earlier.request != request:
                raise IdempotencyKeyReused(f"{transfer_id} was used for another request")
            return earlier
        if check_existing:
            existing = self.ledger.find(transfer_id)
            if existing is not None:
                return self.ledger.replay_transfer(existing, request)
        for account_id in (request.debit_account_id, request.credit_account_id):
            if account_id not in self.accounts:
                self.accounts[account_id] = self._copy_of(account_id)
        try:
            transfer = decide_transfer(self.accounts, transfer_id, request, self.ledger.clock())
        except TransferRejected as rejection:
            self.rejected = True
            transfer = Transfer.reject(transfer_id, request, rejection.code, rejection.detail)
            self.transfers[transfer_id] = transfer
            raise
        self.transfers[transfer_id] = transfer
        return transfer

    def _copy_of(self, account_id: UUID) -> Account:
        """A copy of the account for this unit; when ``verified``, brought up to date."""
        account = self.committed.copy_of(account_id)
        if account is None:
            return self.ledger.load_account(account_id)
        if self.verified:
            for event in self.ledger.events.get(account_id, gt=account.version):
                account = event.mutate(account)  # type: ignore[attr-defined]
        return account


class GroupCommitter:
    """The transfer queue of a ``TunedLedger``: one writer thread, one save per group."""

    def __init__(self, ledger: Ledger, group_size_max: int = GROUP_SIZE_MAX) -> None:
        assert group_size_max >= 1
        self.ledger = ledger
        self.group_size_max = group_size_max
        self.committed = CommittedAccounts()
        self.groups_committed = 0
        self._queue: queue.SimpleQueue[TransferCommand | None] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, transfer_id: UUID, request: TransferRequest) -> Future[TransferView]:
        """Queues one transfer; the future holds its view or its ``LedgerError``."""
        if self._closing.is_set():
            raise RuntimeError("the ledger is closing")
        command = TransferCommand(transfer_id, request)
        self._queue.put(command)
        return command.future

    def close(self) -> None:
        """Commits what is queued, then stops the writer."""
        self._closing.set()
        self._queue.put(None)
        self._thread.join(CLOSE_TIMEOUT_SECONDS)

    def saved_elsewhere(self, account_ids: Iterable[UUID]) -> None:
        """Drops the copies of accounts that another thread just saved.

        Not needed for correctness (a stale copy conflicts on save), but it spares
        the writer a failed transaction after every write that bypassed it.
        """
        if threading.current_thread() is not self._thread:
            self.committed.evict(account_ids)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < self.group_size_max:
                try:
                    command = self._queue.get_nowait()
                except queue.Empty:
                    break
                if command is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(command)
            try:
                self.commit_group(group)
            except BaseException as error:  # noqa: BLE001 - answer every caller, then go on
                logger.exception("group commit failed")
                for command in group:
                    if not command.future.done():
                        command.future.set_exception(error)

    def commit_group(self, group: list[TransferCommand]) -> None:
        """Decides and commits ``group``; answers every command's future.

        A command whose caller gave up (cancelled its future) before this point is
        left out, so it is not committed; from here on, a future can't be cancelled.
        """
        group = [c for c in group if c.future.set_running_or_notify_cancel()]
        if not group:
            return
        ledger = self.ledger
        verified = False
        for number in range(ledger.retry_attempts):
            unit = _GroupUnit(ledger, self.committed, verified)
            try:
                unit.decide_all(group, check_existing=number > 0)
                if unit.rejected and not verified:
                    # A refusal is recorded for good, so it must not rest on a copy that
                    # may be stale: run the group again on accounts brought up to date.
                    verified = True
                    continue
                first_events = unit.first_events()
                recordings = ledger.save(*unit.aggregates())
            except IntegrityError:
                self.committed.evict(unit.accounts)
                verified = True
                ledger.conflict_retries += 1
                time.sleep(backoff_seconds(number, ledger.retry_backoff_seconds))
                continue
            except BaseException as error:
                self.committed.evict(unit.accounts)
                self._fail(group, error)
                return
            self.committed.put_committed(unit.accounts.values())
            by_event = {id(r.domain_event): r.notification.id for r in recordings}
            positions = {tid: by_event[event] for tid, event in first_events.items()}
            self._answer(group, unit, positions)
            self.groups_committed += 1
            return
        self._fail(group, ConcurrencyConflict(
            f"gave up after {ledger.retry_attempts} attempts: the records kept changing"
        ))  # fmt: skip

    def _fail(self, group: list[TransferCommand], error: BaseException) -> None:
        """Answers every caller of a group that was not committed, or may not be."""
        if isinstance(error, PersistenceError):
            error = store_unavailable(error)  # raised before the commit was sent
        for command in group:
            command.future.set_exception(error)

    def _answer(
        self, group: list[TransferCommand], unit: _GroupUnit, positions: dict[UUID, int]
    ) -> None:
        seen: set[UUID] = set()
        for command, outcome in zip(group, unit.outcomes, strict=True):
            if isinstance(outcome, Transfer):
                replayed = command.transfer_id in seen
                seen.add(command.transfer_id)
                rejection = outcome.rejection() if outcome.status == REJECTED else None
                if rejection is not None:
                    command.future.set_exception(rejection)
                    continue
                position = positions[command.transfer_id]
                command.future.set_result(TransferView.of(outcome, position, replayed=replayed))
            elif isinstance(outcome, TransferView):
                command.future.set_result(outcome)
            else:
                command.future.set_exception(outcome)
