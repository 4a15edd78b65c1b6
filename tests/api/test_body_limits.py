"""Request bodies: authorized before a byte is read, bounded by route, parsed strictly.

Method: in process, on the in-memory store (the rules are the API's, not the store's).
Whether a route reads a body is seen by calling the ASGI app directly with a
``receive`` that records each call: without a key, or without the scope, every route
that takes a body must answer before calling it. Each route's size limit is checked
from both sides: its largest valid body (as bytes on the wire, written the way a
client's JSON library may: compact, characters of up to four UTF-8 bytes, or
\\u-escaped) is not refused, and a declared length one byte over the limit is 413
before the body is read. The through-the-socket side (deadlines, slots, floods) is in
``test_slow_clients``.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from uuid import uuid4

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import strict_json
from api.app import BODY_SIZE_MAX_BYTES_BY_ROUTE, ROUTERS
from api.routing import LedgerRoute
from domain.ledger import BATCH_SIZE_MAX
from domain.limits import METADATA_KEY_LENGTH_MAX, METADATA_KEYS_MAX, METADATA_VALUE_LENGTH_MAX
from infrastructure.api_keys import create_key
from infrastructure.settings import Settings
from tests.api.support import assert_problem, funded_account, open_account
from tests.api.test_auth import bearer, keystore_of

MEMORY = pytest.mark.parametrize("store", ["memory"], indirect=True)
JSON = "application/json"


def body_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every operation that takes a body."""
    return [
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]


def concrete(path: str) -> str:
    return path.replace("{account_id}", str(uuid4())).replace("{transfer_id}", str(uuid4()))


def limit_of(client: TestClient, path: str) -> int:
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    return BODY_SIZE_MAX_BYTES_BY_ROUTE.get(path, settings.request_body_size_max_bytes)


def call_asgi(
    client: TestClient, method: str, path: str, headers: dict[str, str], content_length: int = 2
) -> tuple[int, bool]:
    """The status of the app's answer to a request declaring ``content_length`` bytes of
    body, and whether the app asked for any of it."""
    read: list[bool] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        read.append(True)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(b"content-type", JSON.encode()), (b"content-length", b"%d" % content_length)]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "headers": raw_headers,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    assert client.portal is not None
    client.portal.call(client.app, scope, receive, send)
    (status,) = [m["status"] for m in sent if m["type"] == "http.response.start"]
    return status, bool(read)


def test_every_route_is_a_ledger_route() -> None:
    routes = [route for router in ROUTERS for route in router.routes]
    assert routes and all(isinstance(route, LedgerRoute) for route in routes)


@MEMORY
class TestRoutes:
    def test_every_route_limit_names_a_route_that_takes_a_body(self, client: TestClient) -> None:
        paths = {path for _, path in body_routes(client.app)}  # type: ignore[arg-type]
        assert set(BODY_SIZE_MAX_BYTES_BY_ROUTE) <= paths


@MEMORY
class TestAuthorizationComesBeforeTheBody:
    def test_without_a_key_every_route_with_a_body_is_401_unread(self, secured: TestClient) -> None:
        create_key(keystore_of(secured), ["admin"])
        routes = body_routes(secured.app)  # type: ignore[arg-type]
        assert len(routes) >= 9
        for method, path in routes:
            assert call_asgi(secured, method, concrete(path), {}) == (401, False), path
            bad_key = bearer("elk_" + "0" * 16 + "_" + "0" * 64)
            assert call_asgi(secured, method, concrete(path), bad_key) == (401, False), path

    def test_without_the_scope_it_is_403_unread(self, secured: TestClient) -> None:
        create_key(keystore_of(secured), ["admin"])
        read_only, _ = create_key(keystore_of(secured), ["read"])
        for method, path in body_routes(secured.app):  # type: ignore[arg-type]
            answer = call_asgi(secured, method, concrete(path), bearer(read_only))
            assert answer == (403, False), path

    def test_with_the_scope_the_body_is_read(self, secured: TestClient) -> None:
        admin, _ = create_key(keystore_of(secured), ["admin"])
        status, read = call_asgi(secured, "POST", "/v1/accounts", bearer(admin))
        assert read and status == 422  # {} lacks the currency

    def test_in_open_mode_the_body_is_read(self, client: TestClient) -> None:
        status, read = call_asgi(client, "POST", "/v1/accounts", {})
        assert read and status == 422


def metadata(character: str) -> dict[str, str]:
    key = character * (METADATA_KEY_LENGTH_MAX - 2)
    value = character * METADATA_VALUE_LENGTH_MAX
    return {f"{index:02d}{key}": value for index in range(METADATA_KEYS_MAX)}


def compact(body: dict[str, Any], ensure_ascii: bool = False) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=ensure_ascii).encode()


