"""Fixtures of the API tests: an in-process client on each store, and fresh stores
for tests that need an empty key table (the session's PostgreSQL schema is shared by
every test, so a key created there would close the open mode for all of them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from infrastructure.settings import Settings
from tests.api.support import funded_account, open_account
from tests.conftest import Clock

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(settings: Settings) -> Iterator[MakeClient]:
    """Starts apps (lifespan included) on the test's store; closes them at the end.
    Given the test's ``clock``, pending transfers of the app expire by it."""
    clients: list[TestClient] = []

    def make(clock: Clock | None = None, **overrides: object) -> TestClient:
        # These tests read the event store only; the projection follower (tested with
        # the read models) would only add start and stop time to every test.
        if "run_projections" in Settings.model_fields:
            overrides.setdefault("run_projections", False)
        client = TestClient(create_app(settings.model_copy(update=overrides), clock=clock))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


@pytest.fixture
def fresh_settings(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings on an empty store of the test's kind: no account, no key."""
    if store == "memory":
        url = "memory://"
    elif store == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        url = str(request.getfixturevalue("fresh_postgres_url"))
    if "run_projections" in Settings.model_fields:
        return Settings(database_url=url, run_projections=False)
    return Settings(database_url=url)


@pytest.fixture
def accounts(client: TestClient) -> Iterator[tuple[str, str]]:
    """Alice with 1000, Bob with nothing, for tests that must leave them unchanged."""
    yield funded_account(client, 1000), open_account(client)


@pytest.fixture
def secured(fresh_settings: Settings) -> Iterator[TestClient]:
    """An app on a fresh store of the test's kind, for tests that create API keys."""
    with TestClient(create_app(fresh_settings)) as client:
        yield client
