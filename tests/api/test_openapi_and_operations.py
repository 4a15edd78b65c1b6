"""The OpenAPI document is valid and lists every route with its problem responses;
/healthz, /readyz and /metrics answer as operators expect."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from tests.api.support import funded_account, open_account, transfer

COMMAND_ROUTES = {
    ("post", "/v1/accounts"),
    ("get", "/v1/accounts/{account_id}"),
    ("patch", "/v1/accounts/{account_id}"),
    ("post", "/v1/accounts/{account_id}/freeze"),
    ("post", "/v1/accounts/{account_id}/unfreeze"),
    ("post", "/v1/accounts/{account_id}/close"),
    ("post", "/v1/accounts/{account_id}/deposits"),
    ("post", "/v1/accounts/{account_id}/withdrawals"),
    ("get", "/v1/accounts/{account_id}/events"),
    ("get", "/v1/accounts/{account_id}/balance"),
    ("post", "/v1/transfers"),
    ("post", "/v1/transfers/batch"),
    ("get", "/v1/transfers/{transfer_id}"),
    ("post", "/v1/transfers/{transfer_id}/post"),
    ("post", "/v1/transfers/{transfer_id}/void"),
    ("post", "/v1/transfers/{transfer_id}/reverse"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
}


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


class TestOpenApi:
    def test_document_is_valid_openapi(self, client: TestClient) -> None:
        validate(client.get("/openapi.json").json())
        assert client.get("/docs").status_code == 200

    def test_every_route_lists_its_problem_responses(self, client: TestClient) -> None:
        listed = operations(client.get("/openapi.json").json())
        assert listed.keys() >= COMMAND_ROUTES
        for (method, path), operation in listed.items():
            problems = {
                status
                for status, response in operation["responses"].items()
                if status[0] in "45" and "application/problem+json" in response.get("content", {})
            }
            assert "500" in problems, (method, path)
            if path.startswith("/v1/"):
                assert {"401", "403"} <= problems, (method, path)
            if (method, path) in COMMAND_ROUTES and path.startswith("/v1/"):
                assert "422" in problems, (method, path)
            if "requestBody" in operation:
                assert "413" in problems, (method, path)

    def test_account_commands_document_412(self, client: TestClient) -> None:
        listed = operations(client.get("/openapi.json").json())
        for name in ("freeze", "unfreeze", "close"):
            assert "412" in listed[("post", f"/v1/accounts/{{account_id}}/{name}")]["responses"]
        assert "412" in listed[("patch", "/v1/accounts/{account_id}")]["responses"]


class TestOperations:
    def test_healthz_and_readyz(self, client: TestClient) -> None:
        health = client.get("/healthz").json()
        assert (health["status"], health["position"]) == ("ok", None)
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["position"] >= 0

    def test_metrics_count_requests_transfers_and_retries(self, client: TestClient) -> None:
        alice, bob = funded_account(client, 10), open_account(client)
        transfer(client, alice, bob, 5)
        transfer(client, alice, bob, 50)
        text = client.get("/metrics").text
        assert (
            'eventledger_http_requests_total{method="POST",route="/v1/transfers",status="201"} 1.0'
            in text
        )
        assert 'route="/v1/transfers",status="422"} 1.0' in text
        assert "eventledger_http_request_duration_seconds_bucket" in text
        assert 'eventledger_transfers_posted_total{status="posted"} 2.0' in text
        assert 'eventledger_transfers_rejected_total{code="insufficient_funds"} 1.0' in text
        assert "eventledger_concurrency_retries_total" in text

    def test_unmatched_paths_do_not_make_new_metric_labels(self, client: TestClient) -> None:
        for number in range(3):
            client.get(f"/no/such/path/{number}")
        text = client.get("/metrics").text
        assert "/no/such/path" not in text
        assert 'route="unmatched",status="404"} 3.0' in text
