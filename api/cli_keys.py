"""``eventledger keys create|list|revoke``: API keys in the events database.

The full key is printed once, at creation; only its salted hash is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli_support import (
    EXIT_USAGE,
    DatabaseOption,
    JsonOption,
    fail,
    ledger_keys,
    ledger_typer,
    load_settings,
    open_store,
    stdout,
)

if TYPE_CHECKING:
    from infrastructure.api_keys import KeyRecord, KeyStore

# As infrastructure.api_keys has them (tests/api/test_cli_errors.py checks), here so
# that the help is written without importing the store.
SCOPES = ("read", "write", "audit", "admin")
NAME_LENGTH_MAX = 100

keys_app = ledger_typer("Create, list and revoke API keys.")


@contextmanager
def open_keystore(database: str | None, *, create: bool = False) -> Iterator[KeyStore]:
    """The keys of the ledger at ``database``; only ``keys create`` makes a new one."""
    settings = load_settings(database_url=database)
    if settings.database.kind == "memory":
        raise fail(
            "memory:// keys live inside the server process; use sqlite or postgresql",
            EXIT_USAGE,
        )
    keystore = open_store(settings, ledger_keys, create=create)
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
        raise fail(
            f"unknown scope {', '.join(unknown)}; choose from {', '.join(SCOPES)}", EXIT_USAGE
        )
    if len(name) > NAME_LENGTH_MAX:
        raise fail(f"--name is at most {NAME_LENGTH_MAX} characters", EXIT_USAGE)
    from infrastructure.api_keys import create_key

    with open_keystore(database, create=True) as keystore:
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
    from rich.table import Table

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
