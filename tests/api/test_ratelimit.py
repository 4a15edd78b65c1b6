"""Rate limits: a token bucket per API key (per address in open mode).

Method: the bucket itself against a hand-driven clock (burst, refill, the wait it
reports, the bound on clients kept); then through the app on the in-memory store (the
limiter is the same whatever the store): a key's burst passes, the next request is a
429 ``rate_limited`` problem with Retry-After that wrote nothing, another key and
another address are unaffected, and 0 turns the limiter off.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.ratelimit import TokenBuckets
from infrastructure.api_keys import create_key
from infrastructure.settings import Settings
from tests.api.support import assert_problem, open_account


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestTokenBuckets:
    def test_a_burst_passes_then_the_wait_is_reported(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(rate_per_second=2, burst=3, clock=clock)
        assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
        assert buckets.take("a") == pytest.approx(0.5)
        clock.now += 0.5
        assert buckets.take("a") == 0.0  # exactly one token came back
        assert buckets.take("a") == pytest.approx(0.5)

    def test_tokens_never_exceed_the_burst(self) -> None:
        clock = Clock()
        buckets = TokenBuckets(rate_per_second=10, burst=2, clock=clock)
        buckets.take("a")
        clock.now += 3600
        assert [buckets.take("a") for _ in range(2)] == [0.0, 0.0]
        assert buckets.take("a") > 0

    def test_clients_have_buckets_of_their_own(self) -> None:
        buckets = TokenBuckets(rate_per_second=1, burst=1, clock=Clock())
        assert buckets.take("a") == 0.0
        assert buckets.take("a") > 0
        assert buckets.take("b") == 0.0

    def test_the_number_of_clients_kept_is_bounded(self) -> None:
        buckets = TokenBuckets(rate_per_second=1, burst=1, clock=Clock(), clients_max=2)
        for client in ("a", "b", "c"):
            buckets.take(client)
        assert len(buckets._buckets) == 2
        assert buckets.take("a") == 0.0  # dropped as the least recently used: full again


def limited_settings(**overrides: object) -> Settings:
    # 0.5 tokens per second: the test's few requests cannot earn a token back.
    values: dict[str, object] = {
        "database_url": "memory://",
        "run_projections": False,
        "rate_limit_per_second": 0.5,
        "rate_limit_burst": 3,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def limited() -> Iterator[TestClient]:
    with TestClient(create_app(limited_settings())) as client:
        yield client


class TestThroughTheApi:
    def test_the_request_past_the_burst_is_429_with_retry_after(self, limited: TestClient) -> None:
        key, _ = create_key(limited.app.state.keystore, ["admin"])  # type: ignore[attr-defined]
        headers = {"Authorization": f"Bearer {key}"}
        account = limited.post("/v1/accounts", json={"currency": "USD"}, headers=headers)
        assert account.status_code == 201
        url = f"/v1/accounts/{account.json()['id']}/deposits"
        assert limited.post(url, json={"amount": 5}, headers=headers).status_code == 201
        assert limited.get("/v1/accounts?limit=1", headers=headers).status_code != 429
        ledger = limited.app.state.ledger  # type: ignore[attr-defined]
        head_before = ledger.head_position()
        refused = limited.post(url, json={"amount": 7}, headers=headers)
        body = assert_problem(refused, 429, "rate_limited")
        assert refused.headers["retry-after"] == "2"  # 1 token / 0.5 per second
        assert "retry" in body["detail"]
        assert ledger.head_position() == head_before  # refused before the route ran
        other, _ = create_key(limited.app.state.keystore, ["admin"])  # type: ignore[attr-defined]
        other_headers = {"Authorization": f"Bearer {other}"}
        assert limited.post(url, json={"amount": 7}, headers=other_headers).status_code == 201

    def test_unauthenticated_routes_are_not_limited(self, limited: TestClient) -> None:
        for _ in range(6):
            assert limited.get("/healthz").status_code == 200

    def test_open_mode_limits_each_address(self) -> None:
        app = create_app(limited_settings())
        with TestClient(app) as first, TestClient(app, client=("10.0.0.2", 4000)) as second:
            for _ in range(3):
                open_account(first)
            refused = first.post("/v1/accounts", json={"currency": "USD"})
            assert_problem(refused, 429, "rate_limited")
            open_account(second)

    def test_zero_turns_the_limiter_off(self) -> None:
        app = create_app(limited_settings(rate_limit_per_second=0))
        with TestClient(app) as client:
            for _ in range(10):
                open_account(client)


def test_every_v1_operation_documents_the_429() -> None:
    document = create_app(limited_settings()).openapi()
    for path, item in document["paths"].items():
        if path.startswith("/v1/"):
            for method, operation in item.items():
                response = operation["responses"].get("429")
                assert response is not None, (method, path)
                assert "application/problem+json" in response["content"]
