"""A store holding a world account's id in another aggregate is flagged by verify.

Method: the ledger now refuses a world account's id (uuid5 of ``world:<CUR>``) for
an account, a transfer or a transaction; a store written before may still hold one.
Write such aggregates directly, with the domain objects and the application's save
(the refusal lives in the use cases, which this bypasses): an account opened in USD
with the JPY world id, and a posted transfer whose id is the AUD world id. Verify,
on SQLite and PostgreSQL, reports ``world_id_squatted`` at the aggregate's first
event and nothing else; the real world accounts are not reported.
"""

from __future__ import annotations

from uuid import UUID

from typer.testing import CliRunner

from api.cli import app as cli
from domain.account import Account
from domain.money import world_account_id
from domain.transfer import Transfer, TransferRequest
from tests.audit.conftest import Audited, populate


def squat_account(audited: Audited, currency_held: str, currency: str) -> tuple[UUID, int]:
    """Opens, unchecked, a ``currency`` account with ``currency_held``'s world id."""
    squatter = Account(
        id=world_account_id(currency_held), currency=currency, name="squatter",
        metadata={}, overdraft_limit=0, is_world=False,
    )  # fmt: skip
    audited.ledger.save(squatter)
    return squatter.id, audited.ledger.head_position()


def squat_transfer(audited: Audited, ids: dict[str, UUID], currency_held: str) -> int:
    """Posts, unchecked, a transfer alice -> bob whose id is ``currency_held``'s world
    id; returns the position of its Transfer event."""
    ledger = audited.ledger
    transfer_id = world_account_id(currency_held)
    alice, bob = ledger.repository.get(ids["alice"]), ledger.repository.get(ids["bob"])
    alice.debit(transfer_id, 5)
    bob.credit(transfer_id, 5)
    request = TransferRequest(alice.id, bob.id, 5, "USD", "squatter", {})
    ledger.save(alice, bob, Transfer.post(transfer_id, request))
    return ledger.head_position()


class TestWorldIdsHeldByOthers:
    def test_an_account_with_another_currencys_world_id_is_reported(self, audited: Audited) -> None:
        populate(audited.ledger)
        squatter, position = squat_account(audited, "JPY", "USD")
        result = audited.audit.verify()
        assert [(p.check, p.position, p.account_id) for p in result.problems] == [
            ("world_id_squatted", position, squatter)
        ]
        detail = result.problems[0].detail
        assert "opened in USD" in detail and "JPY world account" in detail

    def test_a_transfer_with_a_world_id_is_reported(self, audited: Audited) -> None:
        ids = populate(audited.ledger)
        position = squat_transfer(audited, ids, "AUD")
        result = audited.audit.verify()
        assert [(p.check, p.position) for p in result.problems] == [("world_id_squatted", position)]
        assert "a transfer (Posted)" in result.problems[0].detail
        assert "AUD world account" in result.problems[0].detail

    def test_the_world_accounts_themselves_are_not_reported(self, audited: Audited) -> None:
        populate(audited.ledger)  # USD and EUR world accounts, opened by the ledger
        assert audited.audit.verify().ok

    def test_the_command_line_exits_1_naming_it(self, audited: Audited) -> None:
        populate(audited.ledger)
        squatter, position = squat_account(audited, "GBP", "EUR")
        result = CliRunner().invoke(
            cli, ["audit", "verify", "--database", audited.settings.database_url]
        )
        assert result.exit_code == 1
        assert f"first at position {position}, account {squatter}" in result.stdout
        assert "world_id_squatted" in result.stdout
