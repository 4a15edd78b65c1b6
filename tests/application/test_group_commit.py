"""Group commit: one transaction for many transfers, each caller answered on its own.

Method: hand the committer a group directly (as its writer thread would) and check
each command's outcome and what the store holds; then race real callers.
"""

from __future__ import annotations

import threading
from uuid import UUID, uuid4

import pytest

from domain.errors import (
    AccountNotFound,
    IdempotencyKeyReused,
    InsufficientFunds,
    LedgerError,
    OutcomeUnknown,
    ServiceUnavailable,
)
from domain.ledger import Ledger
from domain.transfer import TransferRequest
from infrastructure.group_commit import TransferCommand
from tests.reliability.faults import Faults
from tests.support import funded_account


def request(payer: UUID, payee: UUID, amount: int) -> TransferRequest:
    return TransferRequest(payer, payee, amount, "USD", "", {})


def test_one_failing_command_gets_its_error_and_the_others_commit(ledger: Ledger) -> None:
    assert ledger.group_committer is not None
    alice = ledger.open_account("USD").id
    bob = ledger.open_account("USD").id
    ledger.deposit(alice, 100)
    before = ledger.head_position()
    group = [
        TransferCommand(uuid4(), request(alice, bob, 60)),
        TransferCommand(uuid4(), request(alice, bob, 60)),  # sees the first: refused
        TransferCommand(uuid4(), request(alice, uuid4(), 1)),  # unknown payee
        TransferCommand(uuid4(), request(alice, bob, 40)),
    ]
    ledger.group_committer.commit_group(group)

    assert group[0].future.result().status == "posted"
    with pytest.raises(InsufficientFunds):
        group[1].future.result()
    with pytest.raises(AccountNotFound):
        group[2].future.result()
    assert group[3].future.result().status == "posted"
    assert ledger.get_transfer(group[1].transfer_id).status == "rejected"
    assert ledger.get_account(alice).balance == 0
    assert ledger.get_account(bob).balance == 100
    # Two posted transfers (3 events each) and one rejection, in one save.
    written = ledger.recorder.select_notifications(start=before + 1, limit=100)
    assert len(written) == 7
    positions = {group[0].future.result().position, group[3].future.result().position}
    assert positions <= {n.id for n in written}


def test_the_same_id_twice_in_one_group(ledger: Ledger) -> None:
    assert ledger.group_committer is not None
    alice = ledger.open_account("USD").id
    bob = ledger.open_account("USD").id
    ledger.deposit(alice, 100)
    transfer_id = uuid4()
    group = [
        TransferCommand(transfer_id, request(alice, bob, 10)),
        TransferCommand(transfer_id, request(alice, bob, 10)),
        TransferCommand(transfer_id, request(alice, bob, 11)),
    ]
    ledger.group_committer.commit_group(group)
    first, again = group[0].future.result(), group[1].future.result()
    assert not first.replayed and again.replayed and again.id == first.id
    with pytest.raises(IdempotencyKeyReused):
        group[2].future.result()
    assert ledger.get_account(bob).balance == 10


def test_an_id_already_stored_sends_the_group_round_again(ledger: Ledger) -> None:
    assert ledger.group_committer is not None
    alice = ledger.open_account("USD").id
    bob = ledger.open_account("USD").id
    ledger.deposit(alice, 100)
    stored = ledger.transfer(alice, bob, 30, "USD")
    group = [
        TransferCommand(uuid4(), request(alice, bob, 5)),
        TransferCommand(stored.id, request(alice, bob, 30)),  # a client's retry
    ]
    ledger.group_committer.commit_group(group)
    assert group[0].future.result().status == "posted"
    assert group[1].future.result().replayed
    assert ledger.get_account(bob).balance == 35


def test_many_callers_share_few_transactions(ledger: Ledger) -> None:
    assert ledger.group_committer is not None
    accounts = [ledger.open_account("USD").id for _ in range(4)]
    for account in accounts:
        ledger.deposit(account, 1_000)
    groups_before = ledger.group_committer.groups_committed
    barrier = threading.Barrier(16)
    errors: list[LedgerError] = []

    def pay(index: int) -> None:
        barrier.wait()
        for round_ in range(20):
            payer, payee = accounts[(index + round_) % 4], accounts[(index + round_ + 1) % 4]
            try:
                ledger.transfer(payer, payee, 1, "USD")
            except LedgerError as error:
                errors.append(error)

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sum(ledger.get_account(a).balance for a in accounts) == 4_000
    groups = ledger.group_committer.groups_committed - groups_before
    assert groups < 16 * 20  # some transfers shared a transaction


