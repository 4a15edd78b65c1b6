"""API keys: created, listed and revoked by ``eventledger keys``; checked per request.

A key reads ``elk_<key id>_<secret>``. Only the key id, a random salt and
HMAC-SHA256(salt, secret) are stored, in the ``api_keys`` table of the events database
(the SQLite file, or the PostgreSQL schema); with ``memory://`` they live in the
process. The secret has 256 random bits, so a fast salted hash is enough (a slow
password hash would only cost CPU on every request); comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from psycopg import errors, sql
from psycopg_pool import ConnectionPool

from infrastructure.persistence import prepare_database
from infrastructure.settings import DatabaseUrl, Settings

SCOPES = ("read", "write", "audit", "admin")
KEY_PATTERN = re.compile(r"^elk_([0-9a-f]{16})_([0-9a-f]{64})$")
TABLE_NAME = "api_keys"
NAME_LENGTH_MAX = 100
# Compared against when the key id is unknown, so a miss costs what a hit costs.
_DUMMY_SALT = bytes(16)


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None
    salt: bytes = b""
    digest: bytes = b""

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def grants(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


class KeyStore(Protocol):
    def insert(self, record: KeyRecord) -> None: ...
    def find(self, key_id: str) -> KeyRecord | None: ...
    def all(self) -> list[KeyRecord]: ...
    def revoke(self, key_id: str, at: datetime) -> bool: ...
    def has_active(self) -> bool: ...
    def close(self) -> None: ...


def digest_of(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode("ascii"), hashlib.sha256).digest()


def create_key(store: KeyStore, scopes: Iterable[str], name: str = "") -> tuple[str, KeyRecord]:
    """Returns the full key (shown once, never stored) and its stored record."""
    scopes = tuple(sorted(set(scopes)))
    assert scopes and set(scopes) <= set(SCOPES), scopes
    assert len(name) <= NAME_LENGTH_MAX
    key_id, secret, salt = secrets.token_hex(8), secrets.token_hex(32), secrets.token_bytes(16)
    record = KeyRecord(
        key_id=key_id,
        name=name,
        scopes=scopes,
        created_at=datetime.now(UTC),
        salt=salt,
        digest=digest_of(salt, secret),
    )
    store.insert(record)
    return f"elk_{key_id}_{secret}", record


def authenticate(store: KeyStore, presented: str) -> KeyRecord | None:
    """The active record the presented key belongs to, else None."""
    match = KEY_PATTERN.fullmatch(presented)
    if match is None:
        return None
    key_id, secret = match.groups()
    record = store.find(key_id)
    salt = record.salt if record is not None else _DUMMY_SALT
    expected = record.digest if record is not None else bytes(32)
    matches = hmac.compare_digest(digest_of(salt, secret), expected)
    if record is None or not matches or not record.active:
        return None
    return record


def build_keystore(settings: Settings) -> KeyStore:
    database = settings.database
    if database.kind == "memory":
        return MemoryKeyStore()
    prepare_database(settings)
    if database.kind == "sqlite":
        return SQLiteKeyStore(database.path, settings.sqlite_lock_timeout_seconds)
    return PostgresKeyStore(database)


class MemoryKeyStore:
    def __init__(self) -> None:
        self._records: dict[str, KeyRecord] = {}
        self._lock = threading.Lock()

    def insert(self, record: KeyRecord) -> None:
        with self._lock:
            assert record.key_id not in self._records
            self._records[record.key_id] = record

    def find(self, key_id: str) -> KeyRecord | None:
        return self._records.get(key_id)

    def all(self) -> list[KeyRecord]:
        return sorted(self._records.values(), key=lambda r: r.created_at)

    def revoke(self, key_id: str, at: datetime) -> bool:
        with self._lock:
            record = self._records.get(key_id)
            if record is None or not record.active:
                return False
            self._records[key_id] = KeyRecord(**{**vars(record), "revoked_at": at})
            return True

    def has_active(self) -> bool:
        return any(record.active for record in self._records.values())

    def close(self) -> None:
        return None


_COLUMNS = "key_id, name, scopes, created_at, revoked_at, salt, digest"


def _record(row: Any) -> KeyRecord:
    key_id, name, scopes, created_at, revoked_at, salt, digest = row
    return KeyRecord(
        key_id=key_id,
        name=name,
        scopes=tuple(scopes.split(",")),
        created_at=datetime.fromisoformat(created_at),
        revoked_at=datetime.fromisoformat(revoked_at) if revoked_at else None,
        salt=bytes(salt),
        digest=bytes(digest),
    )


def _row(record: KeyRecord) -> tuple[Any, ...]:
    return (
        record.key_id,
        record.name,
        ",".join(record.scopes),
        record.created_at.isoformat(),
        record.revoked_at.isoformat() if record.revoked_at else None,
        record.salt,
        record.digest,
    )


class ActiveKeys:
    """Whether any unrevoked key exists, read from the store at most once per TTL.

    Asked on every request without a key, to decide whether the API is open. The
    first key created (or the last one revoked) takes effect within ``ttl_seconds``.
    """

    def __init__(
        self,
        keystore: KeyStore,
        ttl_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keystore = keystore
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._answer: tuple[float, bool] | None = None

    def cached(self) -> bool | None:
        """The last answer if still fresh, else None."""
        answer = self._answer
        if answer is None or self.clock() >= answer[0]:
            return None
        return answer[1]

    def refresh(self) -> bool:
        has_active = self.keystore.has_active()
        self._answer = (self.clock() + self.ttl_seconds, has_active)
        return has_active


class SQLiteKeyStore:
    """One short connection per call: cheap for SQLite, and safe across threads."""

    def __init__(self, path: str, lock_timeout_seconds: int) -> None:
        self.path = path
        self.lock_timeout_seconds = lock_timeout_seconds
        with self._connection() as connection:
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE_NAME} (key_id TEXT PRIMARY KEY, "
                "name TEXT NOT NULL, scopes TEXT NOT NULL, created_at TEXT NOT NULL, "
                "revoked_at TEXT, salt BLOB NOT NULL, digest BLOB NOT NULL)"
            )

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=self.lock_timeout_seconds)
        try:
            connection.execute("PRAGMA synchronous=FULL")
            with connection:  # commits, or rolls back on error
                yield connection
        finally:
            connection.close()

    def insert(self, record: KeyRecord) -> None:
        with self._connection() as connection:
            connection.execute(
                f"INSERT INTO {TABLE_NAME} ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)", _row(record)
            )

    def find(self, key_id: str) -> KeyRecord | None:
        with self._connection() as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM {TABLE_NAME} WHERE key_id = ?", (key_id,)
            ).fetchone()
        return _record(row) if row else None

    def all(self) -> list[KeyRecord]:
        with self._connection() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM {TABLE_NAME} ORDER BY created_at"
            ).fetchall()
        return [_record(row) for row in rows]

    def revoke(self, key_id: str, at: datetime) -> bool:
        with self._connection() as connection:
            cursor = connection.execute(
                f"UPDATE {TABLE_NAME} SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (at.isoformat(), key_id),
            )
            return cursor.rowcount == 1

    def has_active(self) -> bool:
        with self._connection() as connection:
            row = connection.execute(
                f"SELECT 1 FROM {TABLE_NAME} WHERE revoked_at IS NULL LIMIT 1"
            ).fetchone()
        return row is not None

    def close(self) -> None:
        return None


class PostgresKeyStore:
    """A small pool of its own, so key checks never wait behind event-store writes."""

    def __init__(self, database: DatabaseUrl) -> None:
        self.table = (
            sql.Identifier(database.schema, TABLE_NAME)
            if database.schema
            else sql.Identifier(TABLE_NAME)
        )
        self.pool = ConnectionPool(
            kwargs={
                "host": database.host,
                "port": database.port,
                "user": database.user,
                "password": database.password,
                "dbname": database.dbname,
                "connect_timeout": 5,
            },
            min_size=1,
            max_size=4,
            timeout=5,
            open=True,
        )
        # Two servers starting together may race to create the table; one wins.
        with suppress(errors.UniqueViolation, errors.DuplicateTable), self.pool.connection() as c:
            c.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key_id TEXT PRIMARY KEY, "
                    "name TEXT NOT NULL, scopes TEXT NOT NULL, created_at TEXT NOT NULL, "
                    "revoked_at TEXT, salt BYTEA NOT NULL, digest BYTEA NOT NULL)"
                ).format(self.table)
            )

    def _run(self, statement: str, params: tuple[Any, ...] = ()) -> Any:
        with self.pool.connection() as connection:
            return connection.execute(sql.SQL(statement).format(self.table), params)

    def insert(self, record: KeyRecord) -> None:
        self._run(f"INSERT INTO {{}} ({_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s)", _row(record))

    def find(self, key_id: str) -> KeyRecord | None:
        with self.pool.connection() as connection:
            row = connection.execute(
                sql.SQL(f"SELECT {_COLUMNS} FROM {{}} WHERE key_id = %s").format(self.table),
                (key_id,),
            ).fetchone()
        return _record(row) if row else None

    def all(self) -> list[KeyRecord]:
        with self.pool.connection() as connection:
            rows = connection.execute(
                sql.SQL(f"SELECT {_COLUMNS} FROM {{}} ORDER BY created_at").format(self.table)
            ).fetchall()
        return [_record(row) for row in rows]

    def revoke(self, key_id: str, at: datetime) -> bool:
        with self.pool.connection() as connection:
            cursor = connection.execute(
                sql.SQL(
                    "UPDATE {} SET revoked_at = %s WHERE key_id = %s AND revoked_at IS NULL"
                ).format(self.table),
                (at.isoformat(), key_id),
            )
            return cursor.rowcount == 1

    def has_active(self) -> bool:
        with self.pool.connection() as connection:
            row = connection.execute(
                sql.SQL("SELECT 1 FROM {} WHERE revoked_at IS NULL LIMIT 1").format(self.table)
            ).fetchone()
        return row is not None

    def close(self) -> None:
        self.pool.close()
