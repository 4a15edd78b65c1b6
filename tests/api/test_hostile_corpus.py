"""Hostile input: each body or header is a fast 4xx, and the store is left unchanged.

Method: the hostile-body table of ``test_errors`` (imported, not copied) extended with
10,000-deep nesting, duplicate keys, bytes that are not UTF-8, lone surrogates, NUL
characters and SQL where a code belongs, sent to POST /v1/transfers between two funded
accounts on each store: each answer must be a small problem with the expected code,
within 2.5 s (milliseconds, unloaded), and ``head_position`` must not move. Then what
must be *accepted*: control characters, SQL, markup and odd Unicode in names,
descriptions and metadata are stored verbatim and come back JSON-escaped, from the
event store and from the read models (on a fresh store with the followers running).
Last, oversized headers: in process and through a real ``eventledger serve`` (the
server's protocol refuses a head of over 64 KiB that arrives in pieces; one that
arrives whole reaches the app, which answers 431 ``headers_too_large``: see
``api/header_limit.py`` and ``api/http_protocol.py``).

Decisions: a JSON object that repeats a key is refused (422), because ``json.loads``
would silently keep the last value and another reader of the same bytes may keep the
first; a NUL character is refused, because PostgreSQL ``text`` cannot hold it (it had
stalled the read models on PostgreSQL: see ``api/strict_json.py``).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from infrastructure.settings import Settings
from tests.api.servers import running_server
from tests.api.support import (
    ANSWER_SECONDS_MAX,
    assert_problem,
    balance,
    hostile_failures,
    open_account,
)
from tests.api.test_errors import JSON, amount

# Each answer takes milliseconds; the bound leaves room for a loaded shared machine
# while still failing a parser that goes quadratic or a route that waits.
DEEP = 10_000

# (name, body template, content type, status, code), like HOSTILE_BODIES.
MORE_HOSTILE_BODIES: list[tuple[str, str | bytes, str | None, int, str]] = [
    ("objects nested 10000 deep in metadata",
     amount("1", ',"metadata":' + '{"a":' * DEEP + '"v"' + "}" * DEEP), JSON,
     422, "validation_error"),
    ("arrays nested 10000 deep as the amount", amount("[" * DEEP + "]" * DEEP), JSON,
     422, "validation_error"),
    ("duplicate amount, both valid", amount("1", ',"amount":1000'), JSON,
     422, "validation_error"),
    ("duplicate currency", amount("1", ',"currency":"EUR"'), JSON, 422, "validation_error"),
    ("duplicate key inside metadata", amount("1", ',"metadata":{"k":"a","k":"b"}'), JSON,
     422, "validation_error"),
    ("NUL in the description", amount("1", ',"description":"a\\u0000b"'), JSON,
     422, "validation_error"),
    ("NUL in a metadata key", amount("1", ',"metadata":{"k\\u0000":"v"}'), JSON,
     422, "validation_error"),
    ("metadata shaped like the event format's tag",
     amount("1", ',"metadata":{"_type_":"uuid_hex","_data_":"' + "0" * 32 + '"}'), JSON,
     422, "validation_error"),
    ("lone surrogate in the description", amount("1", ',"description":"\\ud800"'), JSON,
     422, "validation_error"),
    ("raw control byte inside a string", amount("1", ',"description":"a\x01b"'), JSON,
     422, "validation_error"),
    ("overlong UTF-8", amount("1", ',"description":"').encode() + b'\xc0\xaf"}', JSON,
     422, "validation_error"),
    ("UTF-8 of a surrogate", amount("1", ',"description":"').encode() + b'\xed\xa0\x80"}',
     JSON, 422, "validation_error"),
    ("truncated UTF-8", amount("1", ',"description":"').encode() + b'\xe2\x82"}', JSON,
     422, "validation_error"),
    ("Latin-1 body", amount("1", ',"description":"caf\xe9"').encode("latin-1"), JSON,
     422, "validation_error"),
    ("SQL as the currency", amount("1").replace("USD", "'; DROP TABLE ledger_events;--"),
     JSON, 422, "validation_error"),
    ("SQL as an account id", amount("1").replace("%(b)s", "1' OR '1'='1"), JSON,
     422, "validation_error"),
    # Cheap to send, dear to parse (see api/strict_json.py): refused mid-parse.
    ("10,001 empty objects", amount("1", ',"x":[' + "{}," * 10_000 + "{}]"), JSON,
     422, "validation_error"),
    ("10,001 numbers", amount("1", ',"x":[' + "1," * 10_000 + "1]"), JSON,
     422, "validation_error"),
    ("1,001 empty arrays", amount("1", ',"x":[' + "[]," * 1_000 + "[]]"), JSON,
     422, "validation_error"),
]  # fmt: skip

# Accepted as sent: stored verbatim, returned JSON-escaped.
STRANGE_TEXTS = [
    "Robert'); DROP TABLE ledger_events;--",
    "1' OR '1'='1",
    'quote " backslash \\ slash /',
    "".join(chr(code) for code in range(1, 32)) + "\x7f",
    "\u202eevil\u202c \u2028line\u2029para \ufeffbom",
    "<script>alert(1)</script> {{7*7}} ${jndi:ldap://x}",
    "ß漢字🙂 \U0010ffff",
]


def test_the_extended_table_is_fast_small_problems_recording_nothing(
    client: TestClient, accounts: tuple[str, str]
) -> None:
    alice, bob = accounts
    # The original table runs in test_errors; this one adds the newer hostile bodies.
    failures = hostile_failures(client, MORE_HOSTILE_BODIES, alice, bob)
    assert not failures, "\n".join(failures)
    assert (balance(client, alice), balance(client, bob)) == (1000, 0)


def test_duplicate_keys_are_refused_on_every_command(client: TestClient) -> None:
    account = open_account(client, name="before")
    ledger = client.app.state.ledger  # type: ignore[attr-defined]
    head_before = ledger.head_position()
    requests = [
        ("POST", "/v1/accounts", '{"currency":"USD","currency":"EUR"}'),
        ("POST", f"/v1/accounts/{account}/deposits", '{"amount":1,"amount":100000}'),
        ("PATCH", f"/v1/accounts/{account}", '{"name":"a","name":"b"}'),
        ("POST", "/v1/transfers/batch", '{"transfers":[],"transfers":[]}'),
    ]
    for method, url, body in requests:
        response = client.request(method, url, content=body, headers={"Content-Type": JSON})
        assert_problem(response, 422, "validation_error")
        assert "repeats a key" in response.json()["detail"]
    assert ledger.head_position() == head_before
    assert balance(client, account) == 0


@pytest.fixture
def client_with_views(fresh_settings: Settings) -> Iterator[TestClient]:
    """An app with its projection followers on a fresh store: on PostgreSQL, a schema
    of its own, so its audit chain and views touch no other test's tables."""
    settings = fresh_settings.model_copy(update={"run_projections": True})
    with TestClient(create_app(settings)) as client:
        yield client


