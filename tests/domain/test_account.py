"""Account rules on the aggregate alone: guards on both sides of each limit."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.account import Account
from domain.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotEmpty,
    BalanceOverflow,
    CurrencyMismatch,
    InsufficientFunds,
)
from domain.money import BALANCE_MAX


def new_account(overdraft_limit: int = 0, is_world: bool = False) -> Account:
    return Account(
        id=uuid4(), currency="USD", name="a", metadata={}, overdraft_limit=overdraft_limit,
        is_world=is_world,
    )  # fmt: skip


class TestDebit:
    def test_allows_exactly_the_balance(self) -> None:
        account = new_account()
        account.credit(uuid4(), 100)
        account.debit(uuid4(), 100)
        assert account.balance == 0

    def test_refuses_one_past_the_balance(self) -> None:
        account = new_account()
        account.credit(uuid4(), 100)
        with pytest.raises(InsufficientFunds):
            account.debit(uuid4(), 101)
        assert account.balance == 100

    def test_allows_exactly_the_overdraft_limit(self) -> None:
        account = new_account(overdraft_limit=50)
        account.debit(uuid4(), 50)
        assert account.balance == -50
        with pytest.raises(InsufficientFunds):
            account.debit(uuid4(), 1)

    def test_counts_pending_debits(self) -> None:
        account = new_account()
        account.credit(uuid4(), 100)
        account.reserve_debit(uuid4(), 60)
        assert account.available_balance == 40
        with pytest.raises(InsufficientFunds):
            account.debit(uuid4(), 41)
        account.debit(uuid4(), 40)

    def test_world_account_has_no_funds_limit(self) -> None:
        world = new_account(is_world=True)
        world.debit(uuid4(), 10**15)
        assert world.balance == -(10**15)

    def test_refuses_leaving_the_64_bit_range(self) -> None:
        account = new_account()
        account.balance = BALANCE_MAX  # reach the edge without 9 million credits
        with pytest.raises(BalanceOverflow):
            account.credit(uuid4(), 1)


class TestLifecycle:
    def test_frozen_refuses_debits_and_credits(self) -> None:
        account = new_account()
        account.freeze()
        with pytest.raises(AccountFrozen):
            account.credit(uuid4(), 1)
        with pytest.raises(AccountFrozen):
            account.debit(uuid4(), 1)
        assert account.unfreeze() is True
        account.credit(uuid4(), 1)

    def test_freeze_twice_is_a_no_op(self) -> None:
        account = new_account()
        assert account.freeze() is True
        assert account.freeze() is False
        assert len(account.collect_events()) == 2

    def test_close_needs_an_empty_account_and_is_final(self) -> None:
        account = new_account()
        account.credit(uuid4(), 1)
        with pytest.raises(AccountNotEmpty):
            account.close()
        account.debit(uuid4(), 1)
        account.close()
        with pytest.raises(AccountClosed):
            account.credit(uuid4(), 1)
        with pytest.raises(AccountClosed):
            account.unfreeze()

    def test_close_refuses_pending_reservations(self) -> None:
        account = new_account()
        account.reserve_credit(uuid4(), 5)
        with pytest.raises(AccountNotEmpty):
            account.close()

    def test_currency_must_match(self) -> None:
        with pytest.raises(CurrencyMismatch):
            new_account().check_can_move("EUR")


def test_replay_gives_the_same_state() -> None:
    account = new_account(overdraft_limit=10)
    account.credit(uuid4(), 30)
    account.reserve_debit(uuid4(), 20)
    account.debit(uuid4(), 15)
    events = account.collect_events()
    replayed = None
    for stored in events:
        replayed = stored.mutate(replayed)
    assert replayed is not None
    assert (replayed.balance, replayed.pending_debits, replayed.version) == (15, 20, 4)


class TestStoredEvents:
    """Events written before the money events became declared classes still read."""

    STORED = {
        "Debited": b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-27T09:00:00+00:00"},'
        b'"transfer_id":{"_type_":"uuid_hex","_data_":"6f1c2a0e3b5d4e7f8a9b0c1d2e3f4a5b"},'
        b'"amount":30,"balance_after":70}',
        "DebitReserved": b'{"timestamp":{"_type_":"datetime_iso",'
        b'"_data_":"2026-11-27T09:00:01+00:00"},"transfer_id":{"_type_":"uuid_hex",'
        b'"_data_":"6f1c2a0e3b5d4e7f8a9b0c1d2e3f4a5c"},"amount":20}',
        "ReservationReleased": b'{"timestamp":{"_type_":"datetime_iso",'
        b'"_data_":"2026-11-27T09:00:02+00:00"},"transfer_id":{"_type_":"uuid_hex",'
        b'"_data_":"6f1c2a0e3b5d4e7f8a9b0c1d2e3f4a5c"},"side":"debit","amount":20}',
    }

    def test_the_earlier_format_replays(self) -> None:
        from eventsourcing.persistence import (
            DatetimeAsISO,
            JSONTranscoder,
            Mapper,
            StoredEvent,
            UUIDAsHex,
        )

        transcoder = JSONTranscoder()
        transcoder.register(UUIDAsHex())
        transcoder.register(DatetimeAsISO())
        mapper: Mapper[object] = Mapper(transcoder=transcoder)
        account = new_account()
        account.credit(uuid4(), 100)
        for version, (name, state) in enumerate(self.STORED.items(), start=account.version + 1):
            stored = StoredEvent(account.id, version, f"domain.account:Account.{name}", state)
            event = mapper.to_domain_event(stored)
            assert type(event) is getattr(Account, name)
            account = event.mutate(account)  # type: ignore[attr-defined]
        assert (account.balance, account.pending_debits, account.version) == (70, 0, 5)
