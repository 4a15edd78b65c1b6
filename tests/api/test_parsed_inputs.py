"""Every input is parsed, not checked then converted: each odd value is a clean 4xx.

Method: the inputs that answered 500 (and reset the connection) in the hardening
review, and their neighbours, sent over HTTP on each store: cursors that pass
``str.isdigit`` but not ``int`` ("²"), that ``int`` takes but ASCII does not ("٣",
full-width digits), that leave SQLite's 64-bit range; ETags with such digits; ids that
belong to an aggregate of the other kind (an account's id used as a reversal's id, its
Idempotency-Key used again for a reversal, a settlement of an account). Each answer
must be a problem with the expected code, and the account's balance must not move.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from infrastructure.settings import Settings
from tests.api.support import assert_problem, balance, funded_account, open_account, transfer

# 2**63 - 1 is the largest position a cursor can name; one past it must be refused.
POSITION_MAX = 2**63 - 1
BAD_POSITION_CURSORS = [
    "²",  # superscript two: isdigit() says yes, int() says no
    "٣",  # Arabic-Indic three: int() says 3, but no page ever sent it
    "１２",  # full-width digits
    str(POSITION_MAX + 1),
    "9" * 19,
    "9" * 20,
    "-1",
    "+1",
    " 1",
    "1 ",
    "1e5",
    "0x10",
    "",
]
BAD_ID_CURSORS = ["²", "not-a-uuid", "9" * 19, "０" * 32]


@pytest.fixture
def client_with_views(fresh_settings: Settings) -> Iterator[TestClient]:
    settings = fresh_settings.model_copy(update={"run_projections": True})
    with TestClient(create_app(settings)) as client:
        yield client


class TestCursors:
    @pytest.mark.parametrize("cursor", BAD_POSITION_CURSORS)
    def test_a_statement_cursor_that_no_page_sent_is_a_422(
        self, client_with_views: TestClient, cursor: str
    ) -> None:
        account = funded_account(client_with_views, 10)
        response = client_with_views.get(
            f"/v1/accounts/{account}/statement", params={"cursor": cursor}
        )
        assert_problem(response, 422, "validation_error")

    def test_the_largest_position_is_a_valid_cursor_past_every_posting(
        self, client_with_views: TestClient
    ) -> None:
        account = funded_account(client_with_views, 10)
        response = client_with_views.get(
            f"/v1/accounts/{account}/statement",
            params={"cursor": str(POSITION_MAX), "min_position": 1},
        )
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []

    @pytest.mark.parametrize("cursor", BAD_POSITION_CURSORS)
    def test_an_events_cursor_that_no_page_sent_is_a_422(
        self, client: TestClient, cursor: str
    ) -> None:
        account = open_account(client)
        response = client.get(f"/v1/accounts/{account}/events", params={"cursor": cursor})
        assert_problem(response, 422, "validation_error")

    def test_the_largest_version_is_a_valid_events_cursor_past_every_event(
        self, client: TestClient
    ) -> None:
        account = open_account(client)
        response = client.get(
            f"/v1/accounts/{account}/events", params={"cursor": str(POSITION_MAX)}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"items": [], "next_cursor": None}

    @pytest.mark.parametrize("cursor", BAD_ID_CURSORS)
    def test_an_account_list_cursor_that_is_no_id_is_a_422(
        self, client_with_views: TestClient, cursor: str
    ) -> None:
        response = client_with_views.get("/v1/accounts", params={"cursor": cursor})
        assert_problem(response, 422, "validation_error")


class TestETags:
    @pytest.mark.parametrize(
        "etag", ['"٣"', '"²"', '"１"', '"1"x', "1", '"-1"', '"' + "9" * 19 + '"']
    )
    def test_an_if_match_that_is_not_ascii_digits_is_a_422(
        self, client: TestClient, etag: str
    ) -> None:
        account = open_account(client)
        response = client.post(
            f"/v1/accounts/{account}/freeze", headers={"If-Match": etag.encode()}
        )
        assert_problem(response, 422, "validation_error")
        assert client.get(f"/v1/accounts/{account}").json()["status"] == "open"


class TestIdsOfTheOtherKind:
    def test_a_reversal_with_an_accounts_id_is_refused_and_moves_nothing(
        self, client: TestClient
    ) -> None:
        alice, bob = funded_account(client, 100), open_account(client)
        original = transfer(client, alice, bob, 10).json()["id"]
        response = client.post(f"/v1/transfers/{original}/reverse", json={"id": alice})
        assert_problem(response, 422, "idempotency_key_reused")
        assert (balance(client, alice), balance(client, bob)) == (90, 10)

    def test_a_reversal_sent_with_an_accounts_idempotency_key_is_refused(
        self, client: TestClient
    ) -> None:
        key = f"account-key-{uuid4()}"
        alice = client.post(
            "/v1/accounts", json={"currency": "USD"}, headers={"Idempotency-Key": key}
        ).json()["id"]
        bob = funded_account(client, 100)
        original = transfer(client, bob, alice, 10).json()["id"]
        response = client.post(
            f"/v1/transfers/{original}/reverse", json={}, headers={"Idempotency-Key": key}
        )
        assert_problem(response, 422, "idempotency_key_reused")
        assert (balance(client, alice), balance(client, bob)) == (10, 90)

    @pytest.mark.parametrize("action", ["post", "void", "reverse"])
    def test_settling_an_account_is_a_404(self, client: TestClient, action: str) -> None:
        alice = funded_account(client, 100)
        response = client.post(f"/v1/transfers/{alice}/{action}", json={})
        assert_problem(response, 404, "not_found")
        assert balance(client, alice) == 100

    def test_a_transfer_with_an_accounts_id_is_refused(self, client: TestClient) -> None:
        alice, bob = funded_account(client, 100), open_account(client)
        response = transfer(client, alice, bob, 10, id=bob)
        assert_problem(response, 422, "idempotency_key_reused")
        assert (balance(client, alice), balance(client, bob)) == (100, 0)


class TestRepeatedHeaders:
    """Two headers of a kind read once are refused, as duplicate JSON keys are."""

    def test_two_idempotency_keys_on_a_transfer_are_refused(self, client: TestClient) -> None:
        alice, bob = funded_account(client, 100), open_account(client)
        body = {"from_account": alice, "to_account": bob, "amount": 10, "currency": "USD"}
        headers = [
            ("Idempotency-Key", f"first-{uuid4()}"),
            ("Idempotency-Key", f"second-{uuid4()}"),
        ]
        response = client.post("/v1/transfers", json=body, headers=headers)
        assert_problem(response, 422, "validation_error")
        assert (balance(client, alice), balance(client, bob)) == (100, 0)

    @pytest.mark.parametrize("path", ["/v1/accounts", "deposits", "reverse"])
    def test_two_idempotency_keys_are_refused_on_every_route_that_takes_one(
        self, client: TestClient, path: str
    ) -> None:
        alice, bob = funded_account(client, 100), open_account(client)
        url = {
            "/v1/accounts": "/v1/accounts",
            "deposits": f"/v1/accounts/{alice}/deposits",
            "reverse": f"/v1/transfers/{transfer(client, alice, bob, 1).json()['id']}/reverse",
        }[path]
        body = {"/v1/accounts": {"currency": "USD"}, "deposits": {"amount": 1}}.get(path, {})
        headers = [("Idempotency-Key", "one"), ("Idempotency-Key", "two")]
        assert_problem(client.post(url, json=body, headers=headers), 422, "validation_error")

    def test_two_if_match_headers_are_refused(self, client: TestClient) -> None:
        account = open_account(client)
        headers = [("If-Match", '"1"'), ("If-Match", '"1"')]
        response = client.post(f"/v1/accounts/{account}/freeze", headers=headers)
        assert_problem(response, 422, "validation_error")
        assert client.get(f"/v1/accounts/{account}").json()["status"] == "open"