class TestTheWritersCopies:
    """Writes that bypass the writer (batches here; other processes in production)
    make its copies stale; neither a success nor a refusal may rest on them."""

    def test_a_refusal_is_decided_on_fresh_state(self, ledger: Ledger) -> None:
        alice = ledger.open_account("USD").id
        bob = ledger.open_account("USD").id
        ledger.deposit(alice, 10)
        ledger.transfer(alice, bob, 10, "USD")  # the writer's copy: Alice at 0
        ledger.transfer_batch(
            [dict(from_account=bob, to_account=alice, amount=10, currency="USD")]
        )  # Alice is at 10 again, behind the writer's back
        assert ledger.transfer(alice, bob, 10, "USD").status == "posted"

    def test_a_success_is_decided_on_fresh_state(self, ledger: Ledger) -> None:
        alice = ledger.open_account("USD").id
        bob = ledger.open_account("USD").id
        ledger.deposit(alice, 10)  # the writer's copy: Alice at 10
        ledger.transfer_batch(
            [dict(from_account=alice, to_account=bob, amount=10, currency="USD")]
        )  # Alice is at 0, behind the writer's back
        with pytest.raises(InsufficientFunds):
            ledger.transfer(alice, bob, 10, "USD")
        assert ledger.get_account(alice).balance == 0
        assert ledger.get_account(bob).balance == 10


@pytest.mark.parametrize("store", ["memory", "sqlite", "postgres"], indirect=True)
def test_a_load_failing_mid_group_leaves_no_orphan_for_the_next_group(ledger: Ledger) -> None:
    """The review's case, forced: Alice's and Bob's accounts are the writer's (cached),
    Carol's is not; the group pays Bob from Alice, then fails loading Carol. Nothing
    of the first payment may ride along with the next group."""
    faults = Faults(ledger)
    alice, bob = ledger.open_account("EUR").id, ledger.open_account("EUR").id
    ledger.deposit(alice, 100)
    ledger.deposit(bob, 100)  # both now in the writer's committed copies
    carol = ledger.open_account("EUR").id  # opened elsewhere: the writer must load it
    first = TransferCommand(uuid4(), TransferRequest(alice, bob, 7, "EUR", "", {}))
    second = TransferCommand(uuid4(), TransferRequest(alice, carol, 7, "EUR", "", {}))
    faults.arm("load")
    ledger.group_committer.commit_group([first, second])
    assert faults.fired["load"] == 1
    for command in (first, second):
        with pytest.raises(ServiceUnavailable):
            command.future.result()
        assert ledger.find(command.transfer_id) is None
    third = ledger.transfer(bob, alice, 1, "EUR")
    assert third.status == "posted"
    assert ledger.get_account(alice).balance == 101
    assert ledger.get_account(bob).balance == 99
    assert ledger.get_account(carol).balance == 0
    assert [e.type for e in ledger.account_events(alice)][-2:] == ["Credited", "Credited"]


class TestACallerWhoGivesUp:
    """``QueuedLedger.gave_up``: what a caller is told when its wait for an answer ran out."""

    def test_before_its_transfer_started_it_is_cancelled_and_never_written(
        self, ledger: Ledger
    ) -> None:
        alice = funded_account(ledger, 10)
        bob = ledger.open_account("USD").id
        command = TransferCommand(uuid4(), request(alice, bob, 5))
        assert isinstance(ledger.gave_up(command.future), ServiceUnavailable)
        ledger.group_committer.commit_group([command])
        assert ledger.find(command.transfer_id) is None
        assert ledger.get_account(bob).balance == 0

    def test_once_it_started_the_outcome_is_unknown(self, ledger: Ledger) -> None:
        command = TransferCommand(uuid4(), request(uuid4(), uuid4(), 5))
        assert command.future.set_running_or_notify_cancel()  # the writer has it
        assert isinstance(ledger.gave_up(command.future), OutcomeUnknown)
        assert not command.future.cancelled()  # its commit may still land