def test_strange_text_is_stored_verbatim_and_returned_escaped(
    client_with_views: TestClient,
) -> None:
    client = client_with_views
    metadata = {f"k{index}{text[:10]}": text for index, text in enumerate(STRANGE_TEXTS)}
    for text in STRANGE_TEXTS:
        created = client.post(
            "/v1/accounts", json={"currency": "USD", "name": text, "metadata": metadata}
        )
        assert created.status_code == 201, created.text
        account = created.json()["id"]
        moved = client.post(
            f"/v1/accounts/{account}/deposits",
            json={"amount": 5, "description": text, "metadata": {text[:40]: text}},
        )
        assert moved.status_code == 201, moved.text
        read = client.get(f"/v1/accounts/{account}")
        for response in (created, moved, read):
            assert not any(byte < 0x20 for byte in response.content), "a raw control byte"
        assert (read.json()["name"], read.json()["metadata"]) == (text, metadata)
        transfer = client.get(f"/v1/transfers/{moved.json()['id']}").json()
        assert transfer["description"] == text
        position = moved.json()["position"]
        listed = client.get("/v1/accounts", params={"min_position": position, "limit": 1000})
        assert listed.status_code == 200, listed.text
        rows = [row for row in listed.json()["items"] if row["id"] == account]
        assert rows and (rows[0]["name"], rows[0]["metadata"]) == (text, metadata)
        statement = client.get(
            f"/v1/accounts/{account}/statement", params={"min_position": position}
        )
        assert statement.status_code == 200, statement.text
        assert [p["description"] for p in statement.json()["items"]] == [text]


