"""A fault at any step of a commit leaves every bank invariant intact.

Method: for each store, each commit mode, each step of a commit (``faults.STEPS``)
and a few call numbers, a fresh ledger runs a fixed, seeded workload of transfer
groups while one fault fires at that step, and every answer is sorted as a client
sorts it (``bank_check``). Then: what was answered "nothing written" is not in the
store; every transfer without a definite answer is retried with its own id until it
has one; every account equals the model of the definite answers, each currency sums
to zero, a fresh Ledger on the same store reads the same, the views catch up and
audit verify finds no problem. A case where the fault never fired fails: it would
have tested nothing.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from domain.ledger import Ledger
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from tests.conftest import database_url_for
from tests.reliability.bank_check import (
    Bank,
    check_bank,
    check_views_and_audit,
)
from tests.reliability.faults import STEPS, Faults

pytestmark = pytest.mark.parametrize("commit_mode", ["group", "per_command"], indirect=True)

# What a client is told when the fault fires at each step. The insert before the
# COMMIT and a load fail with nothing written; a failed COMMIT and a lost answer are
# unknown; a snapshot failing after the commit changes no answer. (On PostgreSQL the
# library retries an insert that failed at the COMMIT, and the retry's conflict sends
# the command to replay its own write: a definite answer, so none may be unknown.
# Without group commit a later load may be the library's re-read for a snapshot,
# after the commit, which changes no answer either.)
ANSWERS = {
    "load": {"ServiceUnavailable"},
    "decide": {"InjectedBug"},
    "save": {"ServiceUnavailable"},
    "commit": {"OutcomeUnknown"},
    "answer_lost": {"OutcomeUnknown"},
    "after_commit": set(),
    "gave_up": {"ServiceUnavailable"},
}
UNANSWERED = {"ServiceUnavailable", "OutcomeUnknown", "InjectedBug"}
GROUPS = 6
GROUP_SIZE = 5
NTH_CALLS = (1, 3)


def cases() -> list[tuple[str, str, int]]:
    """(store, step, nth call): the in-memory store has no COMMIT that can fail."""
    return [
        (store, step, nth)
        for store in ("memory", "sqlite", "postgres")
        for step in STEPS
        for nth in NTH_CALLS
        if not (store == "memory" and step == "commit")
    ]


@pytest.fixture
def settings(
    store: str, commit_mode: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Settings:
    """A store of this test's own (a fresh PostgreSQL schema): the world accounts'
    balances and the audit cover exactly this test's log. Snapshots every 3 events,
    so a save often has one to write after its commit."""
    if store == "postgres":
        url = str(request.getfixturevalue("fresh_postgres_url"))
    else:
        url = database_url_for(store, tmp_path, request)
    return Settings(database_url=url, group_commit=commit_mode == "group", snapshot_interval=3)


@pytest.mark.parametrize(("store", "step", "nth_call"), cases(), indirect=["store"])
def test_a_fault_at_one_step_of_a_commit(
    ledger: Ledger, settings: Settings, step: str, nth_call: int
) -> None:
    faults = Faults(ledger)
    bank = Bank(ledger, faults, random.Random(f"{step}-{nth_call}"))
    bank.open_and_fund()
    faults.arm(step, nth_call)
    for number in range(GROUPS):
        if number == GROUPS // 2:
            bank.open_one_more()
        bank.send(bank.random_requests(GROUP_SIZE))
    assert faults.fired[step] == 1, f"the {step} fault never fired: nothing was tested"
    told = {answer for answer in bank.answers if answer in UNANSWERED}
    may_be_answered = (step == "commit" and settings.database.kind == "postgresql") or (
        step == "load" and nth_call > 1 and not settings.group_commit
    )
    if may_be_answered:
        assert told <= ANSWERS[step]
    else:
        assert told == ANSWERS[step]
    faults.disarm()
    bank.settle_the_rest()
    check_bank(ledger, bank)
    if settings.database.kind != "memory":
        restarted = build_ledger(settings.model_copy(update={"group_commit": False}))
        try:
            check_bank(restarted, bank)
        finally:
            restarted.close()
    check_views_and_audit(ledger, settings)
