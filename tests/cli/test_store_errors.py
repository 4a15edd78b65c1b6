"""Every command fails with one line when its store cannot be opened, and a command
that needs a ledger refuses a store that has none, creating nothing.

Method: typer's runner invokes the real commands on an unreachable PostgreSQL port, a
missing PostgreSQL database, a PostgreSQL schema and a SQLite path that do not exist;
each answer must be exactly one line on stderr, exit 3, no password, no traceback,
and the store must be left as it was (no folder, no file, no schema).
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner, Result

from api.cli import app
from tests.conftest import POSTGRES_BASE_URL

ACCOUNT = "a11ce000-0000-4000-8000-000000000001"
OTHER = "b0b00000-0000-4000-8000-000000000002"
TRANSFER = "00000000-0000-4000-8000-00000000f001"
PASSWORD = "s3cret-pw"
UNREACHABLE = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test"

# Commands that need a ledger to exist (reads, and writes that name an account or a
# transfer, which an empty ledger cannot have).
NEEDS_LEDGER = [
    ["accounts", "list"],
    ["accounts", "show", ACCOUNT],
    ["history", ACCOUNT],
    ["deposit", ACCOUNT, "100"],
    ["withdraw", ACCOUNT, "100"],
    ["transfer", ACCOUNT, OTHER, "100", "--currency", "USD"],
    ["post", TRANSFER],
    ["void", TRANSFER],
    ["reverse", TRANSFER],
    ["projections", "status"],
    ["audit", "digest"],
    ["audit", "verify"],
    ["keys", "list"],
    ["keys", "revoke", "k_nope"],
]
# Commands that create a ledger where there is none.
CREATES_LEDGER = [
    ["accounts", "open", "USD", "--id", ACCOUNT],
    ["keys", "create", "--scope", "read"],
    ["projections", "rebuild"],
]


def invoke(arguments: list[str], database: str, tmp_path: Path) -> Result:
    if arguments == ["batch"]:
        batch = tmp_path / "batch.json"
        batch.write_text(json.dumps({"transfers": [{"from_account": ACCOUNT,
            "to_account": OTHER, "amount": 1, "currency": "USD"}]}))  # fmt: skip
        arguments = ["batch", str(batch)]
    return CliRunner().invoke(app, [*arguments, "--database", database])


def assert_one_line_error(result: Result, starts: str) -> None:
    assert result.exit_code == 3, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(starts), lines[0]
    assert "Traceback" not in result.output and PASSWORD not in result.output
    assert result.stdout == ""


ALL_COMMANDS = [*NEEDS_LEDGER, *CREATES_LEDGER, ["batch"], ["serve"], ["projections", "run"]]


@pytest.mark.parametrize("arguments", ALL_COMMANDS, ids=" ".join)
def test_an_unreachable_postgresql_is_one_line_without_the_password(
    arguments: list[str], tmp_path: Path
) -> None:
    result = invoke(arguments, UNREACHABLE, tmp_path)
    assert_one_line_error(result, "error: cannot open postgresql://postgres@127.0.0.1:1/test: ")
    assert "Connection refused" in result.stderr


@pytest.mark.parametrize("arguments", ALL_COMMANDS, ids=" ".join)
def test_a_missing_postgresql_database_is_one_line(
    arguments: list[str], tmp_path: Path, postgres_schema: str
) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/eventledger_no_such_db"
    result = invoke(arguments, url, tmp_path)
    assert_one_line_error(
        result, "error: cannot open postgresql://postgres@127.0.0.1:5432/eventledger_no_such_db: "
    )
    assert 'database "eventledger_no_such_db" does not exist' in result.stderr


@pytest.mark.parametrize("arguments", [*NEEDS_LEDGER, ["batch"]], ids=" ".join)
def test_a_missing_sqlite_ledger_is_refused_and_nothing_is_created(
    arguments: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(arguments, "sqlite:///./nonexistent_dir/x.db", tmp_path)
    expected = f"sqlite:///{tmp_path.resolve() / 'nonexistent_dir' / 'x.db'}"
    assert_one_line_error(result, f"error: no ledger at {expected}; create one with ")
    assert not (tmp_path / "nonexistent_dir").exists()


@pytest.mark.parametrize("arguments", [*NEEDS_LEDGER, ["batch"]], ids=" ".join)
def test_a_postgresql_schema_without_a_ledger_is_refused_and_not_created(
    arguments: list[str], tmp_path: Path, fresh_postgres_url: str
) -> None:
    result = invoke(arguments, fresh_postgres_url, tmp_path)
    assert_one_line_error(result, f"error: no ledger at {fresh_postgres_url}; ")
    assert schema_exists(fresh_postgres_url.split("schema=")[1]) is False


def test_an_unreadable_sqlite_file_is_one_line(tmp_path: Path) -> None:
    not_a_database = tmp_path / "notes.db"
    not_a_database.write_text("these are not the tables you are looking for" * 100)
    result = invoke(["accounts", "list"], f"sqlite:///{not_a_database}", tmp_path)
    assert_one_line_error(result, f"error: cannot open sqlite:///{not_a_database}: ")


def test_the_default_relative_path_is_shown_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVENTLEDGER_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["accounts", "list"])
    assert result.exit_code == 3
    assert f"no ledger at sqlite:///{tmp_path.resolve()}/data/eventledger.db;" in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_typo_in_the_views_database_is_refused_not_created(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        database = f"sqlite:///{tmp_path / 'ledger.db'}"
        typo = f"sqlite:///{tmp_path / 'ledger.veiws.db'}"
    else:
        database = str(request.getfixturevalue("fresh_postgres_url"))
        typo = f"{database}_veiws"
    runner = CliRunner()
    assert runner.invoke(app, ["projections", "rebuild", "--database", database]).exit_code == 0
    views = ["--database", database, "--views-database", typo]
    result = runner.invoke(app, ["projections", "status", *views])
    assert_one_line_error(result, f"error: no read models at {typo}; ")
    if kind == "sqlite":
        assert not (tmp_path / "ledger.veiws.db").exists()
    else:
        assert schema_exists(typo.split("schema=")[1]) is False
    status = runner.invoke(app, ["projections", "status", "--database", database])
    assert status.exit_code == 0, status.output


def schema_exists(schema: str) -> bool:
    with psycopg.connect(POSTGRES_BASE_URL) as connection:
        found = connection.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    return found == (1,)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("arguments", CREATES_LEDGER, ids=" ".join)
def test_a_writing_command_creates_the_ledger_and_says_so_once(
    arguments: list[str], kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        database = f"sqlite:///{tmp_path / 'new' / 'ledger.db'}"
        shown = f"sqlite:///{tmp_path.resolve() / 'new' / 'ledger.db'}"
    else:
        database = shown = str(request.getfixturevalue("fresh_postgres_url"))
    runner = CliRunner()
    first = runner.invoke(app, [*arguments, "--database", database])
    assert first.exit_code == 0, first.output
    assert first.stderr.count("created a new ledger") == 1
    assert f"created a new ledger at {shown}\n" in first.stderr
    again = runner.invoke(app, [*arguments, "--database", database])
    assert again.exit_code == 0, again.output
    assert "created a new ledger" not in again.stderr
    listed = runner.invoke(app, ["accounts", "list", "--database", database])
    assert listed.exit_code == 0, listed.output


def test_serve_creates_the_ledger_before_it_checks_the_keys(tmp_path: Path) -> None:
    """Serving creates a ledger (its reads and writes share it); here it then stops at
    the key rule, so the test needs no server."""
    database = f"sqlite:///{tmp_path / 'served.db'}"
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--database", database])
    assert result.exit_code == 2, result.output
    assert f"created a new ledger at {database}\n" in result.stderr
    assert "no API key exists" in result.stderr
    shown = CliRunner().invoke(app, ["accounts", "list", "--database", database])
    assert shown.exit_code == 0, shown.output


@pytest.mark.parametrize(
    "arguments",
    [["accounts", "list"], ["projections", "status"], ["audit", "digest"]],
    ids=" ".join,
)
def test_views_that_cannot_be_opened_are_one_line(arguments: list[str], tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert (
        CliRunner().invoke(app, ["accounts", "open", "USD", "--database", database]).exit_code == 0
    )
    (tmp_path / "ledger.views.db").mkdir()  # where the views would be: a folder
    result = invoke(arguments, database, tmp_path)
    assert_one_line_error(result, f"error: cannot open sqlite:///{tmp_path / 'ledger.views.db'}: ")


@pytest.mark.parametrize(
    "arguments", [["accounts", "list"], ["audit", "digest"], ["audit", "verify"]], ids=" ".join
)
def test_a_typo_in_a_named_views_database_is_refused_by_every_reader(
    arguments: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside the ledger the views are derived and made when needed; a views database
    named explicitly must exist, so a typo in it cannot make an empty one."""
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    opened = CliRunner().invoke(app, ["accounts", "open", "USD", "--database", database])
    assert opened.exit_code == 0, opened.output
    typo = f"sqlite:///{tmp_path / 'ledger.veiws.db'}"
    monkeypatch.setenv("EVENTLEDGER_VIEWS_DATABASE_URL", typo)
    result = invoke(arguments, database, tmp_path)
    assert_one_line_error(result, f"error: no read models at {typo}; ")
    assert not (tmp_path / "ledger.veiws.db").exists()
    monkeypatch.setenv("EVENTLEDGER_VIEWS_DATABASE_URL", f"sqlite:///{tmp_path / 'views.db'}")
    built = CliRunner().invoke(app, ["projections", "rebuild", "--database", database])
    assert built.exit_code == 0, built.output
    assert invoke(arguments, database, tmp_path).exit_code == 0
