"""Every failure is an RFC 9457 problem with a stable code, never a 500.

Method: a table of hostile bodies sent to POST /v1/transfers between two funded
accounts; each must be a 4xx problem, small (nothing huge echoed back), and leave the
event store exactly as it was (``head_position`` before == after). Then the HTTP-level
problems (unknown route, wrong method, body too large, store locked, retries exhausted)
and the error table against DESIGN.md's list of codes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

from fastapi.testclient import TestClient

from api.errors import HTTP_STATUS_CODES, status_for
from domain import errors
from tests.api.conftest import MakeClient
from tests.api.support import assert_problem, balance, hostile_failures, open_account

JSON = "application/json"
TEMPLATE = (
    '{"from_account":"%(a)s","to_account":"%(b)s","amount":%(amount)s,"currency":"USD"%(more)s}'
)


def amount(literal: str, more: str = "") -> str:
    return TEMPLATE.replace("%(amount)s", literal).replace("%(more)s", more)


MANY_KEYS = ",".join(f'"k{i}":"v"' for i in range(51))

# (name, body template, content type, status, code)
HOSTILE_BODIES: list[tuple[str, str | bytes, str | None, int, str]] = [
    ("NaN", amount("NaN"), JSON, 422, "validation_error"),
    ("Infinity", amount("Infinity"), JSON, 422, "validation_error"),
    ("-Infinity", amount("-Infinity"), JSON, 422, "validation_error"),
    ("huge exponent", amount("1e999999"), JSON, 422, "validation_error"),
    ("small exponent", amount("1e2"), JSON, 422, "validation_error"),
    ("float", amount("10.5"), JSON, 422, "validation_error"),
    ("integral float", amount("10.0"), JSON, 422, "validation_error"),
    ("5000-digit int", amount("9" * 5000), JSON, 422, "validation_error"),
    ("4000-digit int", amount("9" * 4000), JSON, 422, "amount_out_of_range"),
    ("string amount", amount('"100"'), JSON, 422, "validation_error"),
    ("boolean amount", amount("true"), JSON, 422, "validation_error"),
    ("null amount", amount("null"), JSON, 422, "validation_error"),
    ("object amount", amount('{"value": 1}'), JSON, 422, "validation_error"),
    ("zero", amount("0"), JSON, 422, "amount_out_of_range"),
    ("negative", amount("-5"), JSON, 422, "amount_out_of_range"),
    ("unknown field", amount("1", ',"fee":1'), JSON, 422, "validation_error"),
    ("duplicate key, last NaN", amount("1", ',"amount":NaN'), JSON, 422, "validation_error"),
    ("lower-case currency", amount("1").replace("USD", "usd"), JSON, 422, "validation_error"),
    ("unknown currency", amount("1").replace("USD", "ZZZ"), JSON, 422, "validation_error"),
    ("pending as a string", amount("1", ',"pending":"yes"'), JSON, 422, "validation_error"),
    ("id not a UUID", amount("1", ',"id":"abc"'), JSON, 422, "validation_error"),
    ("long description", amount("1", ',"description":"%s"' % ("d" * 60000)), JSON,
     422, "validation_error"),
    ("long metadata key", amount("1", ',"metadata":{"%s":"v"}' % ("k" * 5000)), JSON,
     422, "validation_error"),
    ("51 metadata keys", amount("1", ',"metadata":{' + MANY_KEYS + "}"), JSON,
     422, "validation_error"),
    ("malformed JSON", '{"amount": ', JSON, 422, "validation_error"),
    ("top-level array", "[]", JSON, 422, "validation_error"),
    ("arrays nested 30000 deep", "[" * 30000, JSON, 422, "validation_error"),
    ("not UTF-8", b'{"amount": "\xff\xfe"}', JSON, 422, "validation_error"),
    ("text/plain", amount("1"), "text/plain", 422, "validation_error"),
    ("form encoded", "amount=1", "application/x-www-form-urlencoded", 422, "validation_error"),
    ("no content type", amount("1"), None, 422, "validation_error"),
    ("empty body", "", JSON, 422, "validation_error"),
    ("over 64 KiB", amount("1", ',"description":"%s"' % ("d" * 70000)), JSON,
     413, "payload_too_large"),
]  # fmt: skip


def test_hostile_bodies_are_small_problems_and_record_nothing(
    client: TestClient, accounts: tuple[str, str]
) -> None:
    """One app per store runs the whole table; a failing case is named in the report."""
    alice, bob = accounts
    failures = hostile_failures(client, HOSTILE_BODIES, alice, bob)
    assert not failures, "\n".join(failures)
    assert (balance(client, alice), balance(client, bob)) == (1000, 0)


def test_a_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    ledger = client.app.state.ledger  # type: ignore[attr-defined]
    head_before = ledger.head_position()

    def chunks() -> Iterator[bytes]:
        yield b'{"description": "'
        for _ in range(80):
            yield b"x" * 1024

    response = client.post("/v1/transfers", content=chunks(), headers={"Content-Type": JSON})
    assert_problem(response, 413, "payload_too_large")
    assert ledger.head_position() == head_before


def test_unknown_routes_and_methods_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")
    wrong_method = client.delete(f"/v1/accounts/{uuid4()}")
    assert_problem(wrong_method, 405, "method_not_allowed")
    assert "GET" in wrong_method.headers["allow"]
    assert_problem(client.get("/v1/accounts/not-a-uuid"), 422, "validation_error")
    assert_problem(client.get("/v1/transfers/" + "x" * 5000), 422, "validation_error")


def test_a_store_locked_too_long_answers_503_with_retry_after(
    make_client: MakeClient, store: str, settings: object
) -> None:
    if store != "sqlite":
        return  # the lock is SQLite's single writer
    client = make_client(sqlite_lock_timeout_seconds=1)
    account_id = open_account(client)
    path = client.app.state.settings.database.path  # type: ignore[attr-defined]
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        key = {"Idempotency-Key": f"locked-{uuid4()}"}
        locked = client.post(f"/v1/accounts/{account_id}/deposits", json={"amount": 5}, headers=key)
        assert_problem(locked, 503, "service_unavailable")
        assert locked.headers["retry-after"] == "1"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    retried = client.post(f"/v1/accounts/{account_id}/deposits", json={"amount": 5}, headers=key)
    assert retried.status_code == 201
    assert balance(client, account_id) == 5


def test_retries_exhausted_is_409_conflict(make_client: MakeClient, store: str) -> None:
    """With one attempt allowed, concurrent deposits to one account must collide; the
    losers answer 409 and nothing of theirs is written."""
    if store == "memory":
        return  # in one process the in-memory store rarely interleaves saves
    # Per-command saves: group commit (the default) would merge these deposits into
    # one writer's transactions, and they would never collide.
    client = make_client(retry_attempts=1, group_commit=False)
    account_id = open_account(client)

    def one_deposit(number: int) -> int:
        response = client.post(f"/v1/accounts/{account_id}/deposits", json={"amount": 1})
        if response.status_code == 409:
            assert_problem(response, 409, "conflict")
        return response.status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(one_deposit, range(48)))
    assert set(statuses) <= {201, 409}
    assert 409 in statuses
    assert balance(client, account_id) == statuses.count(201)


# DESIGN.md section 5: "Error codes (at least)".
DESIGN_CODES = {
    "validation_error": 422, "not_found": 404, "insufficient_funds": 422,
    "currency_mismatch": 422, "same_account": 422, "account_frozen": 422,
    "account_closed": 422, "account_not_empty": 422, "amount_out_of_range": 422,
    "idempotency_key_reused": 422, "transfer_not_pending": 422, "pending_expired": 422,
    "version_mismatch": 412, "conflict": 409, "unauthorized": 401, "forbidden": 403,
    "payload_too_large": 413,
}  # fmt: skip


def test_the_error_table_gives_each_design_code_its_status() -> None:
    ledger_errors = [
        errors.InvalidRequest("x"), errors.AccountNotFound(uuid4()),
        errors.TransferNotFound(uuid4()), errors.InsufficientFunds("x"),
        errors.CurrencyMismatch("x"), errors.SameAccount("x"), errors.AccountFrozen("x"),
        errors.AccountClosed("x"), errors.AccountNotEmpty("x"), errors.AmountOutOfRange("x"),
        errors.BalanceOverflow("x"), errors.IdempotencyKeyReused("x"),
        errors.TransferNotPending("x"), errors.PendingExpired("x"),
        errors.VersionMismatch(1, 2), errors.ConcurrencyConflict("x"),
    ]  # fmt: skip
    produced = {error.code: status_for(error) for error in ledger_errors}
    produced.update({code: status for status, code in HTTP_STATUS_CODES.items()})
    for code, status in DESIGN_CODES.items():
        assert produced.get(code) == status, code
