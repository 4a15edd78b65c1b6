"""Group commit: many concurrent transfers, one transaction, one fsync.

Callers queue their transfer and wait. One writer thread takes everything that queued
up while it was committing (no artificial delay, so a lone request is not slowed),
applies the commands in order against the same in-memory aggregates, so the second
payment from an account sees the first, and saves all their events in ONE
``save()``. Only then is each caller answered, with its own result or its own
business error: nothing is acknowledged before it is committed.

The writer keeps its own copies of the accounts it touched, so a group usually reads
nothing before it writes. A copy may be stale when something else wrote since; that
is safe because a successful transfer writes to both of its accounts, so the save
conflicts on a stale version, and a refusal (the one outcome that writes nothing to
the accounts) is only recorded after the group was re-run on accounts read fresh.

A command's business rejection is recorded in the same save (``Transfer.Rejected``)
and the others go on. When the save conflicts (another process wrote, or a transfer
id already existed) the whole group is re-run from fresh state with the "does this id
exist?" reads on: nothing of it was written and no caller has been answered yet, so
re-running is exactly as safe as the per-command retry.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain.account import Account
from domain.errors import (
    REJECTIONS_BY_CODE,
    ConcurrencyConflict,
    IdempotencyKeyReused,
    LedgerError,
    TransferRejected,
)
from domain.transfer import REJECTED, Transfer, TransferRequest
from domain.views import TransferView

if TYPE_CHECKING:
    from domain.ledger import Ledger

logger = logging.getLogger(__name__)

GROUP_SIZE_MAX = 512
ACCOUNTS_CACHED_MAX = 100_000
CLOSE_TIMEOUT_SECONDS = 30.0


@dataclass
class TransferCommand:
    transfer_id: UUID
    request: TransferRequest
    future: Future[TransferView] = field(default_factory=Future)


@dataclass
class _Group:
    """The state of one attempt at committing a group."""

    accounts: dict[UUID, Account] = field(default_factory=dict)
    transfers: dict[UUID, Transfer] = field(default_factory=dict)
    outcomes: list[Transfer | TransferView | LedgerError] = field(default_factory=list)
    rejected: bool = False

    def first_events(self) -> dict[UUID, int]:
        """Identity of each new transfer's first event, to find its log position."""
        return {tid: id(t.pending_events[0]) for tid, t in self.transfers.items()}


