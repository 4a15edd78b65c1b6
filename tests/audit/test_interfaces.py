"""The audit on the command line and over HTTP.

Method: run ``eventledger audit digest|verify`` through typer's runner and the
``/v1/audit`` endpoints through FastAPI's test client, on a SQLite ledger, before
and after tampering with a stored event; check exit codes, the JSON shapes of
DESIGN.md section 5, and that only a key with the ``audit`` scope gets in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from infrastructure.api_keys import build_keystore, create_key
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from tests.audit.conftest import Tamper, populate
from tests.support import wait_until


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}", run_projections=False)
    ledger = build_ledger(settings)
    populate(ledger)
    ledger.close()
    yield settings


def run(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(arguments))
    return result.exit_code, result.stdout


class TestCommandLine:
    def test_digest_then_verify_with_it(self, sqlite_settings: Settings) -> None:
        database = ("--database", sqlite_settings.database_url)
        code, output = run("audit", "digest", *database)
        assert code == 0
        digest = output.strip()
        assert len(digest.split("@")[0]) == 64
        code, output = run("audit", "verify", "--digest", digest, *database)
        assert code == 0, output
        assert output.startswith("OK:")

    def test_json_digest_has_position_hash_algorithm(self, sqlite_settings: Settings) -> None:
        code, output = run("audit", "digest", "--json", "--database", sqlite_settings.database_url)
        assert code == 0
        assert set(json.loads(output)) == {"position", "hash", "algorithm"}

    def test_a_tampered_event_fails_with_exit_1_naming_it(self, sqlite_settings: Settings) -> None:
        database = ("--database", sqlite_settings.database_url)
        run("audit", "digest", *database)
        tamper = Tamper(sqlite_settings)
        position = tamper.position_of("Account.Credited", 1)
        tamper.flip_timestamp_digit(position)
        tamper.close()
        code, output = run("audit", "verify", *database)
        assert code == 1
        assert f"first at position {position}" in output
        code, output = run("audit", "verify", "--json", *database)
        report = json.loads(output)
        assert code == 1 and report["ok"] is False
        assert report["problems"][0]["position"] == position

    def test_a_malformed_digest_exits_2(self, sqlite_settings: Settings) -> None:
        code, _ = run("audit", "verify", "--digest", "abc@1",
                      "--database", sqlite_settings.database_url)  # fmt: skip
        assert code == 2


class TestHttp:
    @pytest.fixture
    def keys(self, sqlite_settings: Settings) -> dict[str, str]:
        store = build_keystore(sqlite_settings)
        try:
            return {scope: create_key(store, [scope])[0] for scope in ("audit", "read")}
        finally:
            store.close()

    @pytest.fixture
    def client(self, sqlite_settings: Settings) -> Iterator[TestClient]:
        with TestClient(create_app(sqlite_settings)) as client:
            yield client

    def test_digest_and_verify_with_the_audit_scope(
        self, client: TestClient, keys: dict[str, str]
    ) -> None:
        headers = {"Authorization": f"Bearer {keys['audit']}"}
        digest = client.get("/v1/audit/digest", headers=headers)
        assert digest.status_code == 200, digest.text
        body = digest.json()
        assert body["algorithm"] == "sha256-chain-v2" and len(body["hash"]) == 64
        verify = client.post("/v1/audit/verify", json={"digest": body["digest"]}, headers=headers)
        assert verify.status_code == 200, verify.text
        report = verify.json()
        assert report["ok"] is True and report["problems"] == []
        assert report["events_checked"] == body["events"]
        assert report["head"] == {k: body[k] for k in ("position", "hash", "algorithm")}
        assert client.post("/v1/audit/verify", headers=headers).json()["ok"] is True

    def test_other_scopes_and_no_key_are_refused(
        self, client: TestClient, keys: dict[str, str]
    ) -> None:
        assert client.get("/v1/audit/digest").status_code == 401
        read = {"Authorization": f"Bearer {keys['read']}"}
        assert client.get("/v1/audit/digest", headers=read).status_code == 403
        assert client.post("/v1/audit/verify", headers=read).status_code == 403

    def test_a_malformed_digest_is_a_422(self, client: TestClient, keys: dict[str, str]) -> None:
        headers = {"Authorization": f"Bearer {keys['audit']}"}
        response = client.post("/v1/audit/verify", json={"digest": "nope"}, headers=headers)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    def test_a_tampered_log_reports_the_first_position(
        self, client: TestClient, keys: dict[str, str], sqlite_settings: Settings
    ) -> None:
        headers = {"Authorization": f"Bearer {keys['audit']}"}
        digest = client.get("/v1/audit/digest", headers=headers).json()["digest"]
        tamper = Tamper(sqlite_settings)
        position = tamper.position_of("Transfer.Posted", 0)
        tamper.delete(position)
        tamper.close()
        report = client.post("/v1/audit/verify", json={"digest": digest}, headers=headers).json()
        assert report["ok"] is False
        assert report["problems"][0]["check"] == "gap"
        assert report["problems"][0]["position"] == position


def test_the_served_app_keeps_the_chain_at_the_head(sqlite_settings: Settings) -> None:
    settings = sqlite_settings.model_copy(update={"run_projections": True})
    with TestClient(create_app(settings)) as client:
        audit = client.app.state.audit  # type: ignore[attr-defined]
        head = audit.head_position()
        wait_until(lambda: audit.chain.head().position >= head, 10)
        assert audit.chain.head().position == head
        report = client.post("/v1/audit/verify").json()  # no key exists: open on loopback
        assert report["ok"] is True, report["problems"]
