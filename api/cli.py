"""The ``eventledger`` command line.

Human-readable output by default, ``--json`` for scripts. A ``LedgerError`` or a bad
setting prints one line to stderr and exits non-zero, with no traceback.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import typer

from api.cli_audit import audit_app
from api.cli_history import render_history
from api.cli_keys import keys_app
from api.cli_projections import projections_app
from api.cli_serve import serve
from api.cli_support import (
    DatabaseOption,
    JsonOption,
    LedgerGroup,
    emit,
    fail,
    ledger_typer,
    load_settings,
    open_ledger,
    open_views,
    render_transfer,
    stdout,
)
from api.cli_transfers import batch, post, reverse, void

app = typer.Typer(
    name="eventledger",
    help="An event-sourced, double-entry money ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=LedgerGroup,
)
accounts_app = ledger_typer("Open, show and list accounts.")
app.add_typer(accounts_app, name="accounts")


def version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"eventledger {version('eventledger')}")
        except PackageNotFoundError:
            raise fail("eventledger is not installed (pip install -e .)") from None
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """An event-sourced, double-entry money ledger."""


DescriptionOption = Annotated[str, typer.Option("--description", "-d", help="Free text.")]
IdOption = Annotated[
    UUID | None, typer.Option("--id", help="Transfer id; the same id again is a safe retry.")
]
MetadataOption = Annotated[
    list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE, repeatable.")
]


# Soft wrap: ids and amounts stay on one line when piped, so they can be grepped.
def parse_metadata(pairs: list[str] | None) -> dict[str, str]:
    metadata = {}
    for pair in pairs or []:
        key, separator, value = pair.partition("=")
        if not separator:
            raise fail(f"metadata {pair!r} is not KEY=VALUE", 2)
        metadata[key] = value
    return metadata


def render_account(account: Any) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for field in (
        "id", "name", "currency", "status", "balance", "available_balance",
        "pending_debits", "pending_credits", "overdraft_limit", "version",
    ):  # fmt: skip
        table.add_row(field, str(getattr(account, field)))
    table.add_row("metadata", json.dumps(account.metadata))
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
    """Open an account (creates the ledger if there is none yet)."""
    with open_ledger(database, create=True) as ledger:
        account = ledger.open_account(
            currency, name, parse_metadata(metadata), overdraft_limit, account_id
        )
    emit(account, as_json, render_opened)


def render_opened(account: Any) -> None:
    """Says whether this command opened the account or found it opened before."""
    if account.replayed:
        said = "already open (replayed: this id was used before, nothing changed)"
    else:
        said = "opened"
    stdout.print(f"account {account.id} {said}", highlight=False)
    render_account(account)


@accounts_app.command("show")
def accounts_show(
    account_id: UUID, database: DatabaseOption = None, as_json: JsonOption = False
) -> None:
    """Show an account's current state, from its events."""
    with open_ledger(database) as ledger:
        account = ledger.get_account(account_id)
    emit(account, as_json, render_account)


@accounts_app.command("list")
def accounts_list(
    currency: Annotated[str | None, typer.Option("--currency", "-c")] = None,
    status: Annotated[str | None, typer.Option("--status", help="open, frozen or closed.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    cursor: Annotated[str | None, typer.Option("--cursor", help="next_cursor of a page.")] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """List accounts from the balances view, brought up to date with the log first."""
    from projections.catalog import select_projections
    from projections.follower import follower_for
    from projections.queries import ReadModels

    with open_ledger(database) as ledger:
        store = open_views(load_settings(database_url=database))
        try:
            follower_for(ledger, store, select_projections(["balances"])).catch_up()
            page = ReadModels(store, ledger.head_position).list_accounts(
                currency, status, cursor, limit
            )
        finally:
            store.close()
    emit(page, as_json, render_account_page)


def render_account_page(page: Any) -> None:
    from rich.table import Table

    table = Table("id", "name", "currency", "status", "balance", "available")
    table.columns[0].min_width = 36  # whole ids, so they can be copied
    for row in page.items:
        table.add_row(
            str(row.id), row.name, row.currency, row.status, str(row.balance),
            str(row.available_balance),
        )  # fmt: skip
    stdout.print(table)
    if page.next_cursor:
        stdout.print(f"more: --cursor {page.next_cursor}", highlight=False)


def _money_command(name: str, help_text: str) -> None:
    """``deposit`` or ``withdraw``: a transfer between an account and the world."""

    @app.command(name=name, help=help_text)
    def command(
        account_id: UUID,
        amount: Annotated[int, typer.Argument(help="Minor units (cents).")],
        description: DescriptionOption = "",
        metadata: MetadataOption = None,
        transfer_id: IdOption = None,
        database: DatabaseOption = None,
        as_json: JsonOption = False,
    ) -> None:
        with open_ledger(database) as ledger:
            move = ledger.deposit if name == "deposit" else ledger.withdraw
            transfer = move(account_id, amount, description, parse_metadata(metadata), transfer_id)
        emit(transfer, as_json, render_transfer)


_money_command("deposit", "Move money into an account from the outside world.")
_money_command("withdraw", "Move money out of an account to the outside world.")


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
    emit(events, as_json, lambda shown: render_history(shown, stdout))


app.command()(serve)
for command in (post, void, reverse, batch):
    app.command()(command)
app.add_typer(keys_app, name="keys")
app.add_typer(projections_app, name="projections")
app.add_typer(audit_app, name="audit")


def main() -> None:
    app()