class GroupCommitter:
    def __init__(self, ledger: Ledger, group_size_max: int = GROUP_SIZE_MAX) -> None:
        assert group_size_max >= 1
        self.ledger = ledger
        self.group_size_max = group_size_max
        self.accounts_cached_max = ACCOUNTS_CACHED_MAX
        self._accounts: dict[UUID, Account] = {}
        self.groups_committed = 0
        self.commands_committed = 0
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
        """Applies and commits ``group``; answers every command's future.

        A command whose caller gave up (cancelled its future) before this point is
        left out, so it is not committed; from here on, a future can't be cancelled.
        """
        group = [c for c in group if c.future.set_running_or_notify_cancel()]
        if not group:
            return
        ledger = self.ledger
        verified = False
        for number in range(ledger.retry_attempts):
            attempt = self._apply_group(group, check_existing=number > 0, verified=verified)
            if attempt.rejected and not verified:
                # A refusal is recorded for good, so it must not rest on a copy that may
                # be stale: run the group again on accounts read fresh from the store.
                self._forget(attempt)
                verified = True
                continue
            first_events = attempt.first_events()
            try:
                recordings = ledger.save(*attempt.accounts.values(), *attempt.transfers.values())
            except BaseException as error:
                self._forget(attempt)  # the copies hold changes that were not saved
                if not isinstance(error, IntegrityError):
                    raise
                verified = True
                ledger.conflict_retries += 1
                ceiling = min(0.1, ledger.retry_backoff_seconds * 2**number)
                time.sleep(random.uniform(0, ceiling))
                continue
            by_event = {id(r.domain_event): r.notification.id for r in recordings}
            positions = {tid: by_event[event] for tid, event in first_events.items()}
            self._answer(group, attempt, positions)
            self.groups_committed += 1
            self.commands_committed += len(group)
            return
        conflict = ConcurrencyConflict(
            f"gave up after {ledger.retry_attempts} attempts: the records kept changing"
        )
        for command in group:
            command.future.set_exception(conflict)

    def forget_unless_writer(self, aggregate_ids: Iterable[UUID]) -> None:
        """Drops the copies of accounts that another thread just saved.

        Not needed for correctness (a stale copy conflicts on save), but it spares
        the writer a failed transaction after every write that bypassed it.
        """
        if threading.current_thread() is self._thread:
            return
        for aggregate_id in aggregate_ids:
            self._accounts.pop(aggregate_id, None)

    def _forget(self, attempt: _Group) -> None:
        for account_id in attempt.accounts:
            self._accounts.pop(account_id, None)

    def _current_account(self, account_id: UUID, verified: bool) -> Account:
        """The writer's own copy of an account; with ``verified``, up to date.

        Only this thread touches these copies, so unlike the shared aggregate cache
        they need no defensive copy. An unverified copy may be stale (another thread
        or process wrote since): a save built on it then conflicts on the account's
        version, and a refusal built on it is re-run verified, so neither a success
        nor a refusal is ever decided on stale state.
        """
        account = self._accounts.pop(account_id, None)
        if account is None:
            account = self.ledger._get_account(account_id)
        elif verified:
            for event in self.ledger.events.get(account_id, gt=account.version):
                account = event.mutate(account)  # type: ignore[attr-defined]
        self._accounts[account_id] = account  # most recently used last
        if len(self._accounts) > self.accounts_cached_max:
            del self._accounts[next(iter(self._accounts))]
        return account

    def _apply_group(
        self, group: list[TransferCommand], check_existing: bool, verified: bool
    ) -> _Group:
        attempt = _Group()
        for command in group:
            try:
                attempt.outcomes.append(self._apply_one(command, attempt, check_existing, verified))
            except LedgerError as error:
                attempt.outcomes.append(error)
        return attempt

    def _apply_one(
        self, command: TransferCommand, attempt: _Group, check_existing: bool, verified: bool
    ) -> Transfer | TransferView:
        ledger = self.ledger
        transfer_id, request = command.transfer_id, command.request
        earlier = attempt.transfers.get(transfer_id)
        if earlier is not None:  # the same id twice in one group
            if earlier.request != request:
                raise IdempotencyKeyReused(f"{transfer_id} was used for another request")
            return earlier
        if check_existing:
            existing = ledger._find(transfer_id)
            if existing is not None:
                return ledger._replay_transfer(existing, request)
        for account_id in (request.debit_account_id, request.credit_account_id):
            if account_id not in attempt.accounts:
                attempt.accounts[account_id] = self._current_account(account_id, verified)
        try:
            transfer = ledger._apply(transfer_id, request, attempt.accounts)
        except TransferRejected as rejection:
            attempt.rejected = True
            attempt.transfers[transfer_id] = Transfer.reject(
                transfer_id, request, rejection.code, rejection.detail
            )
            raise
        attempt.transfers[transfer_id] = transfer
        return transfer

    def _answer(
        self, group: list[TransferCommand], attempt: _Group, positions: dict[UUID, int]
    ) -> None:
        seen: set[UUID] = set()
        for command, outcome in zip(group, attempt.outcomes, strict=True):
            if isinstance(outcome, Transfer):
                replayed = command.transfer_id in seen
                seen.add(command.transfer_id)
                if outcome.status == REJECTED:
                    command.future.set_exception(_rejection_of(outcome))
                    continue
                position = positions[command.transfer_id]
                command.future.set_result(TransferView.of(outcome, position, replayed=replayed))
            elif isinstance(outcome, TransferView):
                command.future.set_result(outcome)
            else:
                command.future.set_exception(outcome)


def _rejection_of(transfer: Transfer) -> LedgerError:
    assert transfer.error_code is not None and transfer.error_detail is not None
    return REJECTIONS_BY_CODE[transfer.error_code](transfer.error_detail)
