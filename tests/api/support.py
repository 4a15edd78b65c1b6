"""Helpers of the API tests: short calls that read as the steps of a test."""

from __future__ import annotations

import time
from collections.abc import Sequence
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


def funded_account(client: Any, amount: int, currency: str = "USD", **fields: Any) -> str:
    """Opens an account (``fields`` as POST /v1/accounts takes them) and deposits
    ``amount`` into it, nothing when 0; returns its id."""
    account_id = open_account(client, currency, **fields)
    if amount:
        deposit(client, account_id, amount)
    return account_id


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


ANSWER_SECONDS_MAX = 2.5
ECHO_FRAGMENTS = (b"9" * 50, b"d" * 50, b"k" * 50, b"DROP TABLE")


def hostile_failures(
    client: Any,
    table: Sequence[tuple[str, str | bytes, str | None, int, str]],
    alice: str,
    bob: str,
) -> list[str]:
    """Posts each hostile transfer body of ``table``; returns what went wrong, by name.

    Each must be a fast, small problem with the expected status and code that echoes
    none of the input, and the event store must not move.
    """
    ledger = client.app.state.ledger
    head_before = ledger.head_position()
    failures = []
    for name, template, content_type, status, code in table:
        content = template.encode() if isinstance(template, str) else template
        content = content.replace(b"%(a)s", alice.encode()).replace(b"%(b)s", bob.encode())
        headers = {"Content-Type": content_type} if content_type else {}
        started = time.perf_counter()
        response = client.post("/v1/transfers", content=content, headers=headers)
        elapsed = time.perf_counter() - started
        try:
            assert_problem(response, status, code)
            assert elapsed < ANSWER_SECONDS_MAX, f"took {elapsed:.2f} s"
            assert len(response.content) < 3000, "answer too long"
            for fragment in ECHO_FRAGMENTS:
                assert fragment not in response.content, "input echoed"
            assert ledger.head_position() == head_before, "the store changed"
        except AssertionError as error:
            failures.append(f"{name}: {error}")
    return failures
