"""The one bound on an account's numbers, at every place one of them changes.

Method: accounts are put just inside a limit by setting their state (reaching it with
real postings would take 9,223 transfers of 10^15; the application and HTTP tests do
that), then each command that changes a number is tried at exactly the limit (it
passes) and one past it (``BalanceOverflow``, and nothing changed, on either side).
Every account keeps balance, pending debits, pending credits, available balance and
balance + pending credits within signed 64 bits; a world account within signed 128.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from domain.account import Account
from domain.errors import BalanceOverflow, ReservedId
from domain.money import (
    AMOUNT_MAX,
    BALANCE_MAX,
    BALANCE_MIN,
    WORLD_BALANCE_MAX,
    WORLD_BALANCE_MIN,
    balance_range,
    check_not_reserved,
    is_world_account_id,
    world_account_id,
)
from domain.rules import decide_capture, decide_transfer, decide_void, transfer_request
from domain.transfer import TransferRequest

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def account(
    balance: int = 0,
    pending_debits: int = 0,
    pending_credits: int = 0,
    overdraft_limit: int = 0,
    is_world: bool = False,
) -> Account:
    opened = Account(
        id=world_account_id("USD") if is_world else uuid4(), currency="USD", name="",
        metadata={}, overdraft_limit=overdraft_limit, is_world=is_world,
    )  # fmt: skip
    opened.balance, opened.pending_debits, opened.pending_credits = (
        balance, pending_debits, pending_credits,
    )  # fmt: skip
    opened.collect_events()
    return opened


def numbers(*accounts: Account) -> list[tuple[int, int, int, int]]:
    return [(a.balance, a.pending_debits, a.pending_credits, a.version) for a in accounts]


def world() -> Account:
    return account(is_world=True)


def test_the_ranges() -> None:
    assert balance_range(is_world=False) == (-(2**63), 2**63 - 1) == (BALANCE_MIN, BALANCE_MAX)
    assert balance_range(is_world=True) == (-(2**127 - 1), 2**127 - 1)
    assert balance_range(is_world=True) == (WORLD_BALANCE_MIN, WORLD_BALANCE_MAX)


class TestPostings:
    def test_a_credit_reaches_exactly_the_maximum(self) -> None:
        to = account(balance=BALANCE_MAX - 5)
        to.credit(uuid4(), 5)
        assert to.balance == BALANCE_MAX
        with pytest.raises(BalanceOverflow):
            to.credit(uuid4(), 1)
        assert to.balance == BALANCE_MAX

    def test_a_credit_counts_the_pending_credits(self) -> None:
        # Balance + pending credits is what the balance becomes when the holds are
        # captured: it must fit, or an accepted hold could not be captured.
        to = account(balance=BALANCE_MAX - 10, pending_credits=4)
        to.credit(uuid4(), 6)
        with pytest.raises(BalanceOverflow):
            to.credit(uuid4(), 1)

    def test_the_world_reaches_exactly_its_128_bit_minimum(self) -> None:
        source = account(balance=WORLD_BALANCE_MIN + 7, is_world=True)
        source.debit(uuid4(), 7)
        assert source.balance == WORLD_BALANCE_MIN
        with pytest.raises(BalanceOverflow):
            source.debit(uuid4(), 1)
        assert source.balance == WORLD_BALANCE_MIN

    def test_the_world_passes_the_64_bit_limit_other_accounts_keep(self) -> None:
        source = account(balance=BALANCE_MIN, is_world=True)
        source.debit(uuid4(), AMOUNT_MAX)
        assert source.balance == BALANCE_MIN - AMOUNT_MAX
        sink = account(balance=BALANCE_MAX, is_world=True)
        sink.credit(uuid4(), AMOUNT_MAX)
        assert sink.balance == BALANCE_MAX + AMOUNT_MAX

    def test_the_world_reaches_exactly_its_128_bit_maximum(self) -> None:
        sink = account(balance=WORLD_BALANCE_MAX - 1, is_world=True)
        sink.credit(uuid4(), 1)
        with pytest.raises(BalanceOverflow):
            sink.credit(uuid4(), 1)


class TestReservations:
    """The defect of issue 13: a reserved credit was checked against the balance
    alone, and the world's pending debits against nothing."""

    def test_pending_credits_reach_exactly_the_maximum(self) -> None:
        to = account(pending_credits=BALANCE_MAX - AMOUNT_MAX)
        to.reserve_credit(uuid4(), AMOUNT_MAX)
        assert to.pending_credits == BALANCE_MAX
        with pytest.raises(BalanceOverflow):
            to.reserve_credit(uuid4(), 1)
        assert to.pending_credits == BALANCE_MAX

    def test_pending_credits_count_the_balance(self) -> None:
        to = account(balance=BALANCE_MAX - 100)
        to.reserve_credit(uuid4(), 100)
        with pytest.raises(BalanceOverflow):
            to.reserve_credit(uuid4(), 1)

    def test_pending_credits_of_an_overdrawn_account_still_stop_at_the_maximum(self) -> None:
        to = account(balance=-(10**6), pending_credits=BALANCE_MAX - 1, overdraft_limit=10**6)
        to.reserve_credit(uuid4(), 1)
        with pytest.raises(BalanceOverflow):
            to.reserve_credit(uuid4(), 1)

    def test_pending_debits_the_funds_allow_still_stop_at_the_maximum(self) -> None:
        # A full balance and the largest overdraft would allow 2**64 - 2 of holds.
        rich = account(
            balance=BALANCE_MAX, pending_debits=BALANCE_MAX - 3, overdraft_limit=BALANCE_MAX
        )
        rich.reserve_debit(uuid4(), 3)
        assert rich.pending_debits == BALANCE_MAX and rich.available_balance == 0
        with pytest.raises(BalanceOverflow):
            rich.reserve_debit(uuid4(), 1)
        assert rich.pending_debits == BALANCE_MAX

    def test_the_worlds_pending_debits_stop_at_its_128_bit_maximum(self) -> None:
        source = account(pending_debits=WORLD_BALANCE_MAX - 2, is_world=True)
        source.reserve_debit(uuid4(), 2)
        with pytest.raises(BalanceOverflow):
            source.reserve_debit(uuid4(), 1)

    def test_the_worlds_available_balance_stops_at_its_128_bit_minimum(self) -> None:
        source = account(balance=WORLD_BALANCE_MIN + 10, pending_debits=4, is_world=True)
        source.reserve_debit(uuid4(), 6)
        assert source.available_balance == WORLD_BALANCE_MIN
        with pytest.raises(BalanceOverflow):
            source.reserve_debit(uuid4(), 1)
        with pytest.raises(BalanceOverflow):
            source.debit(uuid4(), 1)

    def test_the_worlds_pending_credits_stop_at_its_128_bit_maximum(self) -> None:
        sink = account(balance=5, pending_credits=WORLD_BALANCE_MAX - 8, is_world=True)
        sink.reserve_credit(uuid4(), 3)
        with pytest.raises(BalanceOverflow):
            sink.reserve_credit(uuid4(), 1)


