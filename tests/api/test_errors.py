"""Every failure is an RFC 9457 problem with a stable code, never a 500.

Method: a table of hostile bodies sent to POST /v1/transfers between two funded
accounts; each must be a 4xx problem, small (nothing huge echoed back), and leave the
event store exactly as it was (``head_position`` before == after). Then the HTTP-level
problems (unknown route, wrong method, body too large, store locked, retries exhausted)
and the error table against DESIGN.md's list of codes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import HTTP_PROBLEMS, install_error_handlers, problem_for
from domain import errors
from infrastructure.settings import Settings
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
UNSUPPORTED = "unsupported_media_type"
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
    ("text/plain", amount("1"), "text/plain", 415, UNSUPPORTED),
    ("form encoded", "amount=1", "application/x-www-form-urlencoded", 415, UNSUPPORTED),
    ("no content type", amount("1"), None, 415, UNSUPPORTED),
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


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # SQLite's single writer
def test_a_store_locked_too_long_answers_503_with_retry_after(make_client: MakeClient) -> None:
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


def test_retries_exhausted_is_409_conflict(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deposits to one account, each allowed one attempt, both load the account
    before either writes: a barrier in front of the event store's insert holds the
    first until the second has arrived. One is written; the other collides on the
    account's version and answers 409, and nothing of it is written."""
    # Per-command saves: group commit (the default) would merge the two deposits into
    # one writer's transaction, and they would never collide.
    client = make_client(retry_attempts=1, group_commit=False)
    account_id = open_account(client)
    recorder = client.app.state.ledger.recorder  # type: ignore[attr-defined]
    insert_events = recorder.insert_events
    both_loaded = threading.Barrier(2, timeout=10)

    def insert_when_both_have_loaded(*args: Any, **kwargs: Any) -> Any:
        both_loaded.wait()
        return insert_events(*args, **kwargs)

    monkeypatch.setattr(recorder, "insert_events", insert_when_both_have_loaded)
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(
            pool.map(
                lambda _: client.post(f"/v1/accounts/{account_id}/deposits", json={"amount": 1}),
                range(2),
            )
        )
    monkeypatch.undo()
    assert sorted(answer.status_code for answer in answers) == [201, 409]
    assert_problem(max(answers, key=lambda answer: answer.status_code), 409, "conflict")
    assert balance(client, account_id) == 1


# DESIGN.md section 5: "Error codes (at least)".
DESIGN_CODES = {
    "validation_error": 422, "not_found": 404, "insufficient_funds": 422,
    "currency_mismatch": 422, "same_account": 422, "account_frozen": 422,
    "account_closed": 422, "account_not_empty": 422, "amount_out_of_range": 422,
    "idempotency_key_reused": 422, "transfer_not_pending": 422, "pending_expired": 422,
    "version_mismatch": 412, "conflict": 409, "unauthorized": 401, "forbidden": 403,
    "payload_too_large": 413,
}  # fmt: skip

