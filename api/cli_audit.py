"""``eventledger audit digest|verify|rechain``: the hash chain's head, a full
verification, and re-chaining the log as it is.

``verify`` exits 0 only if everything holds, 1 when it found a problem, 2 on bad
input (a malformed digest), 3 when the store cannot be opened or has no ledger.
``digest`` exits 1 when the store's chain is of the legacy algorithm and the log no
longer matches it (verify says where). The progress bar goes to stderr, so ``--json``
output on stdout stays machine-readable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli_support import (
    EXIT_USAGE,
    DatabaseOption,
    JsonOption,
    fail,
    ledger_typer,
    load_settings,
    open_store,
    open_views,
    stderr,
    stdout,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from projections.audit import Audit
    from projections.audit.problems import VerifyResult

audit_app = ledger_typer("Digest of the hash chain; verification of the whole log.")
PROBLEMS_SHOWN_MAX = 20


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Audit commands exit 2 on bad input, 3 on an unreachable store (see
    api.cli_support), 1 on problems found."""
    return fail(message, code)


@contextmanager
def open_audit(database: str | None) -> Iterator[Audit]:
    """The audit of an existing ledger; a store with no ledger is refused."""
    from eventsourcing.persistence import PersistenceError

    from infrastructure.persistence import build_ledger
    from projections.audit import Audit

    settings = load_settings(database_url=database)
    ledger = open_store(settings, build_ledger, create=False)
    views = None
    try:
        views = open_views(settings)
        yield Audit(ledger, views)
    except PersistenceError as error:
        raise _fail(f"storage error: {error}", 1) from None
    finally:
        if views is not None:
            views.close()
        ledger.close()


@audit_app.command("digest")
def digest(database: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """Print the chain's head as HASH@POSITION: keep it outside the database."""
    from projections.audit import ChainMoving, ChainUpgradeBlocked

    with open_audit(database) as audit:
        try:
            head = audit.digest()
        except (ChainUpgradeBlocked, ChainMoving) as error:
            raise _fail(str(error), 1) from None
    _print_digest(head, as_json)


def _print_digest(head: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({key: head[key] for key in ("position", "hash", "algorithm")}))
        return
    stdout.print(head["digest"], highlight=False)
    stderr.print(
        f"{head['algorithm']}, {head['events']} events up to position {head['position']}",
        highlight=False,
    )


@audit_app.command("rechain")
def rechain(
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: chain the log as it is now.")
    ] = False,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Empty the chain and chain the log as it is now; print the new digest.

    For a store whose legacy chain the log no longer matches, once you have looked
    at why (`audit verify`), or after repairing the log on purpose. Digests taken
    before still verify, or show what changed since.
    """
    from projections.audit import ChainMoving

    if not yes:
        raise _fail("this re-chains the log as it is now, changes included: pass --yes")
    with open_audit(database) as audit:
        try:
            head = audit.rechain()
        except ChainMoving as error:
            raise _fail(str(error), 1) from None
    _print_digest(head, as_json)


@audit_app.command("verify")
def verify(
    digest_text: Annotated[
        str | None,
        typer.Option("--digest", help="HASH@POSITION from an earlier `audit digest`."),
    ] = None,
    chain_only: Annotated[
        bool, typer.Option("--chain-only", help="Check the chain only, no invariants.")
    ] = False,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute the chain from every stored event and check the ledger's invariants."""
    from projections.audit.hashing import parse_digest

    try:
        digest = None if digest_text is None else parse_digest(digest_text)
    except ValueError as error:
        raise _fail(str(error)) from None
    with open_audit(database) as audit, _progress() as progress:
        task = progress.add_task("verifying", total=audit.head_position() or None)
        result = audit.verify(
            digest,
            invariants=not chain_only,
            progress=lambda done: progress.advance(task, done),
        )
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        _render(result)
    raise typer.Exit(0 if result.ok else 1)


def _progress() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class EventsPerSecondColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f} events/s")

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        EventsPerSecondColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    )


def _render(result: VerifyResult) -> None:
    head = result.head
    if result.ok:
        stdout.print(
            f"[green]OK[/green]: {result.events_checked} events verified "
            f"({', '.join(result.checks)}); head {head['hash']}@{head['position']}",
            highlight=False,
        )
        return
    total = len(result.problems) + result.problems_dropped
    first = result.problems[0]
    stdout.print(
        f"[red]FAILED[/red]: {total} problem(s) in {result.events_checked} events; first at "
        f"position {first.position}"
        + (f", account {first.account_id}" if first.account_id else "")
        + f": {first.detail}",
        highlight=False,
    )
    from rich.table import Table

    table = Table("position", "check", "account", "detail")
    for problem in result.problems[:PROBLEMS_SHOWN_MAX]:
        row: list[Any] = [problem.position, problem.check, problem.account_id, problem.detail]
        table.add_row(*("" if value is None else str(value) for value in row))
    stdout.print(table)
    if total > PROBLEMS_SHOWN_MAX:
        stdout.print(f"... and {total - PROBLEMS_SHOWN_MAX} more (--json lists up to 1000)")