def request(source: Account, to: Account, amount: int, pending: bool = False) -> TransferRequest:
    return transfer_request(source.id, to.id, amount, "USD", pending=pending)


class TestRules:
    """``decide_*`` check both sides before changing either."""

    @pytest.mark.parametrize("pending", [False, True], ids=["posted", "pending"])
    def test_a_refused_transfer_changes_neither_side(self, pending: bool) -> None:
        source = world()
        full = account(balance=BALANCE_MAX - 1)
        accounts = {source.id: source, full.id: full}
        before = numbers(source, full)
        with pytest.raises(BalanceOverflow):
            decide_transfer(accounts, uuid4(), request(source, full, 2, pending), NOW)
        assert numbers(source, full) == before
        decide_transfer(accounts, uuid4(), request(source, full, 1, pending), NOW)

    def test_a_capture_at_exactly_the_limit_is_never_refused(self) -> None:
        # The hold was accepted with balance + pending credits at the maximum, so its
        # capture, whole or partial, fits.
        for captured in (AMOUNT_MAX, 1):
            source = world()
            to = account(balance=BALANCE_MAX - AMOUNT_MAX)
            accounts = {source.id: source, to.id: to}
            hold = decide_transfer(
                accounts, uuid4(), request(source, to, AMOUNT_MAX, pending=True), NOW
            )
            with pytest.raises(BalanceOverflow):
                to.reserve_credit(uuid4(), 1)
            decide_capture(accounts, hold, captured)
            assert (to.balance, to.pending_credits) == (BALANCE_MAX - AMOUNT_MAX + captured, 0)
            assert source.pending_debits == 0 and source.balance == -captured

    def test_a_void_at_the_limits_releases_both_holds(self) -> None:
        source = account(balance=WORLD_BALANCE_MIN + 5, is_world=True)
        to = account(pending_credits=BALANCE_MAX - 5)
        accounts = {source.id: source, to.id: to}
        hold = decide_transfer(accounts, uuid4(), request(source, to, 5, pending=True), NOW)
        assert source.available_balance == WORLD_BALANCE_MIN and to.pending_credits == BALANCE_MAX
        decide_void(accounts, hold, "voided")
        assert (source.pending_debits, to.pending_credits) == (0, BALANCE_MAX - 5)

    def test_a_reversal_is_bounded_like_any_posting(self) -> None:
        # A reversal credits the original's debit account: refused one past the limit.
        payer = account(balance=BALANCE_MAX - 9)
        payee = account(balance=100)
        accounts = {payer.id: payer, payee.id: payee}
        for amount, refused in ((10, True), (9, False)):
            reversal = transfer_request(payee.id, payer.id, amount, "USD")
            if refused:
                with pytest.raises(BalanceOverflow):
                    decide_transfer(accounts, uuid4(), reversal, NOW)
            else:
                decide_transfer(accounts, uuid4(), reversal, NOW)
        assert (payer.balance, payee.balance) == (BALANCE_MAX, 91)


