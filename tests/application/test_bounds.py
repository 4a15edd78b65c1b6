"""Issue 13, items 1 to 3, through the Ledger on every store.

Method: the attacks of the issue at full size (batches of 1,000 transfers of 10^15,
about one second per store), then each refusal checked for what it writes: a range
refusal of a transfer writes its ``Transfer.Rejected`` (like every business
rejection), a refused batch or a reserved id writes nothing.

- pending amounts stay in range: the issue's ten batches of 1,000 pending transfers
  from the world to one account stop at the item that would pass 2**63 - 1;
- a currency cannot be saturated: deposits past -2**63 on the world account are
  taken (its range is 128 bits), and a 1-cent deposit into anyone's account still works;
- world ids, of any three-letter code, are refused as account, transfer, batch item
  and reversal ids (in both commit modes).

The batches run the same code in both commit modes, so the attacks run in the
default one (group commit); the rules they hit are the domain's, tested on their own
in tests/domain/test_bounds.py.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID, uuid4

import pytest

from domain import errors
from domain.ledger import Ledger
from domain.money import AMOUNT_MAX, BALANCE_MAX, world_account_id
from domain.transfer import REJECTED
from tests.support import funded_account

BATCH = 1_000
# 9,223 transfers of 10^15 fit below 2**63 - 1; the 9,224th does not.
FITTING = BALANCE_MAX // AMOUNT_MAX
REST = BALANCE_MAX - FITTING * AMOUNT_MAX


def items(source: UUID, to: UUID, currency: str, count: int, **fields: object) -> list[dict]:
    return [
        dict(from_account=source, to_account=to, amount=AMOUNT_MAX, currency=currency, **fields)
    ] * count


def fill(ledger: Ledger, account: UUID, currency: str, count: int, **fields: object) -> None:
    """``count`` transfers of 10^15 from the world to ``account``, in batches."""
    world = world_account_id(currency)
    for start in range(0, count, BATCH):
        ledger.transfer_batch(items(world, account, currency, min(BATCH, count - start), **fields))


def topics_since(ledger: Ledger, position: int) -> list[str]:
    written = ledger.recorder.select_notifications(start=position + 1, limit=10)
    return [n.topic.rsplit(":", 1)[-1] for n in written]


class TestPendingAmounts:
    def test_the_issues_ten_batches_of_holds_stop_at_the_limit(self, ledger: Ledger) -> None:
        currency = "XPT"
        account = ledger.open_account(currency).id
        world = world_account_id(currency)
        fill(ledger, account, currency, 9 * BATCH, pending=True)
        before = ledger.head_position()
        with pytest.raises(errors.BatchItemFailed) as failed:
            ledger.transfer_batch(items(world, account, currency, BATCH, pending=True))
        assert failed.value.index == FITTING - 9 * BATCH  # the item that would pass 2**63-1
        assert isinstance(failed.value.error, errors.BalanceOverflow)
        assert ledger.head_position() == before  # nothing of the batch
        fill(ledger, account, currency, FITTING - 9 * BATCH, pending=True)

        # One past the limit: refused, and recorded as a rejection like the others.
        before = ledger.head_position()
        over = uuid4()
        with pytest.raises(errors.BalanceOverflow):
            ledger.transfer(world, account, REST + 1, currency, transfer_id=over, pending=True)
        assert topics_since(ledger, before) == ["Transfer.Rejected"]
        rejected = ledger.get_transfer(over)
        assert (rejected.status, rejected.error_code) == (REJECTED, "amount_out_of_range")
        with pytest.raises(errors.BalanceOverflow):  # a retry gets the same answer
            ledger.transfer(world, account, REST + 1, currency, transfer_id=over, pending=True)

        # Exactly the limit: accepted.
        last = ledger.transfer(world, account, REST, currency, pending=True)
        full = ledger.get_account(account)
        assert (full.pending_credits, full.balance) == (BALANCE_MAX, 0)
        assert ledger.get_account(world).pending_debits >= BALANCE_MAX  # 128 bits: more fit

        # Balance + pending credits is at the limit: no posted credit fits either,
        # and every hold can still be captured (the bound was kept for that).
        with pytest.raises(errors.BalanceOverflow):
            ledger.deposit(account, 1)
        ledger.post_pending(last.id, 1)  # a partial capture releases REST - 1
        ledger.deposit(account, REST - 1)  # exactly the room it left
        with pytest.raises(errors.BalanceOverflow):
            ledger.deposit(account, 1)
        full = ledger.get_account(account)
        assert full.balance + full.pending_credits == BALANCE_MAX

    def test_a_reversal_is_refused_one_past_the_limit(self, ledger: Ledger) -> None:
        currency = "XBA"
        payer = funded_account(ledger, 10, currency)
        payee = ledger.open_account(currency).id
        paid = ledger.transfer(payer, payee, 10, currency).id
        fill(ledger, payer, currency, FITTING)
        ledger.deposit(payer, REST - 9)  # nine short of the maximum
        refused = uuid4()
        with pytest.raises(errors.BalanceOverflow):
            ledger.reverse(paid, 10, reversal_id=refused)
        assert ledger.get_transfer(refused).status == REJECTED
        assert ledger.get_transfer(paid).reversed_amount == 0
        ledger.reverse(paid, 9)
        assert ledger.get_account(payer).balance == BALANCE_MAX
        assert ledger.get_account(payee).balance == 1


class TestSaturation:
    def test_one_client_cannot_saturate_a_currency(
        self, make_ledger: Callable[..., Ledger], store: str
    ) -> None:
        # The issue: ten batches of 1,000 deposits of 10^15 into one's own accounts
        # took the world to -2**63, and then every deposit into anyone's account was
        # refused. Now the world's range is 128 bits and the client fills only its own.
        ledger = make_ledger()
        currency = "XBB"
        own = [ledger.open_account(currency).id for _ in range(2)]
        someone_else = ledger.open_account(currency).id
        world = world_account_id(currency)
        start = ledger.get_account(world).balance  # 0 unless another run used XBB
        for batch in range(10):
            ledger.transfer_batch(items(world, own[batch % 2], currency, BATCH))
        taken = 10 * BATCH * AMOUNT_MAX
        assert ledger.get_account(world).balance == start - taken < -(2**63)
        ledger.deposit(someone_else, 1)  # one cent
        assert ledger.get_account(someone_else).balance == 1
        assert ledger.get_account(world).balance == start - taken - 1
        # Its own accounts are what it can fill: 5 * 10**18 each, room for 4,223 more.
        for _ in range(4):
            ledger.transfer_batch(items(world, own[0], currency, BATCH))
        with pytest.raises(errors.BatchItemFailed) as failed:
            ledger.transfer_batch(items(world, own[0], currency, BATCH))
        assert failed.value.index == FITTING - 9 * BATCH
        # The event format and the snapshots (every 100 events) hold the 128-bit
        # balance: another Ledger on the store loads the same, at every version.
        reloaded = (ledger if store == "memory" else make_ledger()).get_account(world)
        assert reloaded.balance == start - 14 * BATCH * AMOUNT_MAX - 1
        version = reloaded.version - 4 * BATCH - 1  # before the cent
        assert ledger.balance_at(world, version=version).balance == start - taken


@pytest.mark.parametrize("commit_mode", ["group", "per_command"], indirect=True)
class TestReservedIds:
    """A world id, of any three-letter code, is refused as any id a client chooses,
    and nothing is written; the currency it belongs to keeps working."""

    @pytest.fixture
    def pair(self, ledger: Ledger) -> tuple[UUID, UUID]:
        return funded_account(ledger, 1_000, "XDR"), ledger.open_account("XDR").id

    def test_as_an_account_id_in_another_currency(self, ledger: Ledger) -> None:
        before = ledger.head_position()
        with pytest.raises(errors.ReservedId):
            ledger.open_account("USD", account_id=world_account_id("XSU"))
        assert ledger.head_position() == before
        # XSU deposits work, the squat of the issue can't happen.
        account = ledger.open_account("XSU").id
        ledger.deposit(account, 5)
        assert ledger.get_account(account).balance == 5

    def test_as_an_account_id_of_a_code_that_is_not_a_currency_yet(self, ledger: Ledger) -> None:
        with pytest.raises(errors.ReservedId):
            ledger.open_account("USD", account_id=world_account_id("QQQ"))

    @pytest.mark.parametrize("world_code", ["XDR", "XUA"], ids=["existing", "not yet opened"])
    def test_as_a_transfer_id(
        self, ledger: Ledger, pair: tuple[UUID, UUID], world_code: str
    ) -> None:
        alice, bob = pair
        before = ledger.head_position()
        reserved = world_account_id(world_code)
        with pytest.raises(errors.ReservedId):
            ledger.transfer(alice, bob, 1, "XDR", transfer_id=reserved)
        with pytest.raises(errors.ReservedId):
            ledger.transfer(alice, bob, 1, "XDR", transfer_id=reserved, pending=True)
        with pytest.raises(errors.ReservedId):
            ledger.deposit(bob, 1, transfer_id=reserved)
        with pytest.raises(errors.ReservedId):
            ledger.withdraw(alice, 1, transfer_id=reserved)
        with pytest.raises(errors.ReservedId):  # even when the rules would refuse it
            ledger.transfer(alice, bob, 10**9, "XDR", transfer_id=reserved)
        assert ledger.head_position() == before
        ledger.deposit(bob, 1)  # the currency still works

    def test_as_a_batch_item_id(self, ledger: Ledger, pair: tuple[UUID, UUID]) -> None:
        alice, bob = pair
        before = ledger.head_position()
        batch = [
            dict(from_account=alice, to_account=bob, amount=1, currency="XDR", transfer_id=uuid4()),
            dict(from_account=alice, to_account=bob, amount=1, currency="XDR",
                 transfer_id=world_account_id("CHE")),
        ]  # fmt: skip
        with pytest.raises(errors.BatchItemFailed) as failed:
            ledger.transfer_batch(batch)
        assert failed.value.index == 1 and isinstance(failed.value.error, errors.ReservedId)
        assert ledger.head_position() == before

    @pytest.mark.parametrize("world_code", ["XDR", "CHW"], ids=["existing", "not yet opened"])
    def test_as_a_reversal_id(
        self, ledger: Ledger, pair: tuple[UUID, UUID], world_code: str
    ) -> None:
        alice, bob = pair
        paid = ledger.transfer(alice, bob, 10, "XDR").id
        before = ledger.head_position()
        with pytest.raises(errors.ReservedId):
            ledger.reverse(paid, 5, reversal_id=world_account_id(world_code))
        assert ledger.head_position() == before
        assert ledger.get_transfer(paid).reversed_amount == 0
