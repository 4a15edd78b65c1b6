"""The bank invariants under concurrency, with the event store's check as the only lock.

Method: many threads (and, on SQLite and PostgreSQL, many OS processes) race to move
money; afterwards the balances, the number of posted transfers and the per-currency
sum are compared with what the callers were told.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest

from domain.errors import LedgerError
from domain.ledger import Ledger
from domain.money import world_account_id
from domain.transfer import Transfer
from infrastructure.settings import Settings
from tests.support import funded_account

# Every rule must hold whether transfers are committed in groups or one by one.
pytestmark = pytest.mark.parametrize("commit_mode", ["group", "per_command"], indirect=True)

ROOT = Path(__file__).resolve().parents[2]
PROCESS_TIMEOUT_SECONDS = 60


def open_alice_and_bob(ledger: Ledger) -> tuple[UUID, UUID]:
    alice = funded_account(ledger, 100_000, name="alice")
    return alice, funded_account(ledger, 50_000, name="bob")


def run_in_threads(count: int, work: Callable[[int], str]) -> Counter[str]:
    barrier = threading.Barrier(count)
    outcomes: list[str] = []

    def run(index: int) -> None:
        barrier.wait()
        outcomes.append(work(index))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=PROCESS_TIMEOUT_SECONDS)
    assert len(outcomes) == count
    return Counter(outcomes)


def outcome_of(command: Callable[[], object]) -> str:
    try:
        command()
    except LedgerError as error:
        return error.code
    return "ok"


def test_ten_threads_race_for_five_transfers_worth(ledger: Ledger) -> None:
    alice, bob = open_alice_and_bob(ledger)
    outcomes = run_in_threads(
        10, lambda _: outcome_of(lambda: ledger.transfer(alice, bob, 20_000, "USD"))
    )
    assert outcomes == Counter({"ok": 5, "insufficient_funds": 5})
    assert ledger.get_account(alice).balance == 0
    assert ledger.get_account(bob).balance == 150_000


@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
def test_ten_processes_race_for_five_transfers_worth(ledger: Ledger, settings: Settings) -> None:
    alice, bob = open_alice_and_bob(ledger)
    command = [
        sys.executable, "-m", "tests.reliability.bank_worker",
        settings.database_url, str(alice), str(bob), "20000",
    ]  # fmt: skip
    workers = [
        subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(10)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:  # all are ready: start them as close together as we can
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outcomes = Counter(
            worker.communicate(timeout=PROCESS_TIMEOUT_SECONDS)[0].strip() for worker in workers
        )
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    assert outcomes == Counter({"ok": 5, "insufficient_funds": 5})
    assert ledger.get_account(alice).balance == 0
    assert ledger.get_account(bob).balance == 150_000


def test_random_transfers_keep_every_invariant(ledger: Ledger) -> None:
    # A currency of its own; on the session's shared PostgreSQL schema its world
    # account may hold earlier runs' money, so compare the world's change instead.
    currency = "CHF"
    limits = [0, 0, 0, 0, 0, 0, 500, 500, 2_000, 10_000]
    accounts = [ledger.open_account(currency, overdraft_limit=limit).id for limit in limits]
    world_before = ledger.get_account(world_account_id(currency)).balance  # once it exists
    for account in accounts:
        ledger.deposit(account, 1_000)
    transfers_per_thread = 500
    succeeded: list[UUID] = []

    def work(thread: int) -> str:
        chooser = random.Random(thread)
        for _ in range(transfers_per_thread):
            payer, payee = chooser.sample(accounts, 2)
            try:
                result = ledger.transfer(payer, payee, chooser.randint(1, 800), currency)
                succeeded.append(result.id)
            except LedgerError as error:
                assert error.code in ("insufficient_funds", "conflict"), error
        return "done"

    # A "conflict" (retries exhausted, HTTP 409) is an allowed answer under this much
    # contention: it promises that nothing was written, which the check below covers.
    run_in_threads(8, work)

    views = [ledger.get_account(account) for account in accounts]
    world = ledger.get_account(world_account_id(currency))
    assert sum(view.balance for view in views) + world.balance - world_before == 0
    for view, limit in zip(views, limits, strict=True):
        assert view.balance >= -limit
    posted = _posted_transfers_between(ledger, set(accounts))
    assert posted == set(succeeded)
    assert len(succeeded) > 100  # the workload did move money, not only reject


def _posted_transfers_between(ledger: Ledger, accounts: set[UUID]) -> set[UUID]:
    """Ids of all posted transfers among ``accounts``, read from the whole event log."""
    posted = set()
    position = 0
    while True:
        notifications = ledger.recorder.select_notifications(
            start=position + 1, limit=1_000, topics=[_topic(Transfer.Posted)]
        )
        if not notifications:
            return posted
        for notification in notifications:
            event = ledger.mapper.to_domain_event(notification)
            if {event.debit_account_id, event.credit_account_id} <= accounts:
                posted.add(event.originator_id)
        position = notifications[-1].id


def _topic(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"
