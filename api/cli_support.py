"""What every ``eventledger`` command shares: consoles, options, one-line failures,
settings from the environment with options on top, and JSON output."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import typer
from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError
from rich.console import Console

from domain.errors import LedgerError
from domain.ledger import Ledger
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings

# Soft wrap: ids and amounts stay on one line when piped, so they can be grepped.
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", help="Database URL; default EVENTLEDGER_DATABASE_URL."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Prints one line to stderr; raise the result to exit with ``code``."""
    stderr.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    """Settings from EVENTLEDGER_* with the given non-None options on top."""
    try:
        return Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise fail(f"invalid setting {field}: {first['msg']}", 2) from None


@contextmanager
def open_ledger(database: str | None) -> Iterator[Ledger]:
    """A Ledger for one command; business and storage errors become one clear line."""
    settings = load_settings(database_url=database)
    try:
        ledger = build_ledger(settings)
    except (PersistenceError, OSError) as error:
        raise fail(f"cannot open {settings.database!r}: {error}") from None
    try:
        yield ledger
    except LedgerError as error:
        raise fail(f"{error.code}: {error.detail}") from None
    except PersistenceError as error:
        raise fail(f"storage error: {error}") from None
    finally:
        ledger.close()


def render_transfer(transfer: Any) -> None:
    replayed = " (replayed: this id was used before)" if transfer.replayed else ""
    amount = str(transfer.amount)
    if transfer.status == "posted" and transfer.posted_amount != transfer.amount:
        amount = f"{transfer.posted_amount} of {transfer.amount}"
    stdout.print(
        f"transfer {transfer.id} {transfer.status}{replayed}: {amount} "
        f"{transfer.currency} from {transfer.from_account} to {transfer.to_account}",
        highlight=False,
    )


def emit(value: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        print(json.dumps(to_jsonable(value), indent=2))
    else:
        render(value)


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value
