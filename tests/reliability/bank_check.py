"""A client's-eye harness for the fault tests and the simulation: transfers sent in
groups, every answer sorted into definite or retry-me, and the bank invariants
checked against a model built from the definite answers alone.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from uuid import UUID

from domain.errors import (
    LedgerError,
    OutcomeUnknown,
    ServiceUnavailable,
    TransferRejected,
    Unavailable,
)
from domain.ledger import Ledger
from domain.money import world_account_id
from domain.results import TransferView
from domain.transfer import TransferRequest
from infrastructure.group_commit import TransferCommand
from infrastructure.settings import Settings
from infrastructure.transfer_queue import QueuedLedger
from infrastructure.tuned_ledger import TunedLedger
from infrastructure.views import ViewStore
from projections.audit import Audit
from projections.catalog import all_projections
from projections.follower import follower_for
from tests.reliability.faults import Faults, InjectedBug

CURRENCIES = ("USD", "EUR")
ACCOUNTS_PER_CURRENCY = 3
FUNDING = 1_000
RETRIES_MAX = 8


@dataclass
class Bank:
    """Accounts, every request sent, and the answers that settled each one."""

    ledger: QueuedLedger
    faults: Faults
    rng: random.Random
    accounts: dict[str, list[UUID]] = field(default_factory=dict)
    requests: dict[UUID, TransferRequest] = field(default_factory=dict)
    settled: dict[UUID, TransferView | TransferRejected] = field(default_factory=dict)
    unsettled: set[UUID] = field(default_factory=set)
    maybe_written: set[UUID] = field(default_factory=set)
    # Pending transfers captured (the amount) or voided (0), as the store tells.
    captured: dict[UUID, int] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)

    def open_and_fund(self) -> None:
        for currency in CURRENCIES:
            ids = [self.open_account(currency) for _ in range(ACCOUNTS_PER_CURRENCY)]
            self.accounts[currency] = ids
            self.send(
                [self._request(world_account_id(currency), a, FUNDING, currency) for a in ids]
            )

    def open_account(self, currency: str) -> UUID:
        """Opens an account under whatever fault is armed; a failed open is sent again
        with the same id (a replay if the first one was written after all)."""
        account_id = self.new_id()
        try:
            return self.ledger.open_account(currency, account_id=account_id).id
        except (Unavailable, InjectedBug):
            with self.faults.suspended():
                return self.ledger.open_account(currency, account_id=account_id).id

    def open_one_more(self) -> None:
        """An account the group-commit writer has not seen: its next group loads it."""
        currency = self.rng.choice(CURRENCIES)
        self.accounts[currency].append(self.open_account(currency))

    def new_id(self) -> UUID:
        """Ids from the seed, so that a run (and the order of its retries) repeats."""
        return UUID(int=self.rng.getrandbits(128), version=4)

    def random_requests(self, count: int) -> list[tuple[UUID, TransferRequest]]:
        requests = []
        for _ in range(count):
            currency = self.rng.choice(CURRENCIES)
            payer, payee = self.rng.sample(self.accounts[currency], 2)
            if self.rng.random() < 0.15:
                payer = world_account_id(currency)
            pending = self.rng.random() < 0.2
            amount = self.rng.randint(1, 700)  # sometimes more than the payer holds
            requests.append(self._request(payer, payee, amount, currency, pending))
        return requests

    def send(self, requests: list[tuple[UUID, TransferRequest]]) -> None:
        """Sends ``requests`` as one group (one command at a time without group commit)."""
        commands = [TransferCommand(transfer_id, request) for transfer_id, request in requests]
        for command in commands:
            self.requests[command.transfer_id] = command.request
            if self.faults.fires("gave_up"):
                self.ledger.gave_up(command.future)  # cancels it: it will not run
        if isinstance(self.ledger, TunedLedger):
            self.ledger.group_committer.commit_group(commands)
        else:
            for command in commands:
                run_now(self.ledger, command)
        for command in commands:
            self._record(command.transfer_id, outcome(command.future))

    def settle_the_rest(self) -> None:
        """Retries every transfer without a definite answer, with its own id."""
        for _ in range(RETRIES_MAX):
            if not self.unsettled:
                return
            retry = sorted(self.unsettled, key=str)
            self.unsettled.clear()
            self.send([(transfer_id, self.requests[transfer_id]) for transfer_id in retry])
        raise AssertionError(f"{len(self.unsettled)} transfers never settled")

    def _request(
        self, payer: UUID, payee: UUID, amount: int, currency: str, pending: bool = False
    ) -> tuple[UUID, TransferRequest]:
        return self.new_id(), TransferRequest(payer, payee, amount, currency, "", {}, pending)

    def _record(self, transfer_id: UUID, answer: TransferView | BaseException) -> None:
        if isinstance(answer, TransferView | TransferRejected):
            self.answers["settled"] += 1
            self.settled[transfer_id] = answer
            return
        self.answers[type(answer).__name__] += 1
        self.unsettled.add(transfer_id)
        if isinstance(answer, OutcomeUnknown):
            self.maybe_written.add(transfer_id)
            return
        # Refused before the commit (ServiceUnavailable), or failed in our own code
        # before it: the promise is that nothing of this attempt was written. Checked
        # at once, reading the store itself, unless an earlier attempt of the same id
        # ended unknown (and so may have been written by that attempt).
        assert isinstance(answer, ServiceUnavailable | InjectedBug), repr(answer)
        if transfer_id not in self.maybe_written:
            with self.faults.suspended():
                assert self.ledger.find(transfer_id) is None, f"{transfer_id} was written"
            self.answers["checked nothing written"] += 1


def run_now(ledger: Ledger, command: TransferCommand) -> None:
    """The plain Ledger's unit of work for one command, answered through its future."""
    if not command.future.set_running_or_notify_cancel():
        return
    try:
        command.future.set_result(ledger.execute_transfer(command.transfer_id, command.request))
    except (LedgerError, InjectedBug) as error:
        command.future.set_exception(error)


