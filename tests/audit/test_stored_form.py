"""A stored row in any form is reported at its position, on the command line and
over HTTP, never a traceback or a 500; and the chain covers the form it is stored in.

Method: build the small ledger of ``populate``, chain it and take a digest, as an
auditor would; then change one stored row with plain SQL, the way someone with
database access would: an originator id that is not hex, a negative version, a state
stored as TEXT, a topic that resolves to no event class, a state that does not
decode. Run ``eventledger audit verify --json`` and ``POST /v1/audit/verify``: each
answers (exit 1, HTTP 200) with the expected problem at the changed position. The
SQLite-only cases are those a PostgreSQL column cannot hold (its uuid and bytea
columns refuse them). Last, the attack of issue 13: upper-casing the stored id of
an account's last event hides it from the ledger (its balance changes) while v1 of
the chain hashed the parsed UUID and saw nothing; ``--chain-only`` against the
earlier digest now reports it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from tests.audit.conftest import Audited, Tamper, populate

# (the row to change, how, the check reported at its position)
Case = tuple[str, Callable[[Tamper, int], None], str]


def set_version(tamper: Tamper, position: int) -> None:
    tamper.run("UPDATE {table} SET originator_version = -3 WHERE {position} = ?", (position,))


def set_topic(tamper: Tamper, position: int) -> None:
    tamper.run(
        "UPDATE {table} SET topic = 'domain.account:Account.Vanished' WHERE {position} = ?",
        (position,),
    )


def set_state(tamper: Tamper, position: int) -> None:
    tamper.set_state(position, b"\x00\x01 not an event")


def set_id(tamper: Tamper, position: int) -> None:
    tamper.run("UPDATE {table} SET originator_id = 'not-a-uuid' WHERE {position} = ?", (position,))


def set_state_text(tamper: Tamper, position: int) -> None:
    tamper.run("UPDATE {table} SET state = CAST(state AS TEXT) WHERE {position} = ?", (position,))


EVERY_STORE: list[Case] = [
    ("Account.Debited", set_version, "version"),
    ("Account.MetadataUpdated", set_topic, "event_type"),
    ("Transfer.Posted", set_state, "decode"),
]
SQLITE_ONLY: list[Case] = [
    ("Account.Credited", set_id, "originator_id"),
    ("Account.Credited", set_state_text, "stored_type"),
]


def cli_report(settings: Settings, *options: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        cli, ["audit", "verify", "--json", *options, "--database", settings.database_url]
    )
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def client(audited: Audited) -> Iterator[TestClient]:
    settings = audited.settings.model_copy(update={"run_projections": False})
    with TestClient(create_app(settings)) as client:
        yield client


def found(report: dict[str, Any]) -> set[tuple[str, int | None]]:
    return {(p["check"], p["position"]) for p in report["problems"]}


def check_case(audited: Audited, tamper: Tamper, client: TestClient, case: Case) -> None:
    populate(audited.ledger)
    digest = audited.audit.digest()["digest"]
    suffix, change, check = case
    position = tamper.position_of(suffix)
    change(tamper, position)
    code, report = cli_report(audited.settings)
    assert code == 1 and report["ok"] is False
    assert (check, position) in found(report), report["problems"][:5]
    assert ("chain", position) in found(report)  # the chain covers what changed
    response = client.post("/v1/audit/verify", json={"digest": digest})
    assert response.status_code == 200, response.text
    assert (check, position) in found(response.json())
    assert ("digest", int(digest.split("@")[1])) in found(response.json())
    # The chain alone, against the digest taken before, sees it too.
    code, chain_only = cli_report(audited.settings, "--chain-only", "--digest", digest)
    assert code == 1 and ("chain", position) in found(chain_only)


class TestEveryStore:
    @pytest.mark.parametrize("case", EVERY_STORE, ids=[c[2] for c in EVERY_STORE])
    def test_a_changed_row_is_a_problem_at_its_position(
        self, audited: Audited, tamper: Tamper, client: TestClient, case: Case
    ) -> None:
        check_case(audited, tamper, client, case)


@pytest.mark.parametrize("audit_settings", ["sqlite"], indirect=True)
class TestSQLite:
    @pytest.mark.parametrize("case", SQLITE_ONLY, ids=[c[2] for c in SQLITE_ONLY])
    def test_a_changed_row_is_a_problem_at_its_position(
        self, audited: Audited, tamper: Tamper, client: TestClient, case: Case
    ) -> None:
        check_case(audited, tamper, client, case)

    def test_an_upper_cased_id_hides_an_event_and_the_earlier_digest_reports_it(
        self, audited: Audited, tamper: Tamper
    ) -> None:
        ids = populate(audited.ledger)
        digest = audited.audit.digest()["digest"]
        alice = ids["alice"]
        (position,) = tamper.run(
            "SELECT MAX(rowid) FROM stored_events WHERE originator_id = ?", (alice.hex,)
        )[0]
        before = read_account(audited.settings, alice)
        tamper.run(
            "UPDATE stored_events SET originator_id = upper(originator_id) WHERE rowid = ?",
            (position,),
        )
        after = read_account(audited.settings, alice)
        assert after.version == before.version - 1  # the ledger no longer sees the event
        code, report = cli_report(audited.settings, "--chain-only", "--digest", digest)
        assert code == 1 and report["ok"] is False
        assert {("digest", int(digest.split("@")[1])), ("chain", position)} <= found(report)
        assert ("originator_id", position) in found(report)
        upper = next(p for p in report["problems"] if p["check"] == "originator_id")
        assert alice.hex.upper() in upper["detail"] and str(alice) in upper["detail"]

    def test_an_id_changed_before_it_was_chained_is_found_by_its_form(
        self, audited: Audited, tamper: Tamper
    ) -> None:
        ids = populate(audited.ledger)
        position = tamper.position_of("Account.Credited", 1)
        tamper.run(
            "UPDATE stored_events SET originator_id = upper(originator_id) WHERE rowid = ?",
            (position,),
        )
        result = audited.audit.verify()  # the chain takes the changed row in as it is
        assert ("originator_id", position) in {(p.check, p.position) for p in result.problems}
        assert not any(p.check == "chain" for p in result.problems)
        assert ids  # the ledger was populated


def read_account(settings: Settings, account_id: Any) -> Any:
    """The account as a freshly started ledger loads it (no cache, no snapshot)."""
    ledger = build_ledger(settings.model_copy(update={"aggregate_cache_size": 0}))
    try:
        return ledger.get_account(account_id)
    finally:
        ledger.close()
