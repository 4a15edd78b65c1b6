"""Account routes over HTTP, on every store: open, read with ETag, lifecycle with
If-Match, PATCH, deposits and withdrawals, raw events and point-in-time balances."""

from __future__ import annotations

from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from tests.api.support import assert_problem, balance, deposit, funded_account, open_account


class TestOpen:
    def test_answers_201_with_location_etag_and_position(self, client: TestClient) -> None:
        response = client.post(
            "/v1/accounts",
            json={"currency": "EUR", "name": "alice", "metadata": {"tier": "gold"}},
        )
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/v1/accounts/{body['id']}"
        assert response.headers["etag"] == '"1"'
        assert body["balance"] == 0 and body["status"] == "open" and body["currency"] == "EUR"
        assert body["metadata"] == {"tier": "gold"} and body["position"] >= 1

    def test_same_id_and_fields_replays_with_200(self, client: TestClient) -> None:
        account_id = str(uuid4())
        first = client.post("/v1/accounts", json={"currency": "USD", "id": account_id})
        again = client.post("/v1/accounts", json={"currency": "USD", "id": account_id})
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == account_id

    def test_idempotency_key_names_the_account(self, client: TestClient) -> None:
        key = {"Idempotency-Key": f"open-{uuid4()}"}
        first = client.post("/v1/accounts", json={"currency": "USD"}, headers=key)
        again = client.post("/v1/accounts", json={"currency": "USD"}, headers=key)
        other = client.post("/v1/accounts", json={"currency": "EUR"}, headers=key)
        assert first.json()["id"] == again.json()["id"]
        assert again.status_code == 200
        assert_problem(other, 422, "idempotency_key_reused")


class TestRead:
    def test_get_sends_the_version_as_etag(self, client: TestClient) -> None:
        account_id = funded_account(client, 500)
        response = client.get(f"/v1/accounts/{account_id}")
        assert response.headers["etag"] == '"2"'
        assert response.json()["balance"] == 500

    def test_unknown_account_is_404(self, client: TestClient) -> None:
        assert_problem(client.get(f"/v1/accounts/{uuid4()}"), 404, "not_found")


class TestLifecycle:
    def test_freeze_with_current_etag_then_stale_etag_is_412(self, client: TestClient) -> None:
        account_id = open_account(client)
        frozen = client.post(f"/v1/accounts/{account_id}/freeze", headers={"If-Match": '"1"'})
        assert frozen.status_code == 200 and frozen.json()["status"] == "frozen"
        assert frozen.headers["etag"] == '"2"'
        stale = client.post(f"/v1/accounts/{account_id}/unfreeze", headers={"If-Match": '"1"'})
        body = assert_problem(stale, 412, "version_mismatch")
        assert (body["expected_version"], body["actual_version"]) == (1, 2)
        thawed = client.post(f"/v1/accounts/{account_id}/unfreeze", headers={"If-Match": '"2"'})
        assert thawed.json()["status"] == "open"

    def test_close_needs_an_empty_account(self, client: TestClient) -> None:
        account_id = funded_account(client, 1)
        refused = client.post(f"/v1/accounts/{account_id}/close")
        assert_problem(refused, 422, "account_not_empty")
        client.post(f"/v1/accounts/{account_id}/withdrawals", json={"amount": 1})
        closed = client.post(f"/v1/accounts/{account_id}/close")
        assert closed.json()["status"] == "closed"
        again = client.post(f"/v1/accounts/{account_id}/deposits", json={"amount": 1})
        assert_problem(again, 422, "account_closed")

    def test_malformed_if_match_is_a_validation_error(self, client: TestClient) -> None:
        account_id = open_account(client)
        response = client.post(f"/v1/accounts/{account_id}/freeze", headers={"If-Match": "one"})
        assert_problem(response, 422, "validation_error")


class TestPatch:
    def test_replaces_name_and_metadata_under_if_match(self, client: TestClient) -> None:
        account_id = open_account(client, name="old")
        response = client.patch(
            f"/v1/accounts/{account_id}",
            json={"name": "new", "metadata": {"a": "b"}},
            headers={"If-Match": '"1"'},
        )
        assert response.status_code == 200
        assert response.json()["name"] == "new" and response.json()["metadata"] == {"a": "b"}
        stale = client.patch(
            f"/v1/accounts/{account_id}", json={"name": "x"}, headers={"If-Match": '"1"'}
        )
        assert_problem(stale, 412, "version_mismatch")

    def test_changes_the_overdraft_limit_on_its_own(self, client: TestClient) -> None:
        account_id = open_account(client)
        response = client.patch(f"/v1/accounts/{account_id}", json={"overdraft_limit": 300})
        assert response.json()["overdraft_limit"] == 300
        withdrawal = client.post(f"/v1/accounts/{account_id}/withdrawals", json={"amount": 300})
        assert withdrawal.status_code == 201
        assert balance(client, account_id) == -300
        both = client.patch(f"/v1/accounts/{account_id}", json={"overdraft_limit": 1, "name": "x"})
        assert_problem(both, 422, "validation_error")
        assert_problem(client.patch(f"/v1/accounts/{account_id}", json={}), 422, "validation_error")


