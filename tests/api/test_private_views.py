"""With a cipher key, the read models hold no name, metadata or description in clear.

Method: on each store, an app with its projection followers and
``EVENTLEDGER_CIPHER_KEY`` set opens an account with a recognisable name and
metadata, and moves money with recognisable descriptions (posted and pending, so the
pending-facts tables are exercised too). The API must answer with the clear text;
the stored view rows, read raw, must hold none of it (each private value is an
``aes:`` sealed string); and on SQLite the views file's bytes must not contain it
either. The same run without a key stores the clear text, so the check can fail.
The audit verify of the encrypted store is clean.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eventsourcing.cryptography import AESCipher
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from infrastructure.settings import Settings
from infrastructure.views import ViewStore
from tests.api.support import funded_account, transfer

SECRETS = ("Zebulon Quixote", "passport-X93-secret", "memo about the Q4 bonus")
PRIVATE_COLUMNS = {
    "balances": ("name", "metadata"),
    "statements": ("description",),
    "statements_pending": ("description",),
    "totals_pending": (),
}


@pytest.fixture(params=["with a key", "without a key"])
def sealed(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "with a key")


@pytest.fixture
def client(fresh_settings: Settings, sealed: bool) -> Iterator[TestClient]:
    settings = fresh_settings.model_copy(
        update={
            "run_projections": True,
            "cipher_key": SecretStr(AESCipher.create_key(32)) if sealed else None,
        }
    )
    with TestClient(create_app(settings)) as client:
        yield client


def views_of(client: TestClient) -> ViewStore:
    views: ViewStore = client.app.state.read_models.store  # type: ignore[attr-defined]
    return views


def stored_private_values(views: ViewStore) -> list[str]:
    values: list[str] = []
    with views.read() as tx:
        for table, columns in PRIVATE_COLUMNS.items():
            if columns and tx.table_exists(table):
                for row in tx.fetchall(f"SELECT {', '.join(columns)} FROM {table}"):
                    values.extend(str(value) for value in row)
    return values


def test_private_text_is_sealed_in_the_views_and_clear_through_the_api(
    client: TestClient, sealed: bool
) -> None:
    name, document, memo = SECRETS
    alice = funded_account(client, 1000, name=name, metadata={"passport": document})
    bob = funded_account(client, 0)
    transfer(client, alice, bob, 10, description=memo)
    held = transfer(client, alice, bob, 20, description=memo, pending=True).json()
    position = held["position"]

    listed = client.get("/v1/accounts", params={"min_position": position, "limit": 1000})
    mine = next(a for a in listed.json()["items"] if a["id"] == alice)
    assert (mine["name"], mine["metadata"]) == (name, {"passport": document})
    statement = client.get(f"/v1/accounts/{alice}/statement", params={"min_position": position})
    assert [p["description"] for p in statement.json()["items"]][-1] == memo

    stored = stored_private_values(views_of(client))
    assert any(memo in value for value in stored) is not sealed  # pending facts included
    leaked = [value for value in stored if any(secret in value for secret in SECRETS)]
    if sealed:
        assert leaked == []
        assert stored and all(value.startswith("aes:") for value in stored)
    else:
        assert len(leaked) >= 3
    database = views_of(client).database
    if database.kind == "sqlite":
        files = [Path(database.path), Path(f"{database.path}-wal")]
        raw = b"".join(file.read_bytes() for file in files if file.exists())
        assert (SECRETS[0].encode() in raw) is not sealed

    verify = client.post("/v1/audit/verify", json={})
    assert verify.status_code == 200, verify.text
    assert verify.json()["ok"], verify.json()["problems"]
