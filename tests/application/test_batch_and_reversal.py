"""Atomic batches (all or nothing) and reversals (never more than was posted)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.errors import (
    AmountOutOfRange,
    BatchItemFailed,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidRequest,
    TransferNotPosted,
)
from domain.ledger import Ledger
from tests.support import funded_account


def accounts(ledger: Ledger, funds: list[int]) -> list[UUID]:
    return [funded_account(ledger, amount) for amount in funds]


def item(payer: UUID, payee: UUID, amount: int, **extra: Any) -> dict[str, Any]:
    return dict(
        transfer_id=uuid4(), from_account=payer, to_account=payee, amount=amount,
        currency="USD", **extra,
    )  # fmt: skip


class TestBatch:
    def test_applies_every_item_in_one_transaction(self, ledger: Ledger) -> None:
        a, b, c = accounts(ledger, [100, 0, 0])
        before = ledger.head_position()
        views = ledger.transfer_batch([item(a, b, 60), item(b, c, 50), item(a, c, 40)])
        assert [v.status for v in views] == ["posted"] * 3
        assert len({v.position for v in views}) == 1  # one save
        assert ledger.head_position() == before + 3 * 3
        balances = [ledger.get_account(x).balance for x in (a, b, c)]
        assert balances == [0, 10, 90]

    @pytest.mark.parametrize("failing", ["first", "middle", "last"])
    def test_one_failing_item_writes_nothing(self, ledger: Ledger, failing: str) -> None:
        a, b = accounts(ledger, [100, 0])
        items = [item(a, b, 10) for _ in range(5)]
        index = {"first": 0, "middle": 2, "last": 4}[failing]
        items[index] = item(a, b, 1_000)
        before = ledger.head_position()
        with pytest.raises(BatchItemFailed) as caught:
            ledger.transfer_batch(items)
        assert caught.value.index == index
        assert isinstance(caught.value.error, InsufficientFunds)
        assert ledger.head_position() == before
        assert ledger.get_account(a).balance == 100

    def test_a_later_item_sees_the_earlier_ones(self, ledger: Ledger) -> None:
        a, b = accounts(ledger, [100, 0])
        with pytest.raises(BatchItemFailed) as caught:
            ledger.transfer_batch([item(a, b, 60), item(a, b, 60)])
        assert caught.value.index == 1

    def test_retry_with_the_same_ids_replays_even_if_it_would_fail_now(
        self, ledger: Ledger
    ) -> None:
        a, b = accounts(ledger, [100, 0])
        items = [item(a, b, 70)]
        first = ledger.transfer_batch(items)
        ledger.withdraw(a, 30)  # the same batch would now be refused
        again = ledger.transfer_batch(items)
        assert [v.id for v in again] == [v.id for v in first] and again[0].replayed
        assert ledger.get_account(b).balance == 70

    def test_changed_item_under_a_used_id_is_refused(self, ledger: Ledger) -> None:
        a, b = accounts(ledger, [100, 0])
        items = [item(a, b, 10), item(a, b, 20)]
        ledger.transfer_batch(items)
        items[1] = {**items[1], "amount": 21}
        with pytest.raises(BatchItemFailed) as caught:
            ledger.transfer_batch(items)
        assert caught.value.index == 1
        assert isinstance(caught.value.error, IdempotencyKeyReused)

    def test_sizes_and_duplicate_ids_are_checked(self, ledger: Ledger) -> None:
        a, b = accounts(ledger, [0, 0])
        with pytest.raises(InvalidRequest):
            ledger.transfer_batch([])
        with pytest.raises(InvalidRequest):
            ledger.transfer_batch([item(a, b, 1)] * 1_001)
        duplicate = item(a, b, 1)
        with pytest.raises(InvalidRequest):
            ledger.transfer_batch([duplicate, duplicate])

    def test_pending_items_reserve(self, ledger: Ledger) -> None:
        a, b = accounts(ledger, [100, 0])
        (view,) = ledger.transfer_batch([item(a, b, 30, pending=True, timeout_seconds=60)])
        assert view.status == "pending"
        assert ledger.get_account(a).available_balance == 70

    @pytest.mark.parametrize("store", ["sqlite", "postgres"])
    def test_a_large_batch_sees_what_another_process_wrote(self, make_ledger: Any) -> None:
        """A batch of many accounts checks their versions in one query: an account
        changed by another process since it was cached is read again, not trusted."""
        here, elsewhere = make_ledger(), make_ledger()
        funded = accounts(here, [100] * 10)
        sink = accounts(here, [0])[0]
        for account in funded:
            here.get_account(account)  # cached here at 100
        elsewhere.transfer(funded[3], sink, 100, "USD")  # now 0, behind this cache
        with pytest.raises(BatchItemFailed) as failed:
            here.transfer_batch([item(account, sink, 60) for account in funded])
        assert failed.value.index == 3
        assert isinstance(failed.value.error, InsufficientFunds)
        views = here.transfer_batch(
            [item(account, sink, 60) for account in funded if account != funded[3]]
        )
        assert len(views) == 9
        assert here.get_account(sink).balance == 100 + 9 * 60
        assert elsewhere.get_account(funded[0]).balance == 40


class TestReverse:
    def test_reverses_all_by_default(self, ledger: Ledger) -> None:
        a, b = accounts(ledger, [100, 0])
        original = ledger.transfer(a, b, 40, "USD")
        reversal = ledger.reverse(original.id)
        assert (reversal.reverses, reversal.amount) == (original.id, 40)
        assert (reversal.from_account, reversal.to_account) == (b, a)
        assert ledger.get_transfer(original.id).reversed_amount == 40
        assert ledger.get_account(a).balance == 100

    def test_partial_reversals_sum_to_the_original_and_no_further(self, ledger: Ledger) -> None:
        a, b = accounts(ledger, [100, 0])
        original = ledger.transfer(a, b, 40, "USD")
        for amount in (10, 25, 5):
            ledger.reverse(original.id, amount)
        assert ledger.get_transfer(original.id).reversed_amount == 40
        with pytest.raises(AmountOutOfRange):
            ledger.reverse(original.id, 1)

    def test_one_past_the_remainder_is_refused(self, ledger: Ledger) -> None:
        a, b = accounts(ledger, [100, 0])
        original = ledger.transfer(a, b, 40, "USD")
        ledger.reverse(original.id, 30)
        with pytest.raises(AmountOutOfRange):
            ledger.reverse(original.id, 11)
        assert ledger.reverse(original.id, 10).amount == 10

    def test_reversal_of_a_reversal(self, ledger: Ledger) -> None:
        a, b = accounts(ledger, [100, 0])
        original = ledger.transfer(a, b, 40, "USD")
        reversal = ledger.reverse(original.id)
        again = ledger.reverse(reversal.id)
        assert again.reverses == reversal.id
        assert [ledger.get_account(x).balance for x in (a, b)] == [60, 40]

    def test_refused_when_the_payee_spent_it(self, ledger: Ledger) -> None:
        a, b = accounts(ledger, [100, 0])
        original = ledger.transfer(a, b, 40, "USD")
        ledger.withdraw(b, 40)
        reversal_id = uuid4()
        with pytest.raises(InsufficientFunds):
            ledger.reverse(original.id, reversal_id=reversal_id)
        assert ledger.get_transfer(reversal_id).status == "rejected"
        assert ledger.get_transfer(original.id).reversed_amount == 0

    def test_same_reversal_id_replays(self, ledger: Ledger) -> None:
        a, b = accounts(ledger, [100, 0])
        original = ledger.transfer(a, b, 40, "USD")
        reversal_id = uuid4()
        first = ledger.reverse(original.id, 15, reversal_id)
        again = ledger.reverse(original.id, 15, reversal_id)
        assert again.replayed and again.id == first.id
        assert ledger.get_transfer(original.id).reversed_amount == 15

    def test_only_posted_transfers_reverse(self, ledger: Ledger) -> None:
        a, b = accounts(ledger, [100, 0])
        pending = ledger.transfer(a, b, 40, "USD", pending=True)
        with pytest.raises(TransferNotPosted):
            ledger.reverse(pending.id)
