"""What a new user meets first: ``GET /`` points to the docs, and a body sent without
``Content-Type: application/json`` is refused by a problem naming that header.

Method: requests through the app on every store; a refused body must leave the event
store where it was.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.api.support import assert_problem, balance, funded_account, open_account, transfer


def test_the_root_points_to_the_docs_and_stays_out_of_the_schema(client: TestClient) -> None:
    root = client.get("/")
    assert root.status_code == 200 and root.headers["content-type"] == "application/json"
    assert root.json()["docs"] == "/docs" and root.json()["openapi"] == "/openapi.json"
    assert client.get(root.json()["docs"]).status_code == 200
    assert "/" not in client.get("/openapi.json").json()["paths"]


class TestContentType:
    @pytest.mark.parametrize(
        ("content_type", "named"),
        [
            (None, "none"),
            ("application/x-www-form-urlencoded", "'application/x-www-form-urlencoded'"),
            ("text/plain", "'text/plain'"),
            ("text/" + "e" * 41, "46 characters"),
        ],
    )
    def test_a_body_not_sent_as_json_is_415_naming_the_header(
        self, client: TestClient, content_type: str | None, named: str
    ) -> None:
        payer, payee = funded_account(client, 100), open_account(client)
        head = client.app.state.ledger.head_position()  # type: ignore[attr-defined]
        body = json.dumps(
            {"from_account": payer, "to_account": payee, "amount": 5, "currency": "USD"}
        )
        headers = {} if content_type is None else {"Content-Type": content_type}
        refused = client.post("/v1/transfers", content=body, headers=headers)
        problem = assert_problem(refused, 415, "unsupported_media_type")
        assert "Content-Type: application/json" in problem["detail"]
        assert f"(Content-Type sent: {named})" in problem["detail"]
        assert client.app.state.ledger.head_position() == head  # type: ignore[attr-defined]
        assert balance(client, payer) == 100

    def test_json_with_a_charset_is_accepted(self, client: TestClient) -> None:
        payer, payee = funded_account(client, 100), open_account(client)
        body = json.dumps(
            {"from_account": payer, "to_account": payee, "amount": 5, "currency": "USD"}
        )
        headers = {"Content-Type": "application/json; charset=utf-8"}
        assert client.post("/v1/transfers", content=body, headers=headers).status_code == 201

    def test_a_request_without_a_body_needs_no_content_type(self, client: TestClient) -> None:
        payer, payee = funded_account(client, 100), open_account(client)
        pending = transfer(client, payer, payee, 10, pending=True).json()["id"]
        assert client.post(f"/v1/transfers/{pending}/void").status_code == 200
        assert client.post(f"/v1/accounts/{payee}/freeze").status_code == 200
