"""``eventledger keys create|list|revoke``: API keys in the events database.

The full key is printed once, at creation; only its salted hash is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer
from eventsourcing.persistence import PersistenceError
from psycopg import Error as PsycopgError
from pydantic import ValidationError
from rich.table import Table

from api.cli_support import DatabaseOption, JsonOption, fail, stdout
from infrastructure.api_keys import (
    NAME_LENGTH_MAX,
    SCOPES,
    KeyRecord,
    KeyStore,
    build_keystore,
    create_key,
)
from infrastructure.settings import Settings

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@contextmanager
def open_keystore(database: str | None) -> Iterator[KeyStore]:
    try:
        settings = Settings() if database is None else Settings(database_url=database)
    except ValidationError as error:
        raise fail(f"invalid setting: {error.errors()[0]['msg']}", 2) from None
    if settings.database.kind == "memory":
        raise fail("memory:// keys live inside the server process; use sqlite or postgresql", 2)
    try:
        keystore = build_keystore(settings)
    except (PersistenceError, PsycopgError, OSError) as error:
        raise fail(f"cannot open {settings.database!r}: {error}") from None
    try:
        yield keystore
    finally:
        keystore.close()


@keys_app.command("create")
def keys_create(
    scope: Annotated[
        list[str],
        typer.Option("--scope", "-s", help=f"Repeatable: {', '.join(SCOPES)} (admin = all)."),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="What the key is for.")] = "",
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it once; store only its salted hash."""
    unknown = sorted(set(scope) - set(SCOPES))
    if unknown:
        raise fail(f"unknown scope {', '.join(unknown)}; choose from {', '.join(SCOPES)}", 2)
    if len(name) > NAME_LENGTH_MAX:
        raise fail(f"--name is at most {NAME_LENGTH_MAX} characters", 2)
    with open_keystore(database) as keystore:
        key, record = create_key(keystore, scope, name)
    if as_json:
        print(json.dumps({"key": key, **_jsonable(record)}, indent=2))
        return
    stdout.print(f"created key {record.key_id} with scopes {', '.join(record.scopes)}")
    stdout.print("store it now; it cannot be shown again:", highlight=False)
    print(key)


@keys_app.command("list")
def keys_list(database: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """List keys (ids, names, scopes, dates); never the keys themselves."""
    with open_keystore(database) as keystore:
        records = keystore.all()
    if as_json:
        print(json.dumps([_jsonable(record) for record in records], indent=2))
        return
    table = Table("key id", "name", "scopes", "created", "revoked")
    for record in records:
        table.add_row(
            record.key_id,
            record.name,
            ",".join(record.scopes),
            record.created_at.isoformat(timespec="seconds"),
            record.revoked_at.isoformat(timespec="seconds") if record.revoked_at else "",
        )
    stdout.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id that `keys list` shows.")],
    database: DatabaseOption = None,
) -> None:
    """Revoke a key; requests with it are refused from then on."""
    with open_keystore(database) as keystore:
        revoked = keystore.revoke(key_id, datetime.now(UTC))
    if not revoked:
        raise fail(f"no active key {key_id}")
    stdout.print(f"revoked key {key_id}")


def _jsonable(record: KeyRecord) -> dict[str, object]:
    return {
        "key_id": record.key_id,
        "name": record.name,
        "scopes": list(record.scopes),
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }
