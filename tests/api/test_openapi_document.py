"""The OpenAPI document is one a client can be generated from and trusted.

Method: the document of an app on a memory store is walked whole. It fails on a schema
property without a description; a request or response body without an example; a
request input without its limits as schema constraints; a documented problem code that
the operation cannot answer (a 404 on an operation without an id, a 412 without
If-Match, a 413 without a body...), checked against what the document itself says the
operation takes; a word of our internals (``app.state``...) in any text; a list that is
not ``{items, next_cursor}`` with ``cursor`` and ``limit``; an example its own schema
refuses; an integer bound written as a float. It then sends the documented bounds of
``timeout_seconds``, ``overdraft_limit`` and amounts to an app: the limit is taken, one
past it refused (amounts with their own code, ``amount_out_of_range``). What each operation can
answer is kept in one table, ``api.openapi_problems.OPERATION_CODES``; the fuzz test
checks the other direction (every answer's code is in the document).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator, FormatChecker

from api.app import create_app
from api.openapi_problems import OPERATION_CODES, status_and_title
from infrastructure.settings import Settings
from tests.api.support import assert_problem, funded_account, open_account, transfer

INTERNAL_WORDS = (
    "app.state",
    "request.state",
    "lifespan",
    "dependenc",
    "thread",
    "microsecond",
    "group commit",
    "group-commit",
    "TODO",
    "FIXME",
)
# Codes about one transfer or one account: only where the path names it.
TRANSFER_CODES = {"transfer_not_pending", "pending_expired", "transfer_not_posted"}
ACCOUNT_CODES = {"account_not_empty", "version_mismatch"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings(database_url="memory://")).openapi()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url="memory://"))) as client:
        yield client


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def subschemas(schema: Any) -> Iterator[dict[str, Any]]:
    """Every schema object inside ``schema``, itself included."""
    if not isinstance(schema, dict):
        return
    yield schema
    for key in ("items", "additionalProperties", "not"):
        yield from subschemas(schema.get(key))
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        for part in schema.get(key, []):
            yield from subschemas(part)
    for value in schema.get("properties", {}).values():
        yield from subschemas(value)


def all_schemas(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, schema in document["components"]["schemas"].items():
        for part in subschemas(schema):
            yield name, part
    for method, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            yield f"{method} {path} {parameter['name']}", parameter["schema"]
        for status, response in operation["responses"].items():
            for media in response.get("content", {}).values():
                for part in subschemas(media.get("schema")):
                    yield f"{method} {path} {status}", part


def bodies(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for method, path, operation in operations(document):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            yield f"{method} {path} request {media_type}", media
        for status, response in operation["responses"].items():
            for media_type, media in response.get("content", {}).items():
                if "schema" in media and media["schema"]:
                    yield f"{method} {path} {status} {media_type}", media


def documented_codes(operation: dict[str, Any]) -> dict[str, set[str]]:
    codes: dict[str, set[str]] = {}
    for status, response in operation["responses"].items():
        if status[0] not in "45":
            continue
        schema = response["content"]["application/problem+json"]["schema"]
        (code,) = [part["properties"]["code"] for part in schema["allOf"] if "properties" in part]
        codes[status] = set(code["enum"])
    return codes


def takes(operation: dict[str, Any], where: str, name: str) -> bool:
    return any(
        p["in"] == where and p["name"].lower() == name.lower()
        for p in operation.get("parameters", [])
    )


def body_properties(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return {}
    schema = content["application/json"]["schema"]
    for part in subschemas(schema):
        resolved = resolve(document, part)
        if "properties" in resolved:
            return dict(resolved["properties"])
    return {}


def names_other_ids(document: dict[str, Any], operation: dict[str, Any]) -> bool:
    """Whether the body names existing aggregates by id (the body's own ``id`` creates)."""
    properties = body_properties(document, operation)
    return any(
        name != "id" and any(part.get("format") == "uuid" for part in subschemas(schema))
        for name, schema in properties.items()
    )


class TestDescriptions:
    def test_every_schema_property_has_a_description(self, document: dict[str, Any]) -> None:
        missing = [
            f"{where}.{name}"
            for where, schema in all_schemas(document)
            for name, prop in schema.get("properties", {}).items()
            if not prop.get("description")
        ]
        assert missing == []

    def test_every_parameter_has_a_description(self, document: dict[str, Any]) -> None:
        missing = [
            f"{method} {path} {parameter['name']}"
            for method, path, operation in operations(document)
            for parameter in operation.get("parameters", [])
            if not parameter.get("description")
        ]
        assert missing == []

    def test_no_text_speaks_of_our_internals(self, document: dict[str, Any]) -> None:
        found = [
            (word, text[:80])
            for text in strings(document)
            for word in INTERNAL_WORDS
            if word.lower() in text.lower()
        ]
        assert found == []


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


class TestExamples:
    def test_every_request_and_response_body_has_an_example(self, document: dict[str, Any]) -> None:
        missing = [
            where
            for where, media in bodies(document)
            if not {"example", "examples"} & media.keys()
            and not {"example", "examples"} & resolve(document, media["schema"]).keys()
        ]
        assert missing == []

    def test_every_example_is_valid_against_its_own_schema(self, document: dict[str, Any]) -> None:
        invalid = [
            f"{where}: {error.message[:120]}"
            for where, schema, example in examples(document)
            for error in validator(document, schema).iter_errors(example)
        ]
        assert invalid == []

    def test_a_wrong_example_is_found(self, document: dict[str, Any]) -> None:
        """The walk above reaches the examples it must judge: a broken one fails."""
        broken = copy.deepcopy(document)
        account = broken["components"]["schemas"]["AccountOut"]
        account["examples"] = [{**account["examples"][0], "id": "not-a-uuid"}]
        found = [
            where
            for where, schema, example in examples(broken)
            if not validator(broken, schema).is_valid(example)
        ]
        assert found == ["AccountOut"]


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """Validates against ``schema`` with the document's components, formats included."""
    root = {**schema, "components": document["components"]}
    return Draft202012Validator(root, format_checker=FormatChecker())


def examples(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every example in the document: a schema's own
    ``examples``, at any depth, and a body's ``example`` or ``examples``."""
    for where, schema in all_schemas(document):
        for example in schema.get("examples", []):
            yield where, schema, example
    for where, media in request_and_response_media(document):
        schema = media["schema"]
        for part in subschemas(schema):
            for example in part.get("examples", []) if "$ref" not in part else []:
                yield where, part, example
        if "example" in media:
            yield where, schema, media["example"]
        for named in media.get("examples", {}).values():
            yield where, schema, named["value"]


def request_and_response_media(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, media in bodies(document):
        if media.get("schema"):
            yield where, media


class TestLimits:
    def test_every_request_input_is_bounded_in_the_schema(self, document: dict[str, Any]) -> None:
        unbounded = []
        for method, path, operation in operations(document):
            inputs = [(p["name"], p["schema"]) for p in operation.get("parameters", [])]
            inputs += list(body_properties(document, operation).items())
            for name, schema in inputs:
                for part in subschemas(resolve(document, schema)):
                    if "properties" in part:
                        inputs += list(part["properties"].items())
                    if not bounded(part):
                        unbounded.append(f"{method} {path} {name}: {part}")
        assert unbounded == []

    def test_timeout_seconds_amounts_and_page_sizes_carry_their_limits(
        self, document: dict[str, Any]
    ) -> None:
        create = document["components"]["schemas"]["CreateTransfer"]["properties"]
        assert (create["amount"]["minimum"], create["amount"]["maximum"]) == (1, 10**15)
        timeout = next(p for p in create["timeout_seconds"]["anyOf"] if p["type"] == "integer")
        assert (timeout["minimum"], timeout["maximum"]) == (1, 30 * 24 * 3600)
        events = document["paths"]["/v1/accounts/{account_id}/events"]["get"]["parameters"]
        limit = next(p for p in events if p["name"] == "limit")["schema"]
        assert (limit["minimum"], limit["maximum"]) == (1, 1000)

    def test_integer_bounds_are_written_as_integers(self, document: dict[str, Any]) -> None:
        """Not 1.0, nor 9.223372036854776e18 for 2**63 - 1 (a float cannot hold it)."""
        floats = [
            f"{where}: {keyword}={part[keyword]!r}"
            for where, schema in all_schemas(document)
            for part in subschemas(schema)
            if part.get("type") == "integer"
            for keyword in ("minimum", "maximum")
            if keyword in part and not isinstance(part[keyword], int)
        ]
        assert floats == []


class TestDocumentedLimitsAreTheAnswers:
    """A documented bound is the one the API keeps: the limit itself is taken, one
    past it refused; an amount past its bound keeps its own code."""

    def test_timeout_seconds_from_its_minimum_to_its_maximum(
        self, document: dict[str, Any], client: TestClient
    ) -> None:
        create = document["components"]["schemas"]["CreateTransfer"]["properties"]
        low, high = integer_bounds(create["timeout_seconds"])
        alice, bob = funded_account(client, 10), open_account(client)
        for timeout_seconds, status in ((low - 1, 422), (low, 201), (high, 201), (high + 1, 422)):
            answer = transfer(client, alice, bob, 1, pending=True, timeout_seconds=timeout_seconds)
            if status == 422:
                assert_problem(answer, 422, "validation_error")
            else:
                assert answer.status_code == 201, answer.text

    def test_overdraft_limit_from_zero_to_its_maximum(
        self, document: dict[str, Any], client: TestClient
    ) -> None:
        schemas = document["components"]["schemas"]
        low, high = integer_bounds(schemas["OpenAccount"]["properties"]["overdraft_limit"])
        assert (low, high) == integer_bounds(
            schemas["UpdateAccount"]["properties"]["overdraft_limit"]
        )
        assert low == 0
        for limit, status in ((low - 1, 422), (low, 201), (high, 201), (high + 1, 422)):
            answer = client.post("/v1/accounts", json={"currency": "USD", "overdraft_limit": limit})
            if status == 422:
                assert_problem(answer, 422, "validation_error")
            else:
                assert answer.json()["overdraft_limit"] == limit
        account = open_account(client)
        assert_problem(
            client.patch(f"/v1/accounts/{account}", json={"overdraft_limit": high + 1}),
            422,
            "validation_error",
        )
        changed = client.patch(f"/v1/accounts/{account}", json={"overdraft_limit": high})
        assert changed.json()["overdraft_limit"] == high

    def test_an_amount_past_its_documented_bounds_is_amount_out_of_range(
        self, document: dict[str, Any], client: TestClient
    ) -> None:
        move = document["components"]["schemas"]["MoveMoney"]["properties"]
        low, high = integer_bounds(move["amount"])
        account = open_account(client)
        url = f"/v1/accounts/{account}/deposits"
        for amount in (low - 1, high + 1):
            answer = client.post(url, json={"amount": amount})
            assert_problem(answer, 422, "amount_out_of_range")
        assert client.post(url, json={"amount": high}).status_code == 201
        assert client.post(url, json={"amount": low}).status_code == 201


def integer_bounds(schema: dict[str, Any]) -> tuple[int, int]:
    (integer,) = [part for part in subschemas(schema) if part.get("type") == "integer"]
    return integer["minimum"], integer["maximum"]


def bounded(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "integer":
        return "minimum" in schema and "maximum" in schema
    if kind == "string":
        return bool({"maxLength", "enum", "format", "pattern", "const"} & schema.keys())
    if kind == "array":
        return "maxItems" in schema
    if kind == "object" and "additionalProperties" in schema:
        return "maxProperties" in schema
    return True


class TestProblemCodes:
    def test_the_table_names_exactly_the_documented_operations(
        self, document: dict[str, Any]
    ) -> None:
        listed = {(method, path) for method, path, _ in operations(document)}
        assert listed == OPERATION_CODES.keys()

    def test_each_code_is_documented_under_its_own_status(self, document: dict[str, Any]) -> None:
        for method, path, operation in operations(document):
            for status, codes in documented_codes(operation).items():
                for code in codes:
                    assert status_and_title(code)[0] == int(status), (method, path, code)

    def test_no_operation_documents_a_code_it_cannot_answer(self, document: dict[str, Any]) -> None:
        wrong = []
        for method, path, operation in operations(document):
            codes = set().union(*documented_codes(operation).values())
            for code in sorted(codes):
                if not can_answer(document, path, operation, code):
                    wrong.append((method, path, code))
        assert wrong == []

    def test_every_operation_documents_the_failures_any_request_can_meet(
        self, document: dict[str, Any]
    ) -> None:
        for method, path, operation in operations(document):
            codes = set().union(*documented_codes(operation).values())
            assert {"internal_error", "headers_too_large"} <= codes, (method, path)
            if "requestBody" in operation:
                assert {"payload_too_large", "validation_error"} <= codes, (method, path)
            if "security" in operation and path.startswith("/v1/"):
                assert {"unauthorized", "forbidden", "rate_limited"} <= codes, (method, path)


def can_answer(document: dict[str, Any], path: str, operation: dict[str, Any], code: str) -> bool:
    """What the document says the operation takes decides what it can answer."""
    has_id = "{" in path
    rules = {
        "not_found": has_id or names_other_ids(document, operation),
        "version_mismatch": takes(operation, "header", "If-Match"),
        "payload_too_large": "requestBody" in operation,
        "request_timeout": "requestBody" in operation,
        "unsupported_media_type": "requestBody" in operation,
        "validation_error": "requestBody" in operation or bool(operation.get("parameters")),
        "idempotency_key_reused": takes(operation, "header", "Idempotency-Key")
        or "id" in body_properties(document, operation),
        "view_behind": takes(operation, "query", "min_position"),
        "view_stalled": takes(operation, "query", "min_position"),
        "unauthorized": "security" in operation,
        "forbidden": "security" in operation,
        "batch_item_failed": "transfers" in body_properties(document, operation),
    }
    if code in TRANSFER_CODES:
        return "{transfer_id}" in path
    if code in ACCOUNT_CODES:
        return rules.get(code, True) and "{account_id}" in path
    return rules.get(code, True)


class TestLists:
    def test_every_list_is_items_and_next_cursor_paged_by_cursor_and_limit(
        self, document: dict[str, Any]
    ) -> None:
        lists = []
        for _method, path, operation in operations(document):
            media = operation["responses"].get("200", {}).get("content", {})
            schema = resolve(document, media.get("application/json", {}).get("schema", {}))
            properties = schema.get("properties", {})
            if not any(p.get("type") == "array" for p in properties.values()):
                continue
            if "items" not in properties:
                continue
            lists.append(path)
            assert "next_cursor" in properties, path
            assert takes(operation, "query", "cursor") and takes(operation, "query", "limit")
        assert sorted(lists) == [
            "/v1/accounts",
            "/v1/accounts/{account_id}/events",
            "/v1/accounts/{account_id}/statement",
        ]

    def test_no_list_answers_under_another_name(self, document: dict[str, Any]) -> None:
        schemas = document["components"]["schemas"]
        for name in ("AccountListOut", "StatementOut", "AccountEventsPage"):
            properties = schemas[name]["properties"]
            assert not {"accounts", "postings", "next_after_version"} & properties.keys()