# Every class of domain/errors.py and the (status, code) a client gets for it, written
# out so that changing any mapping, or adding a class without a row, fails a test.
EXPECTED_PROBLEMS: dict[type[errors.LedgerError], tuple[int, str]] = {
    errors.LedgerError: (422, "ledger_error"),
    errors.InvalidRequest: (422, "validation_error"),
    errors.InvalidCurrency: (422, "validation_error"),
    errors.UnknownCurrency: (422, "validation_error"),
    errors.AmountOutOfRange: (422, "amount_out_of_range"),
    errors.SameAccount: (422, "same_account"),
    errors.ReservedId: (422, "reserved_id"),
    errors.NotFound: (404, "not_found"),
    errors.AccountNotFound: (404, "not_found"),
    errors.TransferNotFound: (404, "not_found"),
    errors.TransferRejected: (422, "ledger_error"),
    errors.InsufficientFunds: (422, "insufficient_funds"),
    errors.CurrencyMismatch: (422, "currency_mismatch"),
    errors.AccountFrozen: (422, "account_frozen"),
    errors.AccountClosed: (422, "account_closed"),
    errors.BalanceOverflow: (422, "amount_out_of_range"),
    errors.AccountNotEmpty: (422, "account_not_empty"),
    errors.IdempotencyKeyReused: (422, "idempotency_key_reused"),
    errors.TransferNotPending: (422, "transfer_not_pending"),
    errors.TransferNotPosted: (422, "transfer_not_posted"),
    errors.BatchItemFailed: (422, "batch_item_failed"),
    errors.PendingExpired: (422, "pending_expired"),
    errors.VersionMismatch: (412, "version_mismatch"),
    errors.ConcurrencyConflict: (409, "conflict"),
    errors.Unavailable: (503, "ledger_error"),
    errors.ServiceUnavailable: (503, "service_unavailable"),
    errors.OutcomeUnknown: (503, "outcome_unknown"),
}

# The codes that come from HTTP itself, by status.
EXPECTED_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 408: "request_timeout", 409: "conflict",
    412: "version_mismatch", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "validation_error", 429: "rate_limited", 431: "headers_too_large",
    500: "internal_error", 503: "service_unavailable",
}  # fmt: skip


def ledger_error_classes() -> set[type[errors.LedgerError]]:
    return {
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, errors.LedgerError)
        and value.__module__ == errors.__name__
    }


def an_instance_of(error_class: type[errors.LedgerError]) -> errors.LedgerError:
    if issubclass(error_class, errors.AccountNotFound | errors.TransferNotFound):
        return error_class(uuid4())
    if issubclass(error_class, errors.VersionMismatch):
        return error_class(1, 2)
    if issubclass(error_class, errors.BatchItemFailed):
        return error_class(3, errors.InsufficientFunds("item"))
    return error_class("detail")


class TestTheErrorTable:
    def test_names_every_class_of_domain_errors(self) -> None:
        assert ledger_error_classes() == set(EXPECTED_PROBLEMS)

    @pytest.mark.parametrize(
        "error_class", list(EXPECTED_PROBLEMS), ids=lambda error_class: error_class.__name__
    )
    def test_gives_each_class_its_status_and_code(
        self, error_class: type[errors.LedgerError]
    ) -> None:
        status, code = EXPECTED_PROBLEMS[error_class]
        kind = problem_for(error_class)
        assert (kind.status, kind.code, error_class.code) == (status, code, code)

    def test_the_handler_answers_each_class_as_the_table_says(self) -> None:
        app = FastAPI()
        app.state.settings = Settings(database_url="memory://", store_busy_retry_after_seconds=7)
        install_error_handlers(app)
        classes = {error_class.__name__: error_class for error_class in EXPECTED_PROBLEMS}

        @app.get("/raise/{name}")
        def raise_it(name: str) -> None:
            raise an_instance_of(classes[name])

        with TestClient(app) as client:
            for error_class, (status, code) in EXPECTED_PROBLEMS.items():
                response = client.get(f"/raise/{error_class.__name__}")
                body = assert_problem(response, status, code)
                assert body["title"] == problem_for(error_class).title
                retry_after = response.headers.get("retry-after")
                assert retry_after == ("7" if status == 503 else None), error_class

    def test_gives_http_its_own_codes(self) -> None:
        assert {status: kind.code for status, kind in HTTP_PROBLEMS.items()} == (
            EXPECTED_HTTP_CODES
        )

    def test_gives_each_design_code_its_status_wherever_it_is_answered(self) -> None:
        answered = [(kind.code, kind.status) for kind in HTTP_PROBLEMS.values()]
        answered += [(code, status) for status, code in EXPECTED_PROBLEMS.values()]
        for code, status in DESIGN_CODES.items():
            assert {s for c, s in answered if c == code} == {status}, code
