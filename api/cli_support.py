"""What every ``eventledger`` command shares: consoles, options, one-line failures,
the one check of whether a ledger exists before a command opens it, settings from the
environment with options on top, and JSON output.

Exit codes: 0 done; 1 refused (a business error, a failed check, a storage error in
the middle of a command); 2 bad input (a usage error, a bad setting or file); 3 the
store cannot be used: it cannot be opened, or a command that needs a ledger found
none there. Imports of the storage and HTTP stacks stay inside functions, so that
``eventledger --help`` starts in a fraction of the time of a command that uses them.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

if TYPE_CHECKING:
    from domain.ledger import Ledger
    from infrastructure.api_keys import KeyStore
    from infrastructure.settings import DatabaseUrl, Settings
    from infrastructure.views import ViewStore

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_STORE = 3
CREATE_HINT = (
    "create one with `eventledger accounts open` (or `eventledger serve`), "
    "or point --database or EVENTLEDGER_DATABASE_URL at an existing one"
)

# Soft wrap: ids and amounts stay on one line when piped, so they can be grepped.
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", help="Database URL; default EVENTLEDGER_DATABASE_URL."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
T = TypeVar("T")


def fail(message: str, code: int = EXIT_REFUSED) -> typer.Exit:
    """Prints one line to stderr; raise the result to exit with ``code``."""
    stderr.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def storage_errors() -> tuple[type[BaseException], ...]:
    """The exception classes of the stores, from the modules already imported (an
    error of a module that was never imported cannot be raised)."""
    found: list[type[BaseException]] = [sqlite3.Error]
    for module, name in (("eventsourcing.persistence", "PersistenceError"), ("psycopg", "Error")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


class LedgerGroup(TyperGroup):
    """The root and every command group: a storage error that escapes a command is one
    line, not a traceback; flags are shown as flags in ``--help`` (typer's rich help
    prints ``--json <bool>`` otherwise)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except storage_errors() as error:
            from infrastructure.store_presence import one_line

            raise fail(f"storage error: {one_line(error)}") from None

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not isinstance(command, LedgerGroup):
            _flags_without_type([*command.params, command.get_help_option(ctx)])
        return command


def _flags_without_type(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


def ledger_typer(help_text: str) -> typer.Typer:
    """A command group with the shared behaviour of ``LedgerGroup``."""
    return typer.Typer(help=help_text, no_args_is_help=True, cls=LedgerGroup)


def load_settings(**overrides: Any) -> Settings:
    """Settings from EVENTLEDGER_* with the given non-None options on top."""
    from pydantic import ValidationError

    from infrastructure.settings import Settings

    try:
        return Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise fail(f"invalid setting {field}: {first['msg']}", EXIT_USAGE) from None


@contextmanager
def cannot_open(database: DatabaseUrl) -> Iterator[None]:
    """Any failure to reach or read the store while opening it: one line, exit 3."""
    from infrastructure.store_presence import StoreUnavailable, location, one_line

    try:
        yield
    except StoreUnavailable as error:
        raise fail(str(error), EXIT_STORE) from None
    except (*storage_errors(), OSError) as error:
        message = f"cannot open {location(database)}: {one_line(error, database)}"
        raise fail(message, EXIT_STORE) from None


def open_store(settings: Settings, build: Callable[[Settings], T], *, create: bool) -> T:
    """``build(settings)`` once a ledger is known to be there.

    A command that only reads (``create=False``) refuses a store with no ledger; one
    that writes creates it through ``build`` and says so on stderr.
    """
    from infrastructure.store_presence import EVENTS_TABLE, has_table, location

    database = settings.database
    with cannot_open(database):
        missing = database.kind != "memory" and not has_table(
            database, EVENTS_TABLE[database.kind], settings.postgres_connect_timeout_seconds
        )
        if missing and not create:
            raise fail(f"no ledger at {location(database)}; {CREATE_HINT}", EXIT_STORE)
        built = build(settings)
    if missing:
        stderr.print(f"created a new ledger at {location(database)}", highlight=False)
    return built


def open_views(settings: Settings, *, create: bool = False) -> ViewStore:
    """The read models beside (or named for) the ledger at ``settings``; a views
    database that cannot be opened is one line, exit 3, as the events' is.

    Beside the ledger they are derived data, made when first needed. A views database
    named explicitly (``EVENTLEDGER_VIEWS_DATABASE_URL``, ``--views-database``) must
    hold read models already unless ``create``: a typo there is refused, not created.
    """
    from infrastructure.store_presence import VIEWS_TABLE, has_table, location
    from infrastructure.views import ViewStore, views_database

    try:
        database = views_database(settings)
    except ValueError as error:
        raise fail(str(error), EXIT_USAGE) from None
    named = settings.views_database_url is not None and database.kind != "memory"
    with cannot_open(database):
        if named and not create and not has_table(database, VIEWS_TABLE):
            raise fail(
                f"no read models at {location(database)}; `eventledger projections rebuild` "
                "(or `serve`, `projections run`) builds them there",
                EXIT_STORE,
            )
        return ViewStore.from_settings(settings)


def ledger_keys(settings: Settings) -> KeyStore:
    """The API keys of the ledger at ``settings``, the ledger's tables created first
    (a store with keys but no events table would not count as a ledger)."""
    from infrastructure.api_keys import build_keystore
    from infrastructure.persistence import build_ledger

    build_ledger(settings).close()
    return build_keystore(settings)


@contextmanager
def open_ledger(database: str | None, *, create: bool = False) -> Iterator[Ledger]:
    """A Ledger for one command; business and storage errors become one clear line.

    Only ``accounts open`` creates a missing ledger: every other command that takes a
    ledger names an account or transfer, which an empty ledger cannot have.
    """
    from eventsourcing.persistence import PersistenceError

    from domain.errors import LedgerError
    from infrastructure.persistence import build_ledger

    settings = load_settings(database_url=database)
    ledger = open_store(settings, build_ledger, create=create)
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
