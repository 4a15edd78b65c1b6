"""``eventledger serve``: the HTTP API under uvicorn.

One worker runs the app object built here. ``--workers N`` runs N uvicorn processes
from the import string of the app factory; the settings reach them as EVENTLEDGER_*
environment variables. Before binding, the store is opened once (tables created, a bad
URL fails fast) and the key rule is checked: without any API key the server only runs
on a loopback address, unless ``--insecure-no-auth``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli_support import EXIT_USAGE, fail, ledger_keys, load_settings, open_store

if TYPE_CHECKING:
    from infrastructure.settings import Settings

FACTORY = "api.app:create_app_from_environment"


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
    database: Annotated[
        str | None,
        typer.Option(
            help="sqlite:///path, postgresql://... or memory:// "
            "(default sqlite:///./data/eventledger.db)."
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth", help="Serve without API keys on a non-loopback address."
        ),
    ] = False,
    no_projections: Annotated[
        bool,
        typer.Option("--no-projections", help="Don't run the in-process projection follower."),
    ] = False,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs)."""
    overrides: dict[str, Any] = {
        "host": host, "port": port, "workers": workers, "database_url": database,
    }  # fmt: skip
    overrides = {name: value for name, value in overrides.items() if value is not None}
    if insecure_no_auth:
        overrides["insecure_no_auth"] = True
    if no_projections:
        overrides["run_projections"] = False
    settings = load_settings(**overrides)
    _check_store_and_keys(settings)
    # Imported here rather than at the top, so every other command starts faster.
    import uvicorn

    from api.app import create_app
    from api.http_protocol import http_protocol

    # uvicorn's own protocol with a deadline and a size bound for request heads.
    server = {"host": settings.host, "port": settings.port, "http": http_protocol(settings)}
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **server)
        return
    if settings.database.kind == "memory":
        raise fail("memory:// is per process: use one worker, or sqlite/postgresql", EXIT_USAGE)
    for name, value in overrides.items():
        os.environ[f"EVENTLEDGER_{name.upper()}"] = str(value)
    uvicorn.run(FACTORY, factory=True, workers=settings.workers, **server)


def _check_store_and_keys(settings: Settings) -> None:
    """Opens the store once (creating the ledger if there is none: a server writes),
    then applies the key rule."""
    from api.auth import may_run_open

    keystore = open_store(settings, ledger_keys, create=True)
    try:
        has_keys = keystore.has_active()
    finally:
        keystore.close()
    if not has_keys and not may_run_open(settings):
        raise fail(
            f"no API key exists and {settings.host} is not a loopback address; create one "
            "with `eventledger keys create --scope admin`, or pass --insecure-no-auth",
            EXIT_USAGE,
        )
