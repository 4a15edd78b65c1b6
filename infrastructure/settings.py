"""The one place that reads the environment: ``EVENTLEDGER_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./data/eventledger.db"


class Settings(BaseSettings):
    """Validated at start-up; a bad value stops the process with a clear message."""

    model_config = SettingsConfigDict(env_prefix="EVENTLEDGER_", extra="ignore", frozen=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="sqlite:///path, postgresql://user:pass@host:port/db[?schema=s], memory://",
    )
    snapshot_interval: int = Field(100, ge=1, le=1_000_000)
    cipher_key: SecretStr | None = Field(None, description="AES key (base64) for encryption")
    compress: bool = False
    retry_attempts: int = Field(12, ge=1, le=1000)
    group_commit: bool = Field(
        True,
        description="the tuned write path (infrastructure.tuned_ledger): one writer commits "
        "many concurrent transfers in one transaction; false runs the plain Ledger, each "
        "command in its own transaction, with the same rules and answers",
    )
    aggregate_cache_size: int = Field(
        10_000,
        ge=0,
        le=10_000_000,
        description="Aggregates kept in memory and fast-forwarded from the store on each "
        "load (so still correct with several processes); 0 turns the cache off.",
    )
    sqlite_lock_timeout_seconds: int = Field(5, ge=1, le=600)
    postgres_lock_timeout_seconds: int = Field(5, ge=1, le=600)
    postgres_connect_timeout_seconds: int = Field(5, ge=1, le=600)
    postgres_pool_size: int = Field(5, ge=1, le=200)
    postgres_max_overflow: int = Field(10, ge=0, le=200)
    postgres_idle_in_transaction_timeout_seconds: int = Field(10, ge=1, le=3600)
    # Read models (projections/). None picks a default next to the events: a sibling
    # SQLite file for sqlite:// (so view writes never wait on the event writer's lock),
    # the same database for postgresql://, a temporary SQLite file for memory://.
    views_database_url: str | None = Field(
        None, description="where the read models live; sqlite:///path or postgresql://..."
    )
    projections_batch_size: int = Field(1000, ge=1, le=100_000)
    projections_poll_interval_seconds: float = Field(0.2, ge=0.01, le=60)
    read_your_writes_timeout_seconds: float = Field(5.0, ge=0, le=60)
    run_projections: bool = Field(True, description="in-process follower in serve")
    pending_sweep_interval_seconds: float = Field(
        1.0, ge=0, le=3600, description="how often serve voids expired pending transfers; 0: never"
    )
    # HTTP API (eventledger serve).
    host: str = Field("127.0.0.1", description="address the API binds to")
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    insecure_no_auth: bool = Field(False, description="serve without API keys off loopback")
    request_body_size_max_bytes: int = Field(65536, ge=1024, le=16 * 1024 * 1024)
    store_busy_retry_after_seconds: int = Field(1, ge=1, le=60, description="503 Retry-After")
    # Off by default: a default rate would throttle `make bench` and the test suite,
    # and on loopback in open mode every local client shares one address (one bucket).
    rate_limit_per_second: float = Field(
        0, ge=0, le=1_000_000, description="per API key (per address in open mode); 0: off"
    )
    rate_limit_burst: int = Field(100, ge=1, le=1_000_000, description="bucket size")
    # Slow and large requests (api/http_protocol.py, api/middleware.py): a request head
    # and a request body each arrive within a bounded time, and only so many bodies are
    # received at once; a request is authorized before any of its body is read.
    request_head_timeout_seconds: float = Field(
        10, ge=0.1, le=600, description="from connecting (or a request's first byte): 408"
    )
    request_body_timeout_seconds: float = Field(
        10, ge=0.1, le=600, description="from the first read of a body to its last byte: 408"
    )
    request_bodies_in_flight_max: int = Field(
        32, ge=1, le=10_000, description="request bodies received at once, per process"
    )
    request_body_queue_timeout_seconds: float = Field(
        5, ge=0, le=600, description="wait for a free body slot, then 503 with Retry-After"
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        parse_database_url(value)
        return value

    @field_validator("views_database_url")
    @classmethod
    def _known_views_scheme(cls, value: str | None) -> str | None:
        if value is not None:
            parse_database_url(value)
        return value

    @property
    def database(self) -> DatabaseUrl:
        return parse_database_url(self.database_url)


class DatabaseUrl:
    """A parsed ``EVENTLEDGER_DATABASE_URL``."""

    def __init__(
        self,
        kind: Literal["sqlite", "postgresql", "memory"],
        path: str = "",
        host: str = "",
        port: int = 5432,
        user: str = "",
        password: str = "",
        dbname: str = "",
        schema: str = "",
    ) -> None:
        self.kind = kind
        self.path = path
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.dbname = dbname
        self.schema = schema

    def connection_kwargs(self) -> dict[str, Any]:
        """psycopg connection arguments for a ``postgresql://`` URL."""
        assert self.kind == "postgresql", self.kind
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
            "connect_timeout": 5,
        }

    def __repr__(self) -> str:
        # Never print the password.
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}"
        if self.kind == "memory":
            return "memory://"
        suffix = f"?schema={self.schema}" if self.schema else ""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}{suffix}"


def parse_database_url(url: str) -> DatabaseUrl:
    """Parses a database URL; raises ValueError with the accepted forms."""
    if url == "memory://":
        return DatabaseUrl("memory")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise ValueError("sqlite:/// needs a file path, like sqlite:///./data/ledger.db")
        return DatabaseUrl("sqlite", path=str(Path(path)))
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        schema = parse_qs(parts.query).get("schema", [""])[0]
        if schema and not schema.replace("_", "").isalnum():
            raise ValueError("schema must be letters, digits and underscores")
        return DatabaseUrl(
            "postgresql",
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            dbname=parts.path.lstrip("/") or "postgres",
            schema=schema,
        )
    raise ValueError(
        "database URL must be sqlite:///path, postgresql://user:pass@host:port/db or memory://"
    )
