"""A pending transfer with a timeout is voided by the server's background sweeper,
without anyone touching it. (The expiry rules themselves are tested with an injected
clock in tests/application and tests/projections; this checks the wiring in serve.)"""

from __future__ import annotations

import time

import pytest

from tests.api.conftest import MakeClient

EXPIRY_WAIT_SECONDS_MAX = 10.0


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_server_voids_an_expired_pending_transfer(make_client: MakeClient) -> None:
    client = make_client(pending_sweep_interval_seconds=0.05)
    payer = client.post("/v1/accounts", json={"currency": "USD"}).json()["id"]
    payee = client.post("/v1/accounts", json={"currency": "USD"}).json()["id"]
    client.post(f"/v1/accounts/{payer}/deposits", json={"amount": 100})
    pending = client.post(
        "/v1/transfers",
        json={
            "from_account": payer, "to_account": payee, "amount": 40, "currency": "USD",
            "pending": True, "timeout_seconds": 1,
        },
    ).json()  # fmt: skip
    assert pending["status"] == "pending"
    assert client.get(f"/v1/accounts/{payer}").json()["available_balance"] == 60

    deadline = time.monotonic() + EXPIRY_WAIT_SECONDS_MAX
    status = "pending"
    while status == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
        status = client.get(f"/v1/transfers/{pending['id']}").json()["status"]
    assert status == "voided"
    assert client.get(f"/v1/accounts/{payer}").json()["available_balance"] == 100
    refused = client.post(f"/v1/transfers/{pending['id']}/post", json={})
    assert (refused.status_code, refused.json()["code"]) == (422, "transfer_not_pending")
