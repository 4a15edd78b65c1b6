"""Moving money: deposits, withdrawals, transfers and their idempotency, on every store."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.errors import (
    AccountFrozen,
    IdempotencyKeyReused,
    InsufficientFunds,
)
from domain.ledger import Ledger
from tests.support import funded_account

# Every rule must hold whether transfers are committed in groups or one by one.
pytestmark = pytest.mark.parametrize("commit_mode", ["group", "per_command"], indirect=True)


class TestDeposit:
    def test_credits_the_account_and_debits_the_world(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD")
        world_before = ledger.world_account("USD").balance
        ledger.deposit(account.id, 1_000)
        assert ledger.get_account(account.id).balance == 1_000
        assert ledger.world_account("USD").balance == world_before - 1_000

    def test_records_debit_credit_and_transfer_in_one_save(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD")
        before = ledger.head_position()
        transfer = ledger.deposit(account.id, 7, "salary", {"ref": "42"})
        assert transfer.position == before + 3
        assert (transfer.status, transfer.description, transfer.metadata) == (
            "posted", "salary", {"ref": "42"},
        )  # fmt: skip
        events = ledger.account_events(account.id)
        assert events[-1].type == "Credited"
        assert events[-1].data == {"transfer_id": transfer.id, "amount": 7, "balance_after": 7}


class TestWithdraw:
    def test_refuses_more_than_available(self, ledger: Ledger) -> None:
        account = funded_account(ledger, 100)
        with pytest.raises(InsufficientFunds):
            ledger.withdraw(account, 101)
        ledger.withdraw(account, 100)
        assert ledger.get_account(account).balance == 0


class TestTransfer:
    def test_moves_money_between_accounts(self, ledger: Ledger) -> None:
        alice, bob = funded_account(ledger, 100_000), funded_account(ledger, 50_000)
        ledger.transfer(alice, bob, 20_000, "USD")
        assert ledger.get_account(alice).balance == 80_000
        assert ledger.get_account(bob).balance == 70_000

    def test_frozen_payee_rejects_and_records_the_attempt(self, ledger: Ledger) -> None:
        alice, bob = funded_account(ledger, 100), funded_account(ledger, 0)
        ledger.freeze(bob)
        transfer_id = uuid4()
        with pytest.raises(AccountFrozen):
            ledger.transfer(alice, bob, 10, "USD", transfer_id=transfer_id)
        recorded = ledger.get_transfer(transfer_id)
        assert (recorded.status, recorded.error_code) == ("rejected", "account_frozen")
        assert ledger.get_account(alice).balance == 100


class TestIdempotency:
    def test_same_id_twice_gives_one_transfer(self, ledger: Ledger) -> None:
        alice, bob = funded_account(ledger, 100), funded_account(ledger, 0)
        transfer_id = uuid4()
        first = ledger.transfer(alice, bob, 30, "USD", "rent", transfer_id=transfer_id)
        head = ledger.head_position()
        again = ledger.transfer(alice, bob, 30, "USD", "rent", transfer_id=transfer_id)
        assert again.replayed and not first.replayed
        assert again.id == first.id and again.created_at == first.created_at
        assert ledger.head_position() == head
        assert ledger.get_account(alice).balance == 70

    def test_same_id_with_another_amount_is_refused(self, ledger: Ledger) -> None:
        alice, bob = funded_account(ledger, 100), funded_account(ledger, 0)
        transfer_id = uuid4()
        ledger.transfer(alice, bob, 30, "USD", transfer_id=transfer_id)
        head = ledger.head_position()
        with pytest.raises(IdempotencyKeyReused):
            ledger.transfer(alice, bob, 31, "USD", transfer_id=transfer_id)
        assert ledger.head_position() == head

    def test_a_rejected_id_stays_rejected_after_funds_arrive(self, ledger: Ledger) -> None:
        alice, bob = funded_account(ledger, 10), funded_account(ledger, 0)
        transfer_id = uuid4()
        with pytest.raises(InsufficientFunds):
            ledger.transfer(alice, bob, 50, "USD", transfer_id=transfer_id)
        ledger.deposit(alice, 100)
        with pytest.raises(InsufficientFunds):
            ledger.transfer(alice, bob, 50, "USD", transfer_id=transfer_id)
        assert ledger.get_account(alice).balance == 110
        ledger.transfer(alice, bob, 50, "USD")  # a new id goes through
        assert ledger.get_account(bob).balance == 50

    def test_an_account_id_is_not_a_transfer_id(self, ledger: Ledger) -> None:
        alice, bob = funded_account(ledger, 10), funded_account(ledger, 0)
        with pytest.raises(IdempotencyKeyReused):
            ledger.transfer(alice, bob, 5, "USD", transfer_id=bob)
