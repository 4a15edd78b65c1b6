"""Opening, reading and changing accounts, on every store."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.errors import (
    AccountClosed,
    AccountNotEmpty,
    AccountNotFound,
    IdempotencyKeyReused,
    InvalidRequest,
    ReservedId,
    VersionMismatch,
)
from domain.ledger import Ledger
from domain.money import world_account_id


class TestOpenAccount:
    def test_opens_an_empty_account_and_its_world_account(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD", "alice", {"team": "x"})
        assert (account.balance, account.status, account.version) == (0, "open", 1)
        world = ledger.world_account("USD")
        assert world.id == world_account_id("USD") and world.is_world

    def test_same_id_and_fields_again_is_a_replay(self, ledger: Ledger) -> None:
        account_id = uuid4()
        first = ledger.open_account("EUR", "bob", account_id=account_id)
        again = ledger.open_account("EUR", "bob", account_id=account_id)
        assert again.replayed and not first.replayed
        assert again.version == 1

    def test_same_id_with_other_fields_is_refused(self, ledger: Ledger) -> None:
        account_id = uuid4()
        ledger.open_account("EUR", "bob", account_id=account_id)
        with pytest.raises(IdempotencyKeyReused):
            ledger.open_account("EUR", "carol", account_id=account_id)

    def test_the_world_account_id_cannot_be_taken(self, ledger: Ledger) -> None:
        with pytest.raises(ReservedId):
            ledger.open_account("USD", account_id=world_account_id("USD"))

    def test_unknown_account_is_not_found(self, ledger: Ledger) -> None:
        with pytest.raises(AccountNotFound):
            ledger.get_account(uuid4())


class TestLifecycle:
    def test_freeze_unfreeze_close(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD")
        assert ledger.freeze(account.id).status == "frozen"
        assert ledger.unfreeze(account.id).status == "open"
        assert ledger.close_account(account.id).status == "closed"
        with pytest.raises(AccountClosed):
            ledger.freeze(account.id)

    def test_close_refuses_a_balance(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD")
        ledger.deposit(account.id, 1)
        with pytest.raises(AccountNotEmpty):
            ledger.close_account(account.id)

    def test_stale_expected_version_is_refused(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD")
        ledger.deposit(account.id, 5)
        with pytest.raises(VersionMismatch) as caught:
            ledger.freeze(account.id, expected_version=1)
        assert caught.value.actual_version == 2
        assert ledger.freeze(account.id, expected_version=2).version == 3

    def test_update_metadata_replaces_name_and_map(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD", "old", {"a": "1"})
        updated = ledger.update_metadata(account.id, name="new", metadata={"b": "2"})
        assert (updated.name, updated.metadata, updated.version) == ("new", {"b": "2"}, 2)
        unchanged = ledger.update_metadata(account.id, name="new")
        assert unchanged.version == 2

    def test_world_account_cannot_be_frozen(self, ledger: Ledger) -> None:
        ledger.open_account("USD")
        with pytest.raises(InvalidRequest):
            ledger.freeze(world_account_id("USD"))

    def test_overdraft_limit_change_is_its_own_event(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD")
        changed = ledger.change_overdraft_limit(account.id, 500)
        assert changed.overdraft_limit == 500
        assert ledger.account_events(account.id)[-1].type == "OverdraftLimitChanged"
        ledger.withdraw(account.id, 500)
        assert ledger.get_account(account.id).balance == -500
