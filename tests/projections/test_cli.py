"""``eventledger projections status|rebuild`` as a script uses them (``--json``).

Method: typer's runner invokes the real command on a SQLite ledger in ``tmp_path``.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.cli_audit import audit_app as cli_audit_app
from api.cli_projections import AUDIT_CHAIN
from domain.ledger import Ledger
from infrastructure.settings import Settings
from projections.audit.chain import NAME as CHAIN_NAME

pytestmark = pytest.mark.parametrize("store", ["sqlite"])


def test_rebuild_then_status_report_every_view_at_the_head(
    settings: Settings, ledger: Ledger
) -> None:
    account = ledger.open_account("USD").id
    for amount in range(1, 30):
        ledger.deposit(account, amount)
    runner = CliRunner()
    database = ["--database", settings.database_url]
    rebuilt = runner.invoke(app, ["projections", "rebuild", *database, "--json"])
    assert rebuilt.exit_code == 0, rebuilt.output
    report = json.loads(rebuilt.stdout[rebuilt.stdout.index("{") :])
    assert report["swapped"] and report["position"] == ledger.head_position()
    status = runner.invoke(app, ["projections", "status", *database, "--json"])
    assert status.exit_code == 0, status.output
    rows = {row["name"]: row for row in json.loads(status.stdout)}
    assert {rows[name]["lag"] for name in ("balances", "statements", "totals")} == {0}


def test_an_unknown_projection_is_refused(settings: Settings) -> None:
    result = CliRunner().invoke(
        app, ["projections", "rebuild", "nope", "--database", settings.database_url]
    )
    assert result.exit_code == 2
    assert "unknown projection nope" in result.output


def test_the_audit_chain_is_listed_as_never_rebuilt_and_its_rebuild_says_why(
    settings: Settings, ledger: Ledger
) -> None:
    ledger.deposit(ledger.open_account("USD").id, 5)
    database = ["--database", settings.database_url]
    runner = CliRunner()
    assert runner.invoke(cli_audit_app, ["digest", *database]).exit_code == 0
    status = runner.invoke(app, ["projections", "status", *database])
    assert status.exit_code == 0, status.output
    (row,) = [line for line in status.stdout.splitlines() if f"│ {AUDIT_CHAIN} " in line]
    assert "never (append-only)" in row
    refused = runner.invoke(app, ["projections", "rebuild", AUDIT_CHAIN, *database])
    assert refused.exit_code == 2
    assert "is append-only and is not rebuilt" in refused.output
    assert "audit verify" in refused.output
    assert AUDIT_CHAIN == CHAIN_NAME
