"""``eventledger projections run|status|rebuild [NAME...]``: the read models' CLI.

``run`` follows the log in the foreground until SIGINT/SIGTERM (the production runner;
``eventledger serve`` has the same follower in-process). ``status`` shows each view's
position, the log head, the lag and, for a view stalled before an event it cannot
apply, where and why (it exits 1 then). ``rebuild`` replays the log into fresh tables with
a progress bar and swaps them in; interrupted, the next ``rebuild`` resumes it.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli_support import (
    EXIT_STORE,
    EXIT_USAGE,
    JsonOption,
    cannot_open,
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

    from domain.ledger import Ledger
    from infrastructure.settings import Settings
    from infrastructure.views import ViewStore
    from projections.base import Projection

projections_app = ledger_typer("Run, inspect and rebuild the read models.")

NamesArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Projections by name (`projections status` lists them); default all."),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", help="Events database URL; default EVENTLEDGER_DATABASE_URL."),
]
ViewsDatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--views-database",
        help="Views database URL; default EVENTLEDGER_VIEWS_DATABASE_URL, else beside the events.",
    ),
]
# projections.rebuild.REBUILD_BATCH_SIZE (tests/api/test_cli_start.py checks), here so
# that the help is written without importing the projections.
REBUILD_BATCH_SIZE = 5000


def _settings(database: str | None, views_database: str | None, **overrides: object) -> Settings:
    return load_settings(database_url=database, views_database_url=views_database, **overrides)


# ``projections.audit.chain.NAME``, written out: importing the audit package here would
# cost every projections command its start-up time (a test checks the two agree).
AUDIT_CHAIN = "audit_chain"
# Listed by ``status`` but never rebuilt, and why.
NOT_REBUILT = {
    AUDIT_CHAIN: "audit_chain is append-only and is not rebuilt: its checkpoints record "
    "the log as it was when they were written, and recomputing them from today's events "
    "would seal any tampering into a fresh chain. `eventledger audit verify` checks it "
    "against the events."
}


def _projections(names: list[str] | None) -> list[Projection]:
    from projections.catalog import select_projections

    for name in names or ():
        if name in NOT_REBUILT:
            raise fail(NOT_REBUILT[name], 2)
    try:
        return select_projections(names or ())
    except ValueError as error:
        raise fail(str(error), EXIT_USAGE) from None


@contextmanager
def _open(settings: Settings, *, create: bool) -> Iterator[tuple[Ledger, ViewStore]]:
    """The ledger and its views. ``create=False`` (``status``) refuses a store with no
    ledger, and views that were never built; ``run`` and ``rebuild`` create both."""
    from infrastructure.persistence import build_ledger
    from infrastructure.store_presence import VIEWS_TABLE, has_table, location
    from infrastructure.views import views_database

    if settings.database.kind == "memory":
        raise fail("memory:// lives inside one process; use sqlite:/// or postgresql://", 2)
    try:
        views = views_database(settings)
    except ValueError as error:
        raise fail(str(error), EXIT_USAGE) from None
    ledger = open_store(settings, build_ledger, create=create)
    try:
        with cannot_open(views):
            if not create and not has_table(views, VIEWS_TABLE):
                raise fail(
                    f"no read models at {location(views)}; `eventledger projections rebuild` "
                    "(or `serve`, `projections run`) builds them",
                    EXIT_STORE,
                )
        store = open_views(settings, create=True)  # checked just above
    except BaseException:
        ledger.close()
        raise
    try:
        yield ledger, store
    finally:
        store.close()
        ledger.close()


@projections_app.command("run")
def run(
    names: NamesArgument = None,
    database: DatabaseOption = None,
    views_database: ViewsDatabaseOption = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=100_000)] = None,
    poll_interval: Annotated[
        float | None, typer.Option(min=0.01, max=60, help="Seconds between polls.")
    ] = None,
) -> None:
    """Follow the log and keep the views current, until SIGINT or SIGTERM."""
    settings = _settings(
        database,
        views_database,
        projections_batch_size=batch_size,
        projections_poll_interval_seconds=poll_interval,
    )
    from projections.runner import ProjectionRunner

    projections = _projections(names)
    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with _open(settings, create=True) as (ledger, store):
        runner = ProjectionRunner(
            ledger,
            store,
            projections,
            events_database=settings.database,
            batch_size=settings.projections_batch_size,
            poll_interval_seconds=settings.projections_poll_interval_seconds,
        )
        runner.start()
        how = "LISTEN/NOTIFY and polling" if runner.listener else "polling"
        stderr.print(
            f"following {settings.database!r} into {store.database!r} "
            f"({', '.join(p.name for p in projections)}; {how})",
            highlight=False,
        )
        while not stop.wait(0.5):
            if not runner.is_alive:
                raise fail("the follower stopped; see the log above")
        runner.stop()


@projections_app.command("status")
def status(
    database: DatabaseOption = None,
    views_database: ViewsDatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Each view's position, the log head and the lag; exits 1 if a view is stalled."""
    from projections.queries import ReadModels

    settings = _settings(database, views_database)
    with _open(settings, create=False) as (ledger, store):
        rows = ReadModels(store, ledger.head_position).status()
    stalled = [row.stalled for row in rows if row.stalled is not None]
    if as_json:
        print(json.dumps([asdict(row) for row in rows], indent=2, default=str))
    else:
        _print_status(rows, stalled)
    if stalled:
        raise typer.Exit(1)


