"""The command line starts fast because it imports lazily; these keep it so.

Method: run ``eventledger --help`` and a read in a fresh interpreter and list the
heavy modules it imported; check that the values the CLI keeps for its help text
(so as not to import the modules they come from) still equal the originals.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api import cli_keys, cli_projections
from api.cli import app
from infrastructure import api_keys
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from infrastructure.store_presence import EVENTS_TABLE, VIEWS_TABLE, has_table
from infrastructure.views import TRACKING_TABLE, views_database
from projections import rebuild

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["fastapi", "uvicorn", "projections.audit", "api.app", "psycopg", "api.schemas"]
PROBE = """
import json, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["eventledger", *json.loads(sys.argv[1])]
from api.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(name for name in heavy if name in sys.modules)), file=sys.stderr)
"""


def imported(arguments: list[str], heavy: list[str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(arguments), json.dumps(heavy)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    return list(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("arguments", [["--help"], ["accounts", "--help"], ["--version"]])
def test_help_imports_no_http_stack_no_audit_no_store(arguments: list[str]) -> None:
    assert imported(arguments, HEAVY) == []


def test_a_sqlite_read_imports_no_http_stack_no_audit_no_postgresql(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    build_ledger(Settings(database_url=database)).close()
    read = ["accounts", "show", "a11ce000-0000-4000-8000-000000000001", "--database", database]
    assert imported(read, [*HEAVY, "infrastructure.persistence"]) == [
        "infrastructure.persistence"  # the probe can see a module it did import
    ]


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"eventledger {version('eventledger')}\n"


@pytest.mark.parametrize(
    "command", [["accounts", "show"], ["audit", "verify"], ["transfer"], ["serve"], []]
)
def test_flags_are_shown_without_a_value(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout


def test_the_values_kept_for_the_help_text_equal_their_sources() -> None:
    assert cli_keys.SCOPES == api_keys.SCOPES
    assert cli_keys.NAME_LENGTH_MAX == api_keys.NAME_LENGTH_MAX
    assert cli_projections.REBUILD_BATCH_SIZE == rebuild.REBUILD_BATCH_SIZE
    assert VIEWS_TABLE == TRACKING_TABLE


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_presence_check_finds_the_tables_a_ledger_creates(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'l.db'}"
        if store == "sqlite"
        else str(request.getfixturevalue("fresh_postgres_url"))
    )
    settings = Settings(database_url=url)
    kind = settings.database.kind
    assert not has_table(settings.database, EVENTS_TABLE[kind])
    build_ledger(settings).close()
    assert has_table(settings.database, EVENTS_TABLE[kind])
    assert not has_table(views_database(settings), VIEWS_TABLE)
