"""API keys: 401 without a valid key, 403 without the scope, 200 with a good one.

Each test runs on a fresh store of its kind (the session's PostgreSQL schema is
shared, and a key there would close the open mode of every other test). Keys are made
through the same key store the ``eventledger keys`` commands use, and once through the
commands themselves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import OpenModeRefused, create_app
from api.cli import app as cli_app
from infrastructure.api_keys import KeyStore, create_key
from infrastructure.settings import Settings
from tests.api.support import assert_problem


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for_keys_to_take_effect(client: TestClient) -> None:
    """The open-mode answer is cached for a second; ask the store again now."""
    client.app.state.active_keys.refresh()  # type: ignore[attr-defined]


def keystore_of(client: TestClient) -> KeyStore:
    keystore: KeyStore = client.app.state.keystore  # type: ignore[attr-defined]
    return keystore


class TestKeys:
    def test_no_key_while_keys_exist_is_401(self, secured: TestClient) -> None:
        create_key(keystore_of(secured), ["read"])
        response = secured.get("/v1/transfers/00000000-0000-0000-0000-000000000000")
        body = assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "key" in body["detail"]

    def test_bad_and_malformed_keys_are_401(self, secured: TestClient) -> None:
        good, record = create_key(keystore_of(secured), ["read"])
        wrong_secret = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
        for key in (wrong_secret, "elk_" + "0" * 16 + "_" + "0" * 64, "not-a-key", "x" * 4000):
            response = secured.post("/v1/accounts", json={"currency": "USD"}, headers=bearer(key))
            assert_problem(response, 401, "unauthorized")
            assert "x" * 100 not in response.text

    def test_revoked_key_is_401(self, secured: TestClient) -> None:
        key, record = create_key(keystore_of(secured), ["read", "write"])
        assert (
            secured.post("/v1/accounts", json={"currency": "USD"}, headers=bearer(key)).status_code
            == 201
        )
        assert keystore_of(secured).revoke(record.key_id, datetime.now(UTC))
        response = secured.post("/v1/accounts", json={"currency": "USD"}, headers=bearer(key))
        assert_problem(response, 401, "unauthorized")

    def test_key_without_the_scope_is_403(self, secured: TestClient) -> None:
        read_only, _ = create_key(keystore_of(secured), ["read"])
        response = secured.post("/v1/accounts", json={"currency": "USD"}, headers=bearer(read_only))
        body = assert_problem(response, 403, "forbidden")
        assert "write" in body["detail"]

    def test_good_keys_pass_and_admin_grants_every_scope(self, secured: TestClient) -> None:
        writer, _ = create_key(keystore_of(secured), ["write", "read"])
        admin, _ = create_key(keystore_of(secured), ["admin"])
        created = secured.post("/v1/accounts", json={"currency": "USD"}, headers=bearer(writer))
        assert created.status_code == 201
        account_id = created.json()["id"]
        for key in (writer, admin):
            assert secured.get(f"/v1/accounts/{account_id}", headers=bearer(key)).status_code == 200
        frozen = secured.post(f"/v1/accounts/{account_id}/freeze", headers=bearer(admin))
        assert frozen.status_code == 200

    def test_health_and_metrics_need_no_key(self, secured: TestClient) -> None:
        create_key(keystore_of(secured), ["admin"])
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert secured.get(path).status_code == 200, path

    def test_readyz_shows_the_log_position_only_to_a_caller_who_may_read(
        self, secured: TestClient
    ) -> None:
        secured.post("/v1/accounts", json={"currency": "USD"})  # open mode: position 1+
        assert secured.get("/readyz").json()["position"] >= 1
        reader, _ = create_key(keystore_of(secured), ["read"])
        writer, _ = create_key(keystore_of(secured), ["write"])
        wait_for_keys_to_take_effect(secured)
        ready = secured.get("/readyz").json()
        assert (ready["status"], ready["position"]) == ("ready", None)
        for key in (writer, "elk_" + "0" * 16 + "_" + "0" * 64, "not-a-key"):
            answer = secured.get("/readyz", headers=bearer(key))
            assert answer.status_code == 200, key
            assert answer.json()["position"] is None, key
        assert secured.get("/readyz", headers=bearer(reader)).json()["position"] >= 1


class TestOpenMode:
    def test_without_keys_loopback_is_open(self, secured: TestClient) -> None:
        assert secured.post("/v1/accounts", json={"currency": "USD"}).status_code == 201

    def test_without_keys_a_public_bind_refuses_to_start(self, fresh_settings: Settings) -> None:
        public = fresh_settings.model_copy(update={"host": "0.0.0.0"})
        with pytest.raises(OpenModeRefused), TestClient(create_app(public)):
            pass

    def test_insecure_no_auth_allows_it(self, fresh_settings: Settings) -> None:
        public = fresh_settings.model_copy(update={"host": "0.0.0.0", "insecure_no_auth": True})
        with TestClient(create_app(public)) as client:
            assert client.post("/v1/accounts", json={"currency": "USD"}).status_code == 201


# memory:// keys live inside one server process, out of the commands' reach.
@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
def test_keys_commands_create_list_and_revoke(fresh_settings: Settings) -> None:
    runner = CliRunner()
    database = ["--database", fresh_settings.database_url]
    created = runner.invoke(
        cli_app, ["keys", "create", "--scope", "read", "--name", "ci", "--json", *database]
    )
    assert created.exit_code == 0, created.output
    made = json.loads(created.stdout)  # stderr says the ledger was created
    listed = runner.invoke(cli_app, ["keys", "list", "--json", *database])
    assert [k["key_id"] for k in json.loads(listed.output)] == [made["key_id"]]
    assert made["key"] not in listed.output and made["key"].split("_")[2] not in listed.output
    with TestClient(create_app(fresh_settings)) as client:
        assert (
            client.get(
                "/v1/transfers/00000000-0000-0000-0000-000000000000", headers=bearer(made["key"])
            ).status_code
            == 404
        )
        revoked = runner.invoke(cli_app, ["keys", "revoke", made["key_id"], *database])
        assert revoked.exit_code == 0, revoked.output
        response = client.get(
            "/v1/transfers/00000000-0000-0000-0000-000000000000", headers=bearer(made["key"])
        )
        assert_problem(response, 401, "unauthorized")
    bad_scope = runner.invoke(cli_app, ["keys", "create", "--scope", "root", *database])
    assert bad_scope.exit_code == 2


def test_open_mode_sees_a_new_key_within_its_ttl(fresh_settings: Settings) -> None:
    """Requests without a key ask a cache whether any key exists (so they skip the
    thread pool); a key created meanwhile closes the open mode once the TTL is over,
    not before. The cache's clock is the test's."""
    with TestClient(create_app(fresh_settings)) as client:
        active_keys = client.app.state.active_keys  # type: ignore[attr-defined]
        now = [1000.0]
        active_keys.clock = lambda: now[0]
        unknown = f"/v1/transfers/{uuid4()}"
        assert client.get(unknown).status_code == 404  # open: no key yet, so it looks
        create_key(keystore_of(client), ["read"])
        now[0] += active_keys.ttl_seconds - 0.001
        assert client.get(unknown).status_code == 404  # the cached answer, still fresh
        now[0] += 0.001
        assert client.get(unknown).status_code == 401