def _print_status(rows: list[Any], stalled: list[Any]) -> None:
    from rich.table import Table

    table = Table("name", "position", "head", "lag", "rebuilding", "stalled")
    for row in rows:
        rebuilding = "" if row.rebuilding is None else f"at {row.rebuilding}"
        if row.name in NOT_REBUILT:
            rebuilding = "never (append-only)"
        failure = "" if row.stalled is None else f"at {row.stalled.position}"
        table.add_row(row.name, str(row.position), str(row.head), str(row.lag), rebuilding, failure)
    stdout.print(table)
    for name in sorted(NOT_REBUILT.keys() & {row.name for row in rows}):
        stdout.print(NOT_REBUILT[name], highlight=False)
    for failure in stalled:
        stdout.print(f"[red]stalled[/red]: {failure.describe()}", highlight=False)


@projections_app.command("rebuild")
def rebuild_command(
    names: NamesArgument = None,
    database: DatabaseOption = None,
    views_database: ViewsDatabaseOption = None,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000)] = REBUILD_BATCH_SIZE,
    as_json: JsonOption = False,
) -> None:
    """Replay the log into fresh tables and swap them in; resumes an interrupted one."""
    from projections.follower import ProjectionStalled
    from projections.rebuild import rebuild

    settings = _settings(database, views_database)
    projections = _projections(names)
    with _open(settings, create=True) as (ledger, store), _progress_bar() as progress:
        task = progress.add_task("rebuild", total=None, rate="")
        started = time.monotonic()

        def on_progress(done: int, total: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=done, total=total, rate=f"{done / elapsed:,.0f}")

        try:
            report = rebuild(
                ledger, store, projections, batch_size=batch_size, progress=on_progress
            )
        except KeyboardInterrupt:
            raise fail("interrupted; run the same command again to resume", 130) from None
        except ProjectionStalled as stalled:
            raise fail(
                f"the rebuild stopped: {stalled}; the live views are unchanged, and the "
                "same command resumes once the event can be applied",
                1,
            ) from None
    summary = {**asdict(report), "events_per_second": round(report.events_per_second)}
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    resumed = f", resumed from {report.resumed_from}" if report.resumed_from else ""
    verdict = "swapped in" if report.swapped else "NOT swapped (the live views kept moving)"
    stdout.print(
        f"rebuilt {', '.join(report.names)}: {report.events:,} events in "
        f"{report.seconds:.1f}s ({report.events_per_second:,.0f} events/s){resumed}; "
        f"{verdict} at position {report.position}",
        highlight=False,
    )
    if not report.swapped:
        raise typer.Exit(1)


def _progress_bar() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events  {task.fields[rate]} events/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    )


if __name__ == "__main__":
    # ``python -m api.cli_projections run`` is ``eventledger projections run`` without
    # the HTTP stack's imports (half the start-up time; the crash tests start it often).
    projections_app()
