"""Settling a pending transfer is idempotent: the same post or void again is answered
with the settled transfer (``replayed``), another request is refused.

Method: each rule is driven through the Ledger on every store and in both commit
modes (group commit and one unit of work per command). ``request_id`` stands for an
Idempotency-Key (the HTTP layer passes uuid5 of it). Expiry moves with the injected
clock; a version-1 settlement event, as stored before ``request_id`` existed, is
written to the store and read back.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from domain.errors import (
    IdempotencyKeyReused,
    InsufficientFunds,
    PendingExpired,
    TransferNotPending,
)
from domain.ledger import Ledger
from domain.transfer import Transfer
from tests.conftest import Clock
from tests.support import funded_account

pytestmark = pytest.mark.parametrize("commit_mode", ["group", "per_command"], indirect=True)


def reserve(ledger: Ledger, amount: int = 60, **fields: object) -> tuple[UUID, UUID]:
    """A payer funded with 100 and the id of a pending transfer of ``amount`` from it."""
    payer = funded_account(ledger, 100)
    payee = ledger.open_account("USD").id
    pending = ledger.transfer(payer, payee, amount, "USD", pending=True, **fields)  # type: ignore[arg-type]
    return payer, pending.id


class TestPostAgain:
    def test_the_same_amount_is_a_replay_and_moves_nothing(self, ledger: Ledger) -> None:
        payer, transfer_id = reserve(ledger)
        first = ledger.post_pending(transfer_id, 45)
        again = ledger.post_pending(transfer_id, 45)
        assert (first.replayed, again.replayed) == (False, True)
        assert (again.status, again.posted_amount, again.id) == ("posted", 45, first.id)
        assert again.position is not None and again.position >= (first.position or 0)
        assert ledger.get_account(payer).balance == 55

    def test_all_of_it_and_the_whole_amount_are_the_same_request(self, ledger: Ledger) -> None:
        _, transfer_id = reserve(ledger, 60)
        ledger.post_pending(transfer_id)
        assert ledger.post_pending(transfer_id, 60).replayed

    def test_another_amount_is_refused_as_not_pending(self, ledger: Ledger) -> None:
        _, transfer_id = reserve(ledger)
        ledger.post_pending(transfer_id, 45)
        for amount in (44, 46, None):
            with pytest.raises(TransferNotPending):
                ledger.post_pending(transfer_id, amount)

    def test_a_void_after_a_post_is_refused(self, ledger: Ledger) -> None:
        payer, transfer_id = reserve(ledger)
        ledger.post_pending(transfer_id)
        with pytest.raises(TransferNotPending):
            ledger.void_pending(transfer_id)
        assert ledger.get_account(payer).balance == 40

    def test_a_transfer_posted_at_once_was_never_pending(self, ledger: Ledger) -> None:
        payer = funded_account(ledger, 100)
        posted = ledger.transfer(payer, ledger.open_account("USD").id, 10, "USD")
        with pytest.raises(TransferNotPending):
            ledger.post_pending(posted.id, 10)

    def test_a_rejected_reservation_stays_refused(self, ledger: Ledger) -> None:
        payer = funded_account(ledger, 100)
        payee = ledger.open_account("USD").id
        transfer_id = uuid4()
        with pytest.raises(InsufficientFunds):
            ledger.transfer(payer, payee, 101, "USD", transfer_id=transfer_id, pending=True)
        with pytest.raises(TransferNotPending):
            ledger.post_pending(transfer_id, 101)


class TestWithRequestId:
    def test_the_same_id_and_request_is_a_replay(self, ledger: Ledger) -> None:
        _, transfer_id = reserve(ledger)
        key = uuid4()
        assert not ledger.post_pending(transfer_id, 30, key).replayed
        assert ledger.post_pending(transfer_id, 30, key).replayed

    def test_the_same_id_with_another_request_is_key_reused(self, ledger: Ledger) -> None:
        _, transfer_id = reserve(ledger)
        key = uuid4()
        ledger.post_pending(transfer_id, 30, key)
        with pytest.raises(IdempotencyKeyReused):
            ledger.post_pending(transfer_id, 31, key)
        with pytest.raises(IdempotencyKeyReused):
            ledger.void_pending(transfer_id, key)

    def test_another_id_is_another_operation_even_asking_the_same(self, ledger: Ledger) -> None:
        _, transfer_id = reserve(ledger)
        ledger.void_pending(transfer_id, uuid4())
        with pytest.raises(TransferNotPending):
            ledger.void_pending(transfer_id, uuid4())

    def test_a_retry_without_the_id_matches_on_the_request(self, ledger: Ledger) -> None:
        _, transfer_id = reserve(ledger)
        ledger.post_pending(transfer_id, 30, uuid4())
        assert ledger.post_pending(transfer_id, 30).replayed

    def test_an_id_on_a_settlement_made_without_one_matches_on_the_request(
        self, ledger: Ledger
    ) -> None:
        _, transfer_id = reserve(ledger)
        ledger.void_pending(transfer_id)
        assert ledger.void_pending(transfer_id, uuid4()).replayed


class TestVoidAgain:
    def test_a_second_void_is_a_replay(self, ledger: Ledger) -> None:
        payer, transfer_id = reserve(ledger)
        assert not ledger.void_pending(transfer_id).replayed
        again = ledger.void_pending(transfer_id)
        assert (again.status, again.replayed) == ("voided", True)
        assert ledger.get_account(payer).available_balance == 100

    def test_a_post_after_a_void_is_refused(self, ledger: Ledger) -> None:
        _, transfer_id = reserve(ledger)
        ledger.void_pending(transfer_id)
        with pytest.raises(TransferNotPending):
            ledger.post_pending(transfer_id)


class TestAfterExpiry:
    """A transfer voided by its timeout: the client's void is answered (the hold is
    released, as asked), its post is ``pending_expired``, whether the sweeper or the
    client's own request found it expired first."""

    def test_the_clients_void_after_the_sweep_is_a_replay(
        self, timed_ledger: Ledger, clock: Clock
    ) -> None:
        payer, transfer_id = reserve(timed_ledger, timeout_seconds=60)
        clock.now += timedelta(seconds=60)
        assert timed_ledger.expire_pending([transfer_id]) == 1
        view = timed_ledger.void_pending(transfer_id)
        assert (view.status, view.replayed) == ("voided", True)
        assert timed_ledger.get_account(payer).available_balance == 100

    def test_the_clients_void_before_the_sweep_writes_it(
        self, timed_ledger: Ledger, clock: Clock
    ) -> None:
        _, transfer_id = reserve(timed_ledger, timeout_seconds=60)
        clock.now += timedelta(seconds=60)
        assert not timed_ledger.void_pending(transfer_id).replayed
        assert timed_ledger.expire_pending([transfer_id]) == 0

    def test_a_post_is_expired_before_and_after_the_sweep(
        self, timed_ledger: Ledger, clock: Clock
    ) -> None:
        _, swept = reserve(timed_ledger, timeout_seconds=60)
        _, unswept = reserve(timed_ledger, timeout_seconds=60)
        clock.now += timedelta(seconds=60)
        timed_ledger.expire_pending([swept])
        for transfer_id in (swept, unswept, unswept):
            with pytest.raises(PendingExpired):
                timed_ledger.post_pending(transfer_id)

    def test_one_second_before_the_timeout_a_post_is_written(
        self, timed_ledger: Ledger, clock: Clock
    ) -> None:
        _, transfer_id = reserve(timed_ledger, timeout_seconds=60)
        clock.now += timedelta(seconds=59)
        assert timed_ledger.post_pending(transfer_id).status == "posted"


class TestStoredBeforeRequestIds:
    def test_a_version_1_settlement_reads_with_no_request_id(self, ledger: Ledger) -> None:
        _, transfer_id = reserve(ledger, 60)
        pending = ledger.load_transfer(transfer_id)
        mapper = ledger.mapper
        assert mapper.cipher is None and mapper.compressor is None
        # The state a version-1 PendingPosted was stored with: no class_version.
        state = {"timestamp": pending.modified_on + timedelta(seconds=1), "amount": 60}
        topic = "domain.transfer:Transfer.PendingPosted"
        ledger.recorder.insert_events(
            [StoredEvent(transfer_id, 2, topic, mapper.transcoder.encode(state))]
        )
        loaded = ledger.find(transfer_id)
        assert isinstance(loaded, Transfer)
        assert (loaded.status, loaded.settlement_request_id) == ("posted", None)
        assert ledger.post_pending(transfer_id, 60).replayed