def outcome(future: Future[TransferView]) -> TransferView | BaseException:
    assert future.done()
    if future.cancelled():
        return ServiceUnavailable("the caller gave up before it started")
    error = future.exception()
    return future.result() if error is None else error


def check_bank(ledger: Ledger, bank: Bank) -> None:
    """Every account equals the model of the definite answers; each currency sums to 0."""
    assert bank.settled.keys() == bank.requests.keys(), "a transfer was never settled"
    expected = model_of(bank)
    for currency, ids in bank.accounts.items():
        total = 0
        for account_id in (*ids, world_account_id(currency)):
            account = ledger.get_account(account_id)
            actual = (account.balance, account.pending_debits, account.pending_credits)
            assert actual == expected[account_id], (account_id, actual, expected[account_id])
            total += account.balance
        assert total == 0, (currency, total)
    for transfer_id, answer in bank.settled.items():
        stored = ledger.get_transfer(transfer_id)
        if isinstance(answer, TransferRejected):
            assert stored.status == "rejected" and stored.error_code == answer.code
            continue
        status = answer.status
        if transfer_id in bank.captured:
            status = "posted" if bank.captured[transfer_id] else "voided"
        assert stored.status == status, (transfer_id, stored.status, status)


def model_of(bank: Bank) -> dict[UUID, tuple[int, int, int]]:
    """(balance, pending debits, pending credits) per account, from settled answers;
    a pending transfer counts as captured or released as ``bank.captured`` says."""
    balance: Counter[UUID] = Counter()
    pending_debits: Counter[UUID] = Counter()
    pending_credits: Counter[UUID] = Counter()
    for transfer_id, answer in bank.settled.items():
        if isinstance(answer, TransferRejected):
            continue
        request = bank.requests[transfer_id]
        amount = request.amount
        if answer.status == "pending":
            captured = bank.captured.get(transfer_id)
            if captured is None:
                pending_debits[request.debit_account_id] += amount
                pending_credits[request.credit_account_id] += amount
                continue
            amount = captured  # 0 when voided
        balance[request.debit_account_id] -= amount
        balance[request.credit_account_id] += amount
    accounts: Iterable[UUID] = [
        a for currency, ids in bank.accounts.items() for a in (*ids, world_account_id(currency))
    ]
    return {a: (balance[a], pending_debits[a], pending_credits[a]) for a in accounts}


def check_views_and_audit(ledger: Ledger, settings: Settings) -> None:
    """The read models catch up with the whole log, and verify finds no problem."""
    views = ViewStore.from_settings(settings)
    try:
        follower = follower_for(ledger, views, list(all_projections().values()))
        follower.catch_up()
        assert follower.position == ledger.head_position()
        result = Audit(ledger, views).verify()
        assert result.ok, result.problems[:3]
    finally:
        views.close()