class TestReservedIds:
    WORLD_IDS = [world_account_id(code) for code in ("USD", "JPY", "AUD", "QQQ", "ZZZ", "AAA")]

    @pytest.mark.parametrize("world_id", WORLD_IDS, ids=str)
    def test_every_three_letter_code_has_its_world_id_reserved(self, world_id: UUID) -> None:
        assert is_world_account_id(world_id)
        with pytest.raises(ReservedId):
            check_not_reserved(world_id, "account id")

    def test_other_ids_are_not(self) -> None:
        from uuid import NAMESPACE_URL, uuid5

        for other in (uuid4(), uuid5(NAMESPACE_URL, "world:usd"), uuid5(NAMESPACE_URL, "world:")):
            assert not is_world_account_id(other)
            assert check_not_reserved(other, "account id") == other

    def test_no_transfer_is_decided_at_a_world_id(self) -> None:
        source, to = world(), account()
        accounts = {source.id: source, to.id: to}
        with pytest.raises(ReservedId):
            decide_transfer(accounts, world_account_id("AUD"), request(source, to, 1), NOW)
        assert numbers(source, to) == [(0, 0, 0, 1), (0, 0, 0, 1)]

    def test_a_rejection_is_never_recorded_at_a_world_id(self) -> None:
        # decide_transfer checks the id before any rule, so a rejection (recorded
        # under the transfer's id) can never be made at a world id either.
        source, frozen = world(), account()
        frozen.freeze()
        with pytest.raises(ReservedId):
            decide_transfer(
                {source.id: source, frozen.id: frozen}, world_account_id("JPY"),
                request(source, frozen, 1), NOW,
            )  # fmt: skip
