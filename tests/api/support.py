"""Helpers of the API tests: short calls that read as the steps of a test."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "code"}


def open_account(client: Any, currency: str = "USD", **fields: Any) -> str:
    response = client.post("/v1/accounts", json={"currency": currency, **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def deposit(client: Any, account_id: str, amount: int, **headers: str) -> httpx.Response:
    response = client.post(
        f"/v1/accounts/{account_id}/deposits", json={"amount": amount}, headers=headers
    )
    assert response.status_code in (200, 201), response.text
    return response


def balance(client: Any, account_id: str) -> int:
    response = client.get(f"/v1/accounts/{account_id}")
    assert response.status_code == 200, response.text
    return int(response.json()["balance"])


def transfer(
    client: Any, from_account: str, to_account: str, amount: int, **fields: Any
) -> httpx.Response:
    body = {
        "from_account": from_account,
        "to_account": to_account,
        "amount": amount,
        "currency": fields.pop("currency", "USD"),
        **fields,
    }
    headers = {}
    if "idempotency_key" in body:
        headers["Idempotency-Key"] = body.pop("idempotency_key")
    return client.post("/v1/transfers", json=body, headers=headers)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer is an RFC 9457 problem with this status and stable code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS, body
    assert body["status"] == status and body["code"] == code, body
    assert body["type"].endswith(code)
    return body
