"""POST /v1/transfers/{id}/post and /void sent again: the same request replays the
settled transfer (200, ``Idempotent-Replayed: true``, the same body but for the log
position), another request is refused with a code naming why.

Method: real requests through the app on every store, in both commit modes; the
balances are read back to show that a replay moved nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import MakeClient
from tests.api.support import assert_problem, balance, funded_account, open_account, transfer
from tests.conftest import Clock

pytestmark = pytest.mark.parametrize("commit_mode", ["group", "per_command"], indirect=True)


def hold(client: TestClient, amount: int = 300, **fields: Any) -> tuple[str, str]:
    """A payer funded with 1000 and a pending transfer of ``amount`` from it."""
    payer = funded_account(client, 1000)
    pending = transfer(client, payer, open_account(client), amount, pending=True, **fields)
    assert pending.status_code == 201, pending.text
    return payer, pending.json()["id"]


def without_position(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "position"}


class TestPostSentTwice:
    def test_the_same_body_replays_the_first_answer(self, client: TestClient) -> None:
        payer, transfer_id = hold(client)
        first = client.post(f"/v1/transfers/{transfer_id}/post", json={"amount": 200})
        again = client.post(f"/v1/transfers/{transfer_id}/post", json={"amount": 200})
        assert first.status_code == 200 and "idempotent-replayed" not in first.headers
        assert (again.status_code, again.headers["idempotent-replayed"]) == (200, "true")
        assert without_position(again.json()) == without_position(first.json())
        assert balance(client, payer) == 800

    def test_another_amount_is_not_pending(self, client: TestClient) -> None:
        _, transfer_id = hold(client)
        client.post(f"/v1/transfers/{transfer_id}/post", json={"amount": 200})
        again = client.post(f"/v1/transfers/{transfer_id}/post", json={"amount": 201})
        assert_problem(again, 422, "transfer_not_pending")
        assert_problem(
            client.post(f"/v1/transfers/{transfer_id}/void"), 422, "transfer_not_pending"
        )

    def test_no_body_means_all_of_it_both_times(self, client: TestClient) -> None:
        _, transfer_id = hold(client)
        client.post(f"/v1/transfers/{transfer_id}/post")
        again = client.post(f"/v1/transfers/{transfer_id}/post", json={"amount": 300})
        assert again.headers["idempotent-replayed"] == "true"


class TestIdempotencyKey:
    def test_the_same_key_and_request_replays(self, client: TestClient) -> None:
        _, transfer_id = hold(client)
        key = {"Idempotency-Key": f"capture-{uuid4()}"}
        url = f"/v1/transfers/{transfer_id}/post"
        assert "idempotent-replayed" not in client.post(url, json={}, headers=key).headers
        assert client.post(url, json={}, headers=key).headers["idempotent-replayed"] == "true"

    def test_the_same_key_with_another_request_is_key_reused(self, client: TestClient) -> None:
        payer, transfer_id = hold(client)
        key = {"Idempotency-Key": f"capture-{uuid4()}"}
        client.post(f"/v1/transfers/{transfer_id}/post", json={"amount": 100}, headers=key)
        other = client.post(f"/v1/transfers/{transfer_id}/post", json={"amount": 99}, headers=key)
        assert_problem(other, 422, "idempotency_key_reused")
        void = client.post(f"/v1/transfers/{transfer_id}/void", headers=key)
        assert_problem(void, 422, "idempotency_key_reused")
        assert balance(client, payer) == 900

    def test_another_key_is_another_operation(self, client: TestClient) -> None:
        _, transfer_id = hold(client)
        url = f"/v1/transfers/{transfer_id}/void"
        client.post(url, headers={"Idempotency-Key": f"a-{uuid4()}"})
        other = client.post(url, headers={"Idempotency-Key": f"b-{uuid4()}"})
        assert_problem(other, 422, "transfer_not_pending")

    def test_a_blank_or_repeated_key_is_a_validation_error(self, client: TestClient) -> None:
        _, transfer_id = hold(client)
        url = f"/v1/transfers/{transfer_id}/void"
        assert_problem(client.post(url, headers={"Idempotency-Key": " "}), 422, "validation_error")
        twice = client.post(url, headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")])
        assert_problem(twice, 422, "validation_error")
        assert client.get(f"/v1/transfers/{transfer_id}").json()["status"] == "pending"


class TestVoidSentTwice:
    def test_the_second_void_replays(self, client: TestClient) -> None:
        payer, transfer_id = hold(client)
        first = client.post(f"/v1/transfers/{transfer_id}/void")
        again = client.post(f"/v1/transfers/{transfer_id}/void")
        assert (again.status_code, again.headers["idempotent-replayed"]) == (200, "true")
        assert without_position(again.json()) == without_position(first.json())
        assert client.get(f"/v1/accounts/{payer}").json()["available_balance"] == 1000

    def test_a_post_after_a_void_is_not_pending(self, client: TestClient) -> None:
        _, transfer_id = hold(client)
        client.post(f"/v1/transfers/{transfer_id}/void")
        assert_problem(
            client.post(f"/v1/transfers/{transfer_id}/post"), 422, "transfer_not_pending"
        )


def test_after_the_timeout_a_post_stays_expired_and_a_void_is_answered(
    make_client: MakeClient, clock: Clock
) -> None:
    client = make_client(clock=clock)
    payer, transfer_id = hold(client, timeout_seconds=1)
    clock.now += timedelta(seconds=1)
    for _ in range(2):
        assert_problem(client.post(f"/v1/transfers/{transfer_id}/post"), 422, "pending_expired")
    voided = client.post(f"/v1/transfers/{transfer_id}/void")
    assert (voided.status_code, voided.json()["status"]) == (200, "voided")
    assert voided.headers["idempotent-replayed"] == "true"
    assert client.get(f"/v1/accounts/{payer}").json()["available_balance"] == 1000