class TestMoneyInAndOut:
    def test_deposit_and_withdrawal_move_the_balance(self, client: TestClient) -> None:
        account_id = open_account(client)
        deposited = deposit(client, account_id, 1000)
        assert deposited.status_code == 201
        assert deposited.headers["location"] == f"/v1/transfers/{deposited.json()['id']}"
        withdrawn = client.post(f"/v1/accounts/{account_id}/withdrawals", json={"amount": 400})
        assert withdrawn.status_code == 201 and withdrawn.json()["status"] == "posted"
        assert balance(client, account_id) == 600

    def test_withdrawing_more_than_available_is_refused(self, client: TestClient) -> None:
        account_id = funded_account(client, 100)
        response = client.post(f"/v1/accounts/{account_id}/withdrawals", json={"amount": 101})
        body = assert_problem(response, 422, "insufficient_funds")
        recorded = client.get(f"/v1/transfers/{body['transfer_id']}").json()
        assert recorded["status"] == "rejected" and recorded["error_code"] == "insufficient_funds"


class TestHistory:
    def test_events_are_paged_by_an_opaque_version_cursor(self, client: TestClient) -> None:
        account_id = open_account(client)
        for amount in (1, 2, 3):
            deposit(client, account_id, amount)
        url = f"/v1/accounts/{account_id}/events"
        first = client.get(url, params={"limit": 2}).json()
        assert [e["type"] for e in first["items"]] == ["Opened", "Credited"]
        assert first["next_cursor"] == "2"
        rest = client.get(url, params={"cursor": first["next_cursor"], "limit": 2}).json()
        assert [e["data"]["balance_after"] for e in rest["items"]] == [3, 6]
        # Exactly the last two events fill the page: nothing is left, so no cursor.
        assert rest["next_cursor"] is None

    def test_a_page_one_short_of_the_events_left_has_a_cursor(self, client: TestClient) -> None:
        account_id = open_account(client)
        deposit(client, account_id, 1)
        page = client.get(f"/v1/accounts/{account_id}/events", params={"limit": 1}).json()
        assert len(page["items"]) == 1 and page["next_cursor"] == "1"
        whole = client.get(f"/v1/accounts/{account_id}/events", params={"limit": 3}).json()
        assert len(whole["items"]) == 2 and whole["next_cursor"] is None

    @pytest.mark.parametrize(("limit", "status"), [(0, 422), (1, 200), (1000, 200), (1001, 422)])
    def test_the_events_page_size_is_bounded(
        self, client: TestClient, limit: int, status: int
    ) -> None:
        account_id = open_account(client)
        response = client.get(f"/v1/accounts/{account_id}/events", params={"limit": limit})
        assert response.status_code == status, response.text

    def test_the_old_after_version_parameter_is_gone(self, client: TestClient) -> None:
        """A breaking change of 2026-11: ``cursor`` replaced ``after_version``; the old
        name is ignored like any unknown query parameter, so it starts at the first."""
        account_id = open_account(client)
        deposit(client, account_id, 1)
        page = client.get(f"/v1/accounts/{account_id}/events", params={"after_version": 1})
        assert [e["version"] for e in page.json()["items"]] == [1, 2]

    def test_balance_at_a_version_and_at_an_instant(self, client: TestClient) -> None:
        account_id = open_account(client)
        deposit(client, account_id, 70)
        moment = client.get(f"/v1/accounts/{account_id}").json()["updated_at"]
        deposit(client, account_id, 30)
        by_version = client.get(f"/v1/accounts/{account_id}/balance", params={"version": 2})
        assert by_version.json()["balance"] == 70
        by_time = client.get(f"/v1/accounts/{account_id}/balance", params={"at": moment})
        assert by_time.json()["balance"] == 70 and by_time.json()["version"] == 2
        neither = client.get(f"/v1/accounts/{account_id}/balance")
        assert_problem(neither, 422, "validation_error")
        naive = client.get(
            f"/v1/accounts/{account_id}/balance", params={"at": "2026-01-01T00:00:00"}
        )
        assert_problem(naive, 422, "validation_error")