def raw_request(url: str, head: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Sends ``head`` on a fresh connection; returns the whole answer and its time."""
    host, port = url.removeprefix("http://").split(":")
    started = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(head)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and len(answer) > 4096:
                break
    return answer, time.perf_counter() - started


def test_oversized_headers_are_431_in_process(client: TestClient) -> None:
    ledger = client.app.state.ledger  # type: ignore[attr-defined]
    head_before = ledger.head_position()
    for headers in (
        {"X-Big": "a" * 20_000},
        {f"X-H{i}": "b" for i in range(150)},
        {"Authorization": "Bearer " + "c" * 17_000},
    ):
        response = client.post("/v1/accounts", json={"currency": "USD"}, headers=headers)
        assert_problem(response, 431, "headers_too_large")
        assert len(response.content) < 1000
    assert ledger.head_position() == head_before


def test_oversized_headers_are_refused_through_uvicorn_fast(tmp_path: Path) -> None:
    """Whichever refuses it (the protocol or the app, each with 431; uvicorn's h11, if
    it were the protocol, with 400), an oversized header block is a fast 4xx that writes
    nothing; smaller hostile headers reach the app and are its problems."""
    with running_server(tmp_path, f"sqlite:///{tmp_path / 'headers.db'}") as server:
        head_before = httpx.get(f"{server.url}/readyz").json()["position"]
        body = json.dumps({"currency": "USD"}).encode()
        oversized = {
            "one 100 KiB header": [b"X-Big: " + b"a" * 100_000],
            "300 headers of 100 bytes": [b"X-H%d: " % i + b"b" * 100 for i in range(300)],
            "a 64 KiB Authorization": [b"Authorization: Bearer " + b"c" * 65_536],
        }
        for name, lines in oversized.items():
            head = (
                b"POST /v1/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + b"\r\n".join(lines)
                + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
            )
            answer, elapsed = raw_request(server.url, head)
            status_line = answer.split(b"\r\n", 1)[0]
            assert status_line.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), (name, answer[:200])
            if status_line.startswith(b"HTTP/1.1 431"):
                assert b"application/problem+json" in answer and b"headers_too_large" in answer
            assert elapsed < ANSWER_SECONDS_MAX, (name, elapsed)
        small_but_hostile = {
            "Idempotency-Key": ("k" * 300, 422, "validation_error"),
            "If-Match": ('"' + "9" * 39, 422, "validation_error"),
            "Authorization": ("Bearer " + "d" * 8000, 401, "unauthorized"),
            "Content-Type": ("text/" + "e" * 8000, 415, "unsupported_media_type"),
        }
        account = httpx.post(f"{server.url}/v1/accounts", json={"currency": "USD"}).json()["id"]
        head_before = httpx.get(f"{server.url}/readyz").json()["position"]
        for header, (value, status, code) in small_but_hostile.items():
            url = f"{server.url}/v1/accounts/{account}/deposits"
            if header == "If-Match":
                url = f"{server.url}/v1/accounts/{account}/freeze"
            headers = {"Content-Type": JSON, header: value}
            response = httpx.post(url, content=b'{"amount": 5}', headers=headers)
            assert_problem(response, status, code)
            assert len(response.content) < 3000
        assert httpx.get(f"{server.url}/readyz").json()["position"] == head_before
        assert httpx.get(f"{server.url}/healthz").status_code == 200
