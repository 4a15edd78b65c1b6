"""A pending transfer with a timeout is voided by the server's background sweeper,
without anyone touching it. (The expiry rules themselves are tested with an injected
clock in tests/application and tests/projections; this checks the wiring in serve.)

Method: the app's clock is the test's; the test moves it past the deadline and waits,
bounded, for the sweeper thread to void the transfer.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.api.conftest import MakeClient
from tests.api.support import funded_account, open_account, transfer
from tests.conftest import Clock
from tests.support import wait_until

SWEEP_WAIT_SECONDS_MAX = 10.0


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_server_voids_an_expired_pending_transfer(make_client: MakeClient, clock: Clock) -> None:
    client = make_client(clock=clock, pending_sweep_interval_seconds=0.05)
    payer, payee = funded_account(client, 100), open_account(client)
    pending = transfer(client, payer, payee, 40, pending=True, timeout_seconds=1).json()
    assert pending["status"] == "pending"
    assert client.get(f"/v1/accounts/{payer}").json()["available_balance"] == 60

    def status() -> str:
        return str(client.get(f"/v1/transfers/{pending['id']}").json()["status"])

    clock.now += timedelta(seconds=1)
    wait_until(lambda: status() != "pending", SWEEP_WAIT_SECONDS_MAX)
    assert status() == "voided"
    assert client.get(f"/v1/accounts/{payer}").json()["available_balance"] == 100
    refused = client.post(f"/v1/transfers/{pending['id']}/post", json={})
    assert (refused.status_code, refused.json()["code"]) == (422, "pending_expired")
    # The client's own void, arriving after the sweeper's: the hold is released, as asked.
    voided = client.post(f"/v1/transfers/{pending['id']}/void")
    assert (voided.status_code, voided.headers["idempotent-replayed"]) == (200, "true")
