"""Transfer routes over HTTP, on every store: posting, idempotent replays, two-phase
transfers, reversals, atomic batches, and 20 concurrent requests with one key."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from uuid import NAMESPACE_URL, uuid4, uuid5

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import MakeClient
from tests.api.support import (
    assert_problem,
    balance,
    deposit,
    funded_account,
    open_account,
    transfer,
)
from tests.conftest import Clock


def funded_pair(client: TestClient, amount: int = 1000) -> tuple[str, str]:
    return funded_account(client, amount), open_account(client)


class TestPost:
    def test_moves_money_and_answers_the_transfer(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        response = transfer(client, alice, bob, 250, description="rent")
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/v1/transfers/{body['id']}"
        assert body["status"] == "posted" and body["amount"] == 250
        assert body["from_account"] == alice and body["to_account"] == bob
        assert body["position"] >= 1 and body["reversed_amount"] == 0
        assert (balance(client, alice), balance(client, bob)) == (750, 250)
        assert client.get(f"/v1/transfers/{body['id']}").json()["status"] == "posted"

    def test_business_rejections_have_their_codes(self, client: TestClient) -> None:
        alice, bob = funded_pair(client, 10)
        euro = open_account(client, "EUR")
        assert_problem(transfer(client, alice, bob, 11), 422, "insufficient_funds")
        assert_problem(transfer(client, alice, euro, 1), 422, "currency_mismatch")
        assert_problem(transfer(client, alice, alice, 1), 422, "same_account")
        assert_problem(transfer(client, alice, bob, 0), 422, "amount_out_of_range")
        assert_problem(transfer(client, alice, bob, 10**15 + 1), 422, "amount_out_of_range")
        assert_problem(transfer(client, alice, str(uuid4()), 1), 404, "not_found")
        client.post(f"/v1/accounts/{bob}/freeze")
        assert_problem(transfer(client, alice, bob, 1), 422, "account_frozen")
        assert (balance(client, alice), balance(client, bob)) == (10, 0)

    def test_unknown_transfer_is_404(self, client: TestClient) -> None:
        assert_problem(client.get(f"/v1/transfers/{uuid4()}"), 404, "not_found")


class TestIdempotency:
    def test_same_key_and_body_replays_the_original(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        key = f"pay-{uuid4()}"
        first = transfer(client, alice, bob, 100, idempotency_key=key)
        again = transfer(client, alice, bob, 100, idempotency_key=key)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert again.json()["id"] == first.json()["id"]
        assert first.json()["id"] == str(
            uuid5(uuid5(NAMESPACE_URL, "eventledger:idempotency-key"), key)
        )
        assert balance(client, bob) == 100

    def test_same_key_other_body_is_refused(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        key = f"pay-{uuid4()}"
        transfer(client, alice, bob, 100, idempotency_key=key)
        other = transfer(client, alice, bob, 101, idempotency_key=key)
        assert_problem(other, 422, "idempotency_key_reused")
        assert balance(client, bob) == 100

    def test_body_id_wins_and_a_rejection_replays_as_a_rejection(self, client: TestClient) -> None:
        alice, bob = funded_pair(client, 5)
        transfer_id = str(uuid4())
        first = transfer(client, alice, bob, 6, id=transfer_id, idempotency_key="ignored")
        deposit(client, alice, 100)
        again = transfer(client, alice, bob, 6, id=transfer_id)
        assert_problem(first, 422, "insufficient_funds")
        assert_problem(again, 422, "insufficient_funds")
        assert client.get(f"/v1/transfers/{transfer_id}").json()["status"] == "rejected"

    def test_idempotency_key_is_at_most_255_characters(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        too_long = transfer(client, alice, bob, 1, idempotency_key="k" * 256)
        body = assert_problem(too_long, 422, "validation_error")
        assert "k" * 100 not in str(body)
        assert transfer(client, alice, bob, 1, idempotency_key="k" * 255).status_code == 201

    @pytest.mark.parametrize("group_commit", [True, False])
    def test_twenty_concurrent_requests_with_one_key_make_one_transfer(
        self, make_client: MakeClient, group_commit: bool
    ) -> None:
        client = make_client(group_commit=group_commit)
        alice, bob = funded_pair(client)
        key = f"burst-{uuid4()}"
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(
                pool.map(lambda _: transfer(client, alice, bob, 7, idempotency_key=key), range(20))
            )
        created = [a for a in answers if a.status_code == 201]
        replayed = [a for a in answers if a.status_code == 200]
        conflicts = [a for a in answers if a.status_code == 409]
        assert len(created) == 1, [a.status_code for a in answers]
        assert len(created) + len(replayed) + len(conflicts) == 20
        assert all(a.json()["id"] == created[0].json()["id"] for a in replayed)
        assert all(a.headers["idempotent-replayed"] == "true" for a in replayed)
        assert all(a.json()["code"] == "conflict" for a in conflicts)
        assert (balance(client, alice), balance(client, bob)) == (993, 7)


class TestTwoPhase:
    def test_pending_reserves_then_post_captures_part(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        pending = transfer(client, alice, bob, 300, pending=True, timeout_seconds=60)
        assert pending.status_code == 201 and pending.json()["status"] == "pending"
        account = client.get(f"/v1/accounts/{alice}").json()
        assert (account["balance"], account["available_balance"]) == (1000, 700)
        transfer_id = pending.json()["id"]
        posted = client.post(f"/v1/transfers/{transfer_id}/post", json={"amount": 200})
        assert posted.status_code == 200 and posted.json()["posted_amount"] == 200
        assert (balance(client, alice), balance(client, bob)) == (800, 200)
        again = client.post(f"/v1/transfers/{transfer_id}/post")
        assert_problem(again, 422, "transfer_not_pending")

    def test_void_releases_the_reservation(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        transfer_id = transfer(client, alice, bob, 300, pending=True).json()["id"]
        voided = client.post(f"/v1/transfers/{transfer_id}/void")
        assert voided.status_code == 200 and voided.json()["status"] == "voided"
        assert client.get(f"/v1/accounts/{alice}").json()["available_balance"] == 1000
        assert_problem(client.post(f"/v1/transfers/{uuid4()}/void"), 404, "not_found")

    def test_posting_more_than_reserved_is_out_of_range(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        transfer_id = transfer(client, alice, bob, 300, pending=True).json()["id"]
        over = client.post(f"/v1/transfers/{transfer_id}/post", json={"amount": 301})
        assert_problem(over, 422, "amount_out_of_range")

    def test_timeout_without_pending_is_a_validation_error(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        response = transfer(client, alice, bob, 1, timeout_seconds=5)
        assert_problem(response, 422, "validation_error")


def test_an_expired_pending_transfer_cannot_be_posted(
    make_client: MakeClient, clock: Clock
) -> None:
    client = make_client(clock=clock)
    alice, bob = funded_pair(client)
    transfer_id = transfer(client, alice, bob, 300, pending=True, timeout_seconds=1).json()["id"]
    clock.now += timedelta(seconds=1)  # the deadline itself is past it
    assert_problem(client.post(f"/v1/transfers/{transfer_id}/post"), 422, "pending_expired")
    assert client.get(f"/v1/transfers/{transfer_id}").json()["status"] == "voided"


class TestReverse:
    def test_reverses_in_parts_up_to_the_posted_amount(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        original = transfer(client, alice, bob, 500).json()["id"]
        key = {"Idempotency-Key": f"refund-{uuid4()}"}
        part = client.post(f"/v1/transfers/{original}/reverse", json={"amount": 200}, headers=key)
        assert part.status_code == 201 and part.json()["reverses"] == original
        replay = client.post(f"/v1/transfers/{original}/reverse", json={"amount": 200}, headers=key)
        assert replay.status_code == 200 and replay.json()["id"] == part.json()["id"]
        rest = client.post(f"/v1/transfers/{original}/reverse")
        assert rest.status_code == 201 and rest.json()["amount"] == 300
        assert client.get(f"/v1/transfers/{original}").json()["reversed_amount"] == 500
        more = client.post(f"/v1/transfers/{original}/reverse", json={"amount": 1})
        assert_problem(more, 422, "amount_out_of_range")
        assert (balance(client, alice), balance(client, bob)) == (1000, 0)

    def test_only_posted_transfers_can_be_reversed(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        pending = transfer(client, alice, bob, 5, pending=True).json()["id"]
        response = client.post(f"/v1/transfers/{pending}/reverse")
        assert_problem(response, 422, "transfer_not_posted")


class TestBatch:
    def items(self, alice: str, bob: str, *amounts: int) -> list[dict[str, object]]:
        return [
            {"from_account": alice, "to_account": bob, "amount": amount, "currency": "USD"}
            for amount in amounts
        ]

    def test_applies_all_and_replays_with_the_same_key(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        key = {"Idempotency-Key": f"batch-{uuid4()}"}
        body = {"transfers": self.items(alice, bob, 100, 200, 300)}
        first = client.post("/v1/transfers/batch", json=body, headers=key)
        assert first.status_code == 201
        assert [t["amount"] for t in first.json()["transfers"]] == [100, 200, 300]
        again = client.post("/v1/transfers/batch", json=body, headers=key)
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert balance(client, bob) == 600

    def test_a_failing_item_names_its_index_and_writes_nothing(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        body = {"transfers": self.items(alice, bob, 600, 600, 1)}
        response = client.post("/v1/transfers/batch", json=body)
        problem = assert_problem(response, 422, "batch_item_failed")
        assert (problem["index"], problem["item_code"]) == (1, "insufficient_funds")
        assert (balance(client, alice), balance(client, bob)) == (1000, 0)

    def test_size_is_1_to_1000(self, client: TestClient) -> None:
        alice, bob = funded_pair(client)
        empty = client.post("/v1/transfers/batch", json={"transfers": []})
        assert_problem(empty, 422, "validation_error")
        too_many = client.post(
            "/v1/transfers/batch", json={"transfers": self.items(alice, bob, *[1] * 1001)}
        )
        assert_problem(too_many, 422, "validation_error")
        full = client.post(
            "/v1/transfers/batch", json={"transfers": self.items(alice, bob, *[1] * 1000)}
        )
        assert full.status_code == 201 and len(full.json()["transfers"]) == 1000
        assert balance(client, bob) == 1000
