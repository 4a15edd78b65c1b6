"""verify's ledger invariants, each shown failing by a forged but well-formed log.

Method: the checks read decoded events, so each test feeds ``LedgerInvariants``
events that a forger could write (valid JSON, valid versions), one rule broken at a
time, and checks the first problem names the position and account; then a real
ledger's balances view is changed and caught by the read-model check.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from domain.money import world_account_id
from projections.audit.invariants import ACCOUNT, TRANSFER, LedgerInvariants, Problem
from projections.catalog import select_projections
from projections.follower import follower_for
from tests.audit.conftest import Audited, populate

USD = "USD"


class Log:
    """Writes events as the ledger would, with positions, into the invariants."""

    def __init__(self) -> None:
        self.invariants = LedgerInvariants()
        self.position = 0
        self.versions: dict[UUID, int] = {}
        self.balances: dict[UUID, int] = {}

    def event(self, originator: UUID, topic: str, **data: Any) -> int:
        self.position += 1
        version = self.versions.get(originator, 0) + 1
        self.versions[originator] = version
        self.invariants.feed(self.position, originator, version, topic, data)
        return self.position

    def open(self, limit: int = 0, world: bool = False, currency: str = USD) -> UUID:
        account = world_account_id(currency) if world else uuid4()
        self.event(account, ACCOUNT + "Opened", currency=currency, name="",
                   metadata={}, overdraft_limit=limit, is_world=world)  # fmt: skip
        self.balances[account] = 0
        return account

    def posting(self, account: UUID, kind: str, transfer: UUID, amount: int) -> int:
        delta = amount if kind == "Credited" else -amount
        self.balances[account] += delta
        return self.event(account, ACCOUNT + kind, transfer_id=transfer, amount=amount,
                          balance_after=self.balances[account])  # fmt: skip

    def posted(self, transfer: UUID, debit: UUID, credit: UUID, amount: int, **extra: Any) -> int:
        fields = dict(debit_account_id=debit, credit_account_id=credit, amount=amount,
                      currency=USD, description="", metadata={}, reverses=None)  # fmt: skip
        fields.update(extra)
        return self.event(transfer, TRANSFER + "Posted", **fields)

    def transfer(self, debit: UUID, credit: UUID, amount: int) -> UUID:
        transfer = uuid4()
        self.posting(debit, "Debited", transfer, amount)
        self.posting(credit, "Credited", transfer, amount)
        self.posted(transfer, debit, credit, amount)
        return transfer

    def problems(self) -> list[Problem]:
        self.invariants.finish(self.position)
        return self.invariants.problems


def test_a_well_formed_history_holds() -> None:
    log = Log()
    world, alice, bob = log.open(world=True), log.open(), log.open(limit=100)
    log.transfer(world, alice, 1_000)
    log.transfer(alice, bob, 1_000)
    log.transfer(bob, world, 1_100)  # exactly at bob's limit
    assert log.problems() == []


def test_a_balance_beyond_the_overdraft_limit() -> None:
    log = Log()
    world, alice, bob = log.open(world=True), log.open(limit=100), log.open()
    log.transfer(world, bob, 5)
    transfer = uuid4()
    position = log.posting(alice, "Debited", transfer, 101)  # one past the limit
    log.posting(bob, "Credited", transfer, 101)
    log.posted(transfer, alice, bob, 101)
    (problem,) = log.problems()
    assert (problem.check, problem.position, problem.account_id) == ("overdraft", position, alice)


def test_a_debit_without_its_credit() -> None:
    log = Log()
    world, alice = log.open(world=True), log.open()
    transfer = uuid4()
    position = log.posting(world, "Debited", transfer, 10)
    log.posted(transfer, world, alice, 10)
    problems = log.problems()
    assert (problems[0].check, problems[0].position) == ("posting", position)
    assert {p.check for p in problems} == {"posting", "sum"}


def test_a_transfer_debited_twice() -> None:
    log = Log()
    world, alice = log.open(world=True), log.open()
    transfer = uuid4()
    log.posting(world, "Debited", transfer, 10)
    log.posting(world, "Debited", transfer, 10)
    log.posting(alice, "Credited", transfer, 10)
    log.posted(transfer, world, alice, 10)
    checks = [p.check for p in log.problems()]
    assert "posting" in checks and "sum" in checks


def test_a_credit_to_the_wrong_account_or_amount() -> None:
    log = Log()
    world, alice, bob = log.open(world=True), log.open(), log.open()
    transfer = uuid4()
    log.posting(world, "Debited", transfer, 10)
    position = log.posting(bob, "Credited", transfer, 10)
    log.posted(transfer, world, alice, 10)
    (problem,) = log.problems()
    assert (problem.check, problem.position, problem.account_id) == ("posting", position, bob)


def test_a_balance_after_that_does_not_add_up() -> None:
    log = Log()
    world, alice = log.open(world=True), log.open()
    transfer = uuid4()
    log.posting(world, "Debited", transfer, 10)
    log.balances[alice] += 1  # the forger writes balance_after one too high
    position = log.posting(alice, "Credited", transfer, 10)
    log.posted(transfer, world, alice, 10)
    problems = log.problems()
    assert (problems[0].check, problems[0].position, problems[0].account_id) == (
        "balance", position, alice,
    )  # fmt: skip


def test_a_reversal_must_be_recorded_on_its_original() -> None:
    log = Log()
    world, alice = log.open(world=True), log.open()
    original = log.transfer(world, alice, 10)
    reversal = uuid4()
    log.posting(alice, "Debited", reversal, 4)
    log.posting(world, "Credited", reversal, 4)
    log.event(original, TRANSFER + "Reversed", reversal_id=reversal, amount=5)  # not 4
    position = log.posted(reversal, alice, world, 4, reverses=original)
    (problem,) = log.problems()
    assert problem.check == "reversal" and problem.position == position - 1


def test_a_version_out_of_order() -> None:
    log = Log()
    world, alice = log.open(world=True), log.open()
    log.transfer(world, alice, 10)
    log.versions[alice] += 1  # skips a version
    transfer = log.transfer(alice, world, 1)
    problems = log.problems()
    assert problems[0].check == "version" and problems[0].account_id == alice
    assert transfer is not None


def test_the_balances_view_is_checked_against_the_replay(audited: Audited) -> None:
    ids = populate(audited.ledger)
    views = select_projections(["balances", "totals"])
    follower = follower_for(audited.ledger, audited.views, views)
    follower.catch_up()
    audited.ledger.deposit(ids["alice"], 5)  # the view now lags: that is not a problem
    result = audited.audit.verify()
    assert result.ok, result.problems
    assert {"read_model:balances", "read_model:totals", "snapshots"} <= set(result.checks)
    account_id = audited.views.dialect.id_value(ids["bob"])
    with audited.views.transaction() as tx:
        tx.execute("UPDATE balances SET balance = balance + 1 WHERE account_id = ?", (account_id,))
    problem = audited.audit.verify().problems[0]
    assert (problem.check, problem.account_id) == ("read_model:balances", ids["bob"])
    assert "balance=" in problem.detail


def test_the_totals_view_is_checked_against_the_replay(audited: Audited) -> None:
    populate(audited.ledger)
    views = select_projections(["totals"])
    follower_for(audited.ledger, audited.views, views).catch_up()
    assert audited.audit.verify().ok
    with audited.views.transaction() as tx:
        tx.execute("UPDATE totals SET accounts = accounts + 1 WHERE currency = 'EUR'")
    problem = audited.audit.verify().problems[0]
    assert problem.check == "read_model:totals" and "EUR has accounts=2" in problem.detail


def test_reservations_that_do_not_pair_up() -> None:
    log = Log()
    world, alice = log.open(world=True), log.open()
    log.transfer(world, alice, 100)
    transfer = uuid4()
    log.event(alice, ACCOUNT + "DebitReserved", transfer_id=transfer, amount=10)
    log.event(transfer, TRANSFER + "Pending", debit_account_id=alice, credit_account_id=world,
              amount=10, currency=USD, description="", metadata={}, reverses=None,
              timeout_seconds=None, expires_at=None)  # fmt: skip
    (problem,) = log.problems()
    assert problem.check == "pending" and "by 10" in problem.detail


def test_the_statements_view_is_checked_posting_by_posting(audited: Audited) -> None:
    ids = populate(audited.ledger)
    follower_for(audited.ledger, audited.views, select_projections(["statements"])).catch_up()
    result = audited.audit.verify()
    assert result.ok and "read_model:statements" in result.checks, result.problems
    bob = audited.views.dialect.id_value(ids["bob"])
    with audited.views.read() as tx:
        (position,) = tx.fetchall(
            "SELECT MIN(position) FROM statements WHERE account_id = ?", (bob,)
        )[0]
    with audited.views.transaction() as tx:
        tx.execute("UPDATE statements SET amount = amount + 1 WHERE position = ?", (position,))
    problem = audited.audit.verify().problems[0]
    assert (problem.check, problem.position, problem.account_id) == (
        "read_model:statements", position, ids["bob"],
    )  # fmt: skip
