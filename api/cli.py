"""The ``eventledger`` command line.

Human-readable output by default, ``--json`` for scripts. A ``LedgerError`` or a bad
setting prints one line to stderr and exits non-zero, with no traceback.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from domain.errors import LedgerError
from domain.ledger import Ledger
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings

app = typer.Typer(
    name="eventledger",
    help="An event-sourced, double-entry money ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
accounts_app = typer.Typer(help="Open, show and list accounts.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")

T = TypeVar("T")

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", help="Database URL; default EVENTLEDGER_DATABASE_URL."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DescriptionOption = Annotated[str, typer.Option("--description", "-d", help="Free text.")]
IdOption = Annotated[
    UUID | None, typer.Option("--id", help="Transfer id; the same id again is a safe retry.")
]
MetadataOption = Annotated[
    list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE, repeatable.")
]

# Soft wrap: ids and amounts stay on one line when piped, so they can be grepped.
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    stderr.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def load_settings(database: str | None = None) -> Settings:
    """Settings from the environment, with ``--database`` on top; one line if invalid."""
    try:
        settings = Settings()
        if database is not None:
            settings = Settings(database_url=database)
        return settings
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise fail(f"invalid setting {field}: {first['msg']}", 2) from None


@contextmanager
def open_ledger(database: str | None) -> Iterator[Ledger]:
    """A Ledger for one command; business and storage errors become one clear line."""
    settings = load_settings(database)
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


def parse_metadata(pairs: list[str] | None) -> dict[str, str]:
    metadata = {}
    for pair in pairs or []:
        key, separator, value = pair.partition("=")
        if not separator:
            raise fail(f"metadata {pair!r} is not KEY=VALUE", 2)
        metadata[key] = value
    return metadata


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


def render_account(account: Any) -> None:
    table = Table(show_header=False, box=None)
    for field in (
        "id", "name", "currency", "status", "balance", "available_balance",
        "pending_debits", "pending_credits", "overdraft_limit", "version",
    ):  # fmt: skip
        table.add_row(field, str(getattr(account, field)))
    table.add_row("metadata", json.dumps(account.metadata))
    stdout.print(table)


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


def render_history(events: list[Any]) -> None:
    table = Table("version", "time", "event", "amount", "balance", "transfer")
    for column in table.columns:
        column.no_wrap = True
    balance = 0
    for event in events:
        data = event.data
        amount = ""
        if event.type in ("Credited", "Debited"):
            balance = data["balance_after"]
            sign = "+" if event.type == "Credited" else "-"
            amount = f"{sign}{data['amount']}"
        elif "amount" in data:
            amount = f"({data['amount']})"
        table.add_row(
            str(event.version),
            event.timestamp.isoformat(timespec="seconds"),
            event.type,
            amount,
            str(balance),
            str(data.get("transfer_id", "")),
        )
    stdout.print(table)


@accounts_app.command("open")
def accounts_open(
    currency: Annotated[str, typer.Argument(help="ISO 4217 code, like USD.")],
    name: Annotated[str, typer.Option("--name", "-n")] = "",
    overdraft_limit: Annotated[int, typer.Option("--overdraft-limit", min=0)] = 0,
    metadata: MetadataOption = None,
    account_id: Annotated[UUID | None, typer.Option("--id")] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open an account."""
    with open_ledger(database) as ledger:
        account = ledger.open_account(
            currency, name, parse_metadata(metadata), overdraft_limit, account_id
        )
    emit(account, as_json, render_account)


@accounts_app.command("show")
def accounts_show(
    account_id: UUID, database: DatabaseOption = None, as_json: JsonOption = False
) -> None:
    """Show an account's current state, from its events."""
    with open_ledger(database) as ledger:
        account = ledger.get_account(account_id)
    emit(account, as_json, render_account)


@app.command()
def deposit(
    account_id: UUID,
    amount: Annotated[int, typer.Argument(help="Minor units (cents).")],
    description: DescriptionOption = "",
    metadata: MetadataOption = None,
    transfer_id: IdOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move money into an account from the outside world."""
    with open_ledger(database) as ledger:
        transfer = ledger.deposit(
            account_id, amount, description, parse_metadata(metadata), transfer_id
        )
    emit(transfer, as_json, render_transfer)


@app.command()
def withdraw(
    account_id: UUID,
    amount: Annotated[int, typer.Argument(help="Minor units (cents).")],
    description: DescriptionOption = "",
    metadata: MetadataOption = None,
    transfer_id: IdOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move money out of an account to the outside world."""
    with open_ledger(database) as ledger:
        transfer = ledger.withdraw(
            account_id, amount, description, parse_metadata(metadata), transfer_id
        )
    emit(transfer, as_json, render_transfer)


@app.command()
def transfer(
    from_account: UUID,
    to_account: UUID,
    amount: Annotated[int, typer.Argument(help="Minor units (cents).")],
    currency: Annotated[
        str, typer.Option("--currency", "-c", help="Defaults to the payer's.")
    ] = "",
    description: DescriptionOption = "",
    metadata: MetadataOption = None,
    transfer_id: IdOption = None,
    pending: Annotated[
        bool, typer.Option("--pending", help="Reserve now; `post` or `void` it later.")
    ] = False,
    timeout_seconds: Annotated[
        int | None, typer.Option("--timeout-seconds", help="Void a pending one after this.")
    ] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move money between two accounts (or reserve it, with --pending)."""
    with open_ledger(database) as ledger:
        currency = currency or ledger.get_account(from_account).currency
        result = ledger.transfer(
            from_account, to_account, amount, currency, description,
            parse_metadata(metadata), transfer_id,
            pending=pending, timeout_seconds=timeout_seconds,
        )  # fmt: skip
    emit(result, as_json, render_transfer)


@app.command()
def history(
    account_id: UUID,
    at: Annotated[
        datetime | None,
        typer.Option("--at", help="Show the history up to this instant (UTC if no zone)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 1000,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Events of an account, oldest first, with the running balance."""
    with open_ledger(database) as ledger:
        if at is not None:
            moment = at if at.tzinfo else at.replace(tzinfo=UTC)
            last = ledger.balance_at(account_id, at=moment).version
            events = ledger.account_events(account_id, limit=min(limit, last))
        else:
            events = ledger.account_events(account_id, limit=limit)
    emit(events, as_json, render_history)


from api.cli_keys import keys_app  # noqa: E402 - registered after the commands above
from api.cli_serve import serve  # noqa: E402

app.command()(serve)
app.add_typer(keys_app, name="keys")
app.add_typer(__import__("api.cli_projections").cli_projections.projections_app, name="projections")
app.add_typer(__import__("api.cli_audit").cli_audit.audit_app, name="audit")
__import__("api.cli_transfers")  # registers post, void, reverse, batch on ``app``


def main() -> None:
    app()
