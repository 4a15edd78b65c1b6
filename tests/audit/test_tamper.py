"""Tampering with the database directly is detected, and the first problem names it.

Method: build a small ledger that uses every kind of event, bring the audit_chain
projection to the head (a checkpoint per event) and write down the digest, as an
auditor would. Then change the database with plain SQL, the way someone with
database access would, and run verify: it must fail, and its first problem must name
the position that was changed. Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from infrastructure.persistence import build_ledger
from projections.audit.hashing import parse_digest
from projections.audit.problems import VerifyResult
from tests.audit.conftest import Audited, Tamper, populate


def chained(audited: Audited) -> tuple[dict[str, Any], str]:
    ids = populate(audited.ledger)
    head = audited.audit.digest()
    assert audited.audit.verify().ok
    return ids, head["digest"]


def first_problem(result: VerifyResult) -> Any:
    assert not result.ok
    return result.problems[0]


class TestUntouched:
    def test_verifies_clean_with_its_digest(self, audited: Audited) -> None:
        _, digest = chained(audited)
        result = audited.audit.verify(parse_digest(digest))
        assert result.ok, result.problems
        assert result.events_checked == int(digest.split("@")[1])
        assert "digest" in result.checks and "invariants" in result.checks


class TestChangedByte:
    def test_names_the_changed_event(self, audited: Audited, tamper: Tamper) -> None:
        chained(audited)
        position = tamper.position_of("Transfer.Posted", 1)
        tamper.flip_timestamp_digit(position)
        problem = first_problem(audited.audit.verify())
        assert (problem.check, problem.position) == ("chain", position)

    def test_a_changed_amount_also_breaks_the_invariants(
        self, audited: Audited, tamper: Tamper
    ) -> None:
        chained(audited)
        position = tamper.position_of("Account.Credited", 2)
        state = tamper.state(position)
        tamper.set_state(position, state.replace(b'"amount":2500', b'"amount":3500'))
        assert tamper.state(position) != state
        result = audited.audit.verify()
        assert result.problems[0].position == position
        assert result.problems[0].account_id is not None  # the credited account
        assert {"chain", "balance", "posting"} <= {p.check for p in result.problems}


class TestDeletedEvent:
    def test_names_the_missing_position(self, audited: Audited, tamper: Tamper) -> None:
        chained(audited)
        position = tamper.position_of("Account.Debited", 3)
        tamper.delete(position)
        problem = first_problem(audited.audit.verify())
        assert (problem.check, problem.position) == ("gap", position)

    def test_deleting_the_last_event_is_seen(self, audited: Audited, tamper: Tamper) -> None:
        chained(audited)
        last = tamper.positions()[-1]
        tamper.delete(last)
        problems = audited.audit.verify().problems
        assert problems and problems[0].check == "chain" and problems[0].position == last


class TestSwappedEvents:
    def test_names_the_first_of_the_two(self, audited: Audited, tamper: Tamper) -> None:
        chained(audited)
        first = tamper.position_of("Transfer.Posted", 0)
        second = tamper.position_of("Transfer.Posted", 2)
        tamper.swap(first, second)
        problem = first_problem(audited.audit.verify())
        assert (problem.check, problem.position) == ("chain", first)


class TestForgedEvent:
    def test_a_credit_appended_without_a_transfer(self, audited: Audited, tamper: Tamper) -> None:
        ids, digest = chained(audited)
        forged = tamper.positions()[-1] + 1
        tamper.forge_credit(forged, ids["alice"], 1_000_000)
        # The chain follower may well take the forged event in (it cannot know);
        # the invariants catch it: no transfer accounts for the money.
        result = audited.audit.verify(parse_digest(digest))
        problem = first_problem(result)
        assert problem.position == forged
        assert problem.account_id == ids["alice"]
        assert {"posting", "sum"} <= {p.check for p in result.problems}

    def test_an_event_inserted_into_a_recorded_gap(self, audited: Audited, tamper: Tamper) -> None:
        ids = populate(audited.ledger)
        # Before the chain passes, leave positions empty the way a rolled-back
        # PostgreSQL insert does; the chain records them as empty.
        last = tamper.positions()[-1]
        tamper.run("UPDATE {table} SET {position} = ? WHERE {position} = ?", (last + 5, last))
        audited.audit.digest()
        assert audited.audit.verify().ok
        tamper.forge_credit(last + 2, ids["bob"], 5)
        problem = first_problem(audited.audit.verify())
        assert (problem.check, problem.position) == ("inserted", last + 2)


class TestRewrittenEventAndCheckpoints:
    def test_only_the_external_digest_catches_it(self, audited: Audited, tamper: Tamper) -> None:
        _, digest = chained(audited)
        position = tamper.position_of("Transfer.Posted", 1)
        tamper.flip_timestamp_digit(position)
        tamper.rechain_from(position)
        assert audited.audit.verify().ok  # the database agrees with itself...
        result = audited.audit.verify(parse_digest(digest))  # ...the digest does not
        problem = first_problem(result)
        assert problem.check == "digest"
        assert problem.position == int(digest.split("@")[1])
        assert [p.check for p in result.problems] == ["digest"]


class TestRolledBackInsert:
    def test_the_gap_it_leaves_is_recorded_not_reported(
        self, audited: Audited, tamper: Tamper
    ) -> None:
        ids = populate(audited.ledger)
        ledger = audited.ledger
        first, second = (ledger.repository.get(ids["alice"]) for _ in range(2))
        first.freeze()
        ledger.save(first)
        second.freeze()
        with pytest.raises(IntegrityError):
            ledger.save(second)  # the losing side of an optimistic-concurrency race
        ledger.deposit(ids["carol"], 5)
        positions = tamper.positions()
        gaps = sorted(set(range(1, positions[-1] + 1)) - set(positions))
        if audited.settings.database.kind == "postgresql":
            assert gaps, "PostgreSQL's sequence skips the rolled-back insert"
        result = audited.audit.verify()
        assert result.ok, result.problems
        if gaps:
            assert audited.audit.chain.store.gaps(0, positions[-1]) == gaps


class TestChangedSnapshot:
    def test_a_snapshot_that_disagrees_with_the_events(
        self, audited: Audited, tamper: Tamper
    ) -> None:
        ledger = build_ledger(audited.settings.model_copy(update={"snapshot_interval": 2}))
        try:
            ids = populate(ledger)
            assert audited.audit.verify().ok
            table = "stored_snapshots" if tamper.is_sqlite else "ledger_snapshots"
            alice = ids["alice"].hex if tamper.is_sqlite else ids["alice"]
            (version, state) = tamper.run(
                f"SELECT originator_version, state FROM {table} WHERE originator_id = ? "
                "ORDER BY originator_version DESC LIMIT 1",
                (alice,),
            )[0]
            forged = bytes(state).replace(b'"overdraft_limit":', b'"overdraft_limit":9', 1)
            assert forged != bytes(state)  # alice may now overdraw by 90: a forged credit line
            tamper.run(
                f"UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
                (forged, alice, version),
            )
            result = audited.audit.verify()
            problem = first_problem(result)
            assert (problem.check, problem.account_id) == ("snapshots", ids["alice"])
            assert "overdraft_limit=90" in problem.detail
        finally:
            ledger.close()