@MEMORY
class TestSizeLimits:
    def test_the_largest_valid_bodies_pass_their_route_limits(self, client: TestClient) -> None:
        """Metadata routes: every body in two-byte UTF-8 (the largest is 55 KB); the small
        routes: every body even \\u-escaped; the batch: 1,000 transfers of 1 KB."""
        alice, bob = funded_account(client, 10**12), open_account(client)
        text, emoji = "é" * 500, "🙂" * 500
        sent = {
            "/v1/accounts": compact(
                {"currency": "USD", "name": text, "overdraft_limit": 0,
                 "metadata": metadata("é"), "id": str(uuid4())}
            ),
            f"/v1/accounts/{alice}/deposits": compact(
                {"amount": 10**15, "description": text, "metadata": metadata("é"),
                 "id": str(uuid4())}
            ),
            "/v1/transfers": compact(
                {"from_account": alice, "to_account": bob, "amount": 1, "currency": "USD",
                 "description": text, "metadata": metadata("é"), "id": str(uuid4()),
                 "pending": True, "timeout_seconds": 2_592_000}
            ),
        }  # fmt: skip
        pending = sent["/v1/transfers"]
        for path, body in sent.items():
            assert len(body) > 55_000
            response = client.post(path, content=body, headers={"Content-Type": JSON})
            assert response.status_code == 201, (path, response.text)
        pending_id = json.loads(pending)["id"]
        small = {
            f"/v1/transfers/{pending_id}/post": {"amount": 1},
            f"/v1/transfers/{uuid4()}/reverse": {"amount": 10**15, "id": str(uuid4()),
                                                  "description": emoji},
            "/v1/audit/verify": {"digest": "a" * 64 + "@" + "9" * 19},
        }  # fmt: skip
        for path, fields in small.items():
            response = client.post(path, content=compact(fields, ensure_ascii=True),
                                   headers={"Content-Type": JSON})  # fmt: skip
            assert response.status_code != 413, (path, response.text)
        item = {"from_account": alice, "to_account": bob, "amount": 1, "currency": "USD"}
        room = 1040 - len(compact(item)) - len(',"description":""') - len(",")
        item["description"] = "é" * (room // 2)  # two bytes each
        batch = compact({"transfers": [item] * BATCH_SIZE_MAX})
        assert 1_000_000 < len(batch) <= 1024 * 1024
        response = client.post("/v1/transfers/batch", content=batch, headers={"Content-Type": JSON})
        assert response.status_code == 201, response.text

    def test_one_byte_over_a_route_limit_is_413_before_the_body_is_read(
        self, client: TestClient
    ) -> None:
        for method, path in body_routes(client.app):  # type: ignore[arg-type]
            limit = limit_of(client, path)
            assert call_asgi(client, method, concrete(path), {}, limit + 1) == (413, False), path
            status, _ = call_asgi(client, method, concrete(path), {}, limit)
            assert status != 413, path

    def test_the_small_routes_take_far_less_than_the_others(self, client: TestClient) -> None:
        assert limit_of(client, "/v1/transfers/{transfer_id}/post") == 8 * 1024
        assert limit_of(client, "/v1/accounts") == 64 * 1024
        assert limit_of(client, "/v1/transfers/batch") == 1024 * 1024


@MEMORY
class TestParsing:
    @pytest.mark.parametrize(
        ("items", "refusal"),
        [
            ("{}," * 10_000 + "{}", "more than 10000 JSON objects and numbers"),
            ("1," * 10_000 + "1", "more than 10000 JSON objects and numbers"),
            ("[]," * 1_000 + "[]", "more than 1000 JSON arrays"),
        ],
    )
    def test_a_body_of_too_many_values_is_refused(
        self, client: TestClient, items: str, refusal: str
    ) -> None:
        body = '{"transfers":[' + items + "]}"
        response = client.post("/v1/transfers/batch", content=body, headers={"Content-Type": JSON})
        assert refusal in assert_problem(response, 422, "validation_error")["detail"]

    def test_brackets_inside_strings_are_not_arrays(self, client: TestClient) -> None:
        """Over ARRAYS_MAX brackets, all in strings, next to escaped quotes and
        backslashes: a valid body, accepted as sent."""
        tricky = {f"k{index}": '["[\\' * 100 for index in range(50)}
        body = compact({"currency": "USD", "metadata": tricky})
        assert body.count(b"[") > strict_json.ARRAYS_MAX
        response = client.post("/v1/accounts", content=body, headers={"Content-Type": JSON})
        assert response.status_code == 201, response.text
        assert response.json()["metadata"] == tricky

    def test_large_bodies_are_parsed_in_a_worker_thread(
        self, client: TestClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        threads: list[str] = []
        parse = strict_json.loads_strict

        def recording(body: bytes) -> Any:
            threads.append(threading.current_thread().name)
            return parse(body)

        monkeypatch.setattr(strict_json, "loads_strict", recording)
        small = {"currency": "USD", "name": "n"}
        large = {**small, "metadata": {f"k{i}": "v" * 400 for i in range(50)}}
        for body in (small, large):
            response = client.post("/v1/accounts", json=body)
            assert response.status_code == 201, response.text
        assert len(compact(large)) > strict_json.INLINE_PARSE_MAX_BYTES >= len(compact(small))
        loop_thread, worker = threads
        assert worker != loop_thread and worker.startswith("AnyIO worker thread"), threads
