"""Shared fixtures: the same tests run on the in-memory store, a SQLite file in
``tmp_path`` and PostgreSQL (a schema of its own per test session, dropped at the end).

PostgreSQL tests skip when no server is reachable, except under ``CI=true``, where an
unreachable server is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from domain.ledger import Ledger
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings

POSTGRES_BASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
STORES = ["memory", "sqlite", "postgres"]


def _postgres_reachable() -> str | None:
    try:
        with psycopg.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=3
        ):
            return None
    except psycopg.OperationalError as error:
        return str(error).strip().splitlines()[0]


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """A schema for this test session; tests use unique ids, so nothing is truncated."""
    problem = _postgres_reachable()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    schema = f"eltest_{os.getpid()}_{secrets.token_hex(4)}"
    yield schema
    with psycopg.connect(
        host="127.0.0.1", port=5432, user="postgres", dbname="test", autocommit=True
    ) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@pytest.fixture
def postgres_url(postgres_schema: str) -> str:
    return f"{POSTGRES_BASE_URL}?schema={postgres_schema}"


@pytest.fixture
def fresh_postgres_url(postgres_schema: str) -> Iterator[str]:
    """A PostgreSQL schema of this test's own, dropped afterwards."""
    schema = f"{postgres_schema}_{secrets.token_hex(3)}"
    yield f"{POSTGRES_BASE_URL}?schema={schema}"
    with psycopg.connect(
        host="127.0.0.1", port=5432, user="postgres", dbname="test", autocommit=True
    ) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def database_url_for(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if store == "memory":
        return "memory://"
    if store == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def commit_mode(request: pytest.FixtureRequest) -> str:
    """ "group" (the default) or "per_command"; modules that must hold in both modes
    parametrize it indirectly."""
    mode = str(getattr(request, "param", "group"))
    assert mode in ("group", "per_command")
    return mode


@pytest.fixture
def settings(
    store: str, commit_mode: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Settings:
    return Settings(
        database_url=database_url_for(store, tmp_path, request),
        group_commit=commit_mode == "group",
    )


@pytest.fixture
def make_ledger(settings: Settings) -> Iterator[Callable[..., Ledger]]:
    """Builds Ledgers on the test's store (several share one database) and closes them."""
    built: list[Ledger] = []

    def make(**overrides: object) -> Ledger:
        # Validated like real settings (a copy with update= would skip validation).
        ledger = build_ledger(Settings(**{**settings.model_dump(), **overrides}))
        built.append(ledger)
        return ledger

    yield make
    for ledger in built:
        ledger.close()


@pytest.fixture
def ledger(make_ledger: Callable[..., Ledger]) -> Ledger:
    return make_ledger()


class Clock:
    """A clock that moves only when a test moves it: expiry without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed_ledger(settings: Settings, clock: Clock) -> Iterator[Ledger]:
    """A Ledger on the test's store whose pending transfers expire by ``clock``."""
    ledger = build_ledger(settings, clock=clock)
    yield ledger
    ledger.close()
