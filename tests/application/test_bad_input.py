"""Every bad input raises its own error and writes exactly what the rules say.

Malformed input (amount range, currency, same account, unknown account) is refused
before the domain and writes nothing. A business rejection (currency mismatch, frozen
or closed account, insufficient funds, balance overflow) writes exactly one event, the
``Transfer.Rejected`` that lets a retry get the same answer, and no account event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest

from domain import errors
from domain.ledger import Ledger
from domain.money import AMOUNT_MAX, BALANCE_MAX, world_account_id
from tests.support import funded_account


@dataclass
class World:
    ledger: Ledger
    alice: UUID
    bob: UUID
    euro: UUID
    frozen: UUID
    closed: UUID
    rich: UUID


def setup_world(ledger: Ledger) -> World:
    alice = funded_account(ledger, 1_000, name="alice")
    bob = ledger.open_account("USD", "bob").id
    euro = ledger.open_account("EUR", "euro").id
    frozen = ledger.open_account("USD", "frozen").id
    ledger.freeze(frozen)
    closed = ledger.open_account("USD", "closed").id
    ledger.close_account(closed)
    rich = ledger.open_account("USD", "rich", overdraft_limit=0).id
    return World(ledger, alice, bob, euro, frozen, closed, rich)


Case = Callable[[World], object]

MALFORMED: dict[str, tuple[Case, type[errors.LedgerError]]] = {
    "zero amount": (
        lambda w: w.ledger.transfer(w.alice, w.bob, 0, "USD"), errors.AmountOutOfRange),
    "negative amount": (
        lambda w: w.ledger.transfer(w.alice, w.bob, -5, "USD"), errors.AmountOutOfRange),
    "amount above 10**15": (
        lambda w: w.ledger.deposit(w.bob, AMOUNT_MAX + 1), errors.AmountOutOfRange),
    "lower-case currency": (
        lambda w: w.ledger.transfer(w.alice, w.bob, 5, "usd"), errors.InvalidCurrency),
    "unknown currency": (
        lambda w: w.ledger.open_account("ABC"), errors.UnknownCurrency),
    "same account": (
        lambda w: w.ledger.transfer(w.alice, w.alice, 5, "USD"), errors.SameAccount),
    "unknown payer": (
        lambda w: w.ledger.transfer(uuid4(), w.bob, 5, "USD"), errors.AccountNotFound),
    "unknown payee": (
        lambda w: w.ledger.transfer(w.alice, uuid4(), 5, "USD"), errors.AccountNotFound),
    "deposit to unknown account": (
        lambda w: w.ledger.deposit(uuid4(), 5), errors.AccountNotFound),
    "closing a non-empty account": (
        lambda w: w.ledger.close_account(w.alice), errors.AccountNotEmpty),
    "metadata value too long": (
        lambda w: w.ledger.transfer(w.alice, w.bob, 5, "USD", metadata={"k": "v" * 501}),
        errors.InvalidRequest),
    "NUL in a description": (
        lambda w: w.ledger.transfer(w.alice, w.bob, 5, "USD", "a\x00b"), errors.InvalidRequest),
    "NUL in metadata": (
        lambda w: w.ledger.open_account("USD", metadata={"k": "\x00"}), errors.InvalidRequest),
    # The event format's tag: it would decode as a UUID, or not decode at all.
    "metadata shaped like a stored UUID": (
        lambda w: w.ledger.transfer(w.alice, w.bob, 5, "USD", metadata={
            "_type_": "uuid_hex", "_data_": "00000000000000000000000000000001"}),
        errors.InvalidRequest),
    "metadata shaped like an unknown stored type": (
        lambda w: w.ledger.open_account("USD", metadata={"_type_": "x", "_data_": "y"}),
        errors.InvalidRequest),
    "51 metadata keys": (
        lambda w: w.ledger.open_account("USD", metadata={str(i): "" for i in range(51)}),
        errors.InvalidRequest),
}  # fmt: skip

REJECTED: dict[str, tuple[Case, type[errors.LedgerError]]] = {
    "currency mismatch": (
        lambda w: w.ledger.transfer(w.alice, w.euro, 5, "USD"), errors.CurrencyMismatch),
    "frozen payee": (
        lambda w: w.ledger.transfer(w.alice, w.frozen, 5, "USD"), errors.AccountFrozen),
    "closed payee": (
        lambda w: w.ledger.transfer(w.alice, w.closed, 5, "USD"), errors.AccountClosed),
    "insufficient funds": (
        lambda w: w.ledger.transfer(w.alice, w.bob, 1_001, "USD"), errors.InsufficientFunds),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_writes_nothing(ledger: Ledger, name: str) -> None:
    world = setup_world(ledger)
    case, error = MALFORMED[name]
    before = ledger.head_position()
    with pytest.raises(error):
        case(world)
    assert ledger.head_position() == before


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_business_rejection_writes_only_the_rejection(ledger: Ledger, name: str) -> None:
    world = setup_world(ledger)
    case, error = REJECTED[name]
    before = ledger.head_position()
    balances = {a: ledger.get_account(a).balance for a in (world.alice, world.bob)}
    with pytest.raises(error):
        case(world)
    written = ledger.recorder.select_notifications(start=before + 1, limit=10)
    assert [n.topic for n in written] == ["domain.transfer:Transfer.Rejected"]
    assert {a: ledger.get_account(a).balance for a in balances} == balances


def test_balance_overflow_is_refused_at_the_edge(ledger: Ledger) -> None:
    # A currency no other test uses, so its world account starts at zero even on the
    # session's shared PostgreSQL schema. 9,223 deposits of 10**15 bring the balances
    # to 9.223e18, a hair under 2**63; batches of 1,000 keep that quick. The account
    # refuses one more cent; the world account's range is 128 bits (tests/*/test_bounds.py).
    account = ledger.open_account("XAG").id
    world = world_account_id("XAG")
    deposits = 9_223
    for start in range(0, deposits, 1_000):
        count = min(1_000, deposits - start)
        ledger.transfer_batch(
            [dict(from_account=world, to_account=account, amount=AMOUNT_MAX, currency="XAG")]
            * count
        )
    with pytest.raises(errors.BalanceOverflow):
        ledger.deposit(account, AMOUNT_MAX)
    ledger.deposit(account, BALANCE_MAX - deposits * AMOUNT_MAX)  # exactly to the edge
    assert ledger.get_account(account).balance == BALANCE_MAX
    assert ledger.get_account(world).balance == -BALANCE_MAX
    before = ledger.head_position()
    with pytest.raises(errors.BalanceOverflow):
        ledger.deposit(account, 1)
    assert ledger.head_position() == before + 1  # only the Transfer.Rejected
