"""The FastAPI application factory.

``create_app(settings)`` builds nothing at import time. Its lifespan starts, in this
order: the API-key store, the Ledger, the log queue, then the background parts
(the projection runner with the read models' views, the ``audit_chain`` follower
with its views, the pending-transfer expiry sweeper), keeping each on ``app.state``.
Shutdown stops them in the reverse order, and a part that fails to start stops the
ones started before it. The sweeper writes (it voids expired transfers), so it
starts after the followers and stops before them.
"""

from __future__ import annotations

import copy
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Any

import psycopg
from anyio import to_thread
from fastapi import APIRouter, FastAPI

from api.auth import ActiveKeys, may_run_open
from api.docs_ui import install_docs
from api.errors import ProblemDetails, install_error_handlers
from api.header_limit import HeaderSizeLimit
from api.logs import QUEUED_LOGGERS, queued_handlers
from api.metrics import Metrics
from api.middleware import BodyLimits, RequestBodies, RequestMetrics
from api.openapi_exact import document_exact_values
from api.openapi_links import document_links
from api.openapi_problems import document_problems
from api.openapi_replays import document_replays
from api.ratelimit import build_rate_limiter
from api.routers import accounts, audit, operations, read_models, root, transfers
from api.strict_json import parse_limiter
from domain.ledger import Ledger
from infrastructure.api_keys import build_keystore
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from infrastructure.views import ViewStore
from projections.audit import Audit
from projections.catalog import all_projections, select_projections
from projections.expiry import PendingExpirySweeper
from projections.queries import ReadModels
from projections.runner import ProjectionRunner

logger = logging.getLogger(__name__)

# Routes are matched in this order: the busiest (transfers) first.
ROUTERS: tuple[APIRouter, ...] = (
    transfers.router,
    accounts.router,
    read_models.router,
    operations.router,
    audit.router,
    root.router,
)
AUDIT_FOLLOWER_JOIN_SECONDS = 10
# Body size limits by route (api.middleware.RequestBodies). The routes that take
# metadata get ``request_body_size_max_bytes`` (64 KiB): their largest valid body in
# compact JSON is 28 KB in ASCII, 55 KB in two-byte UTF-8 (Latin, Greek, Cyrillic), up to
# 110 KB in four-byte UTF-8 and 330 KB \u-escaped. A batch of 1,000 transfers does not
# fit in 64 KiB: it alone may send 1 MiB (1 KiB a transfer). The routes whose bodies
# hold a few fields get 8 KiB, above their largest valid body even \u-escaped (/post
# 27 bytes, /verify 97, /reverse 6,088). tests/api/test_body_limits.py checks these.
SMALL_BODY_SIZE_MAX_BYTES = 8 * 1024
BODY_SIZE_MAX_BYTES_BY_ROUTE = {
    "/v1/transfers/batch": 1024 * 1024,
    "/v1/transfers/{transfer_id}/post": SMALL_BODY_SIZE_MAX_BYTES,
    "/v1/transfers/{transfer_id}/reverse": SMALL_BODY_SIZE_MAX_BYTES,
    "/v1/audit/verify": SMALL_BODY_SIZE_MAX_BYTES,
}

DESCRIPTION = """\
An event-sourced, double-entry money ledger. Amounts are JSON integers of minor units.
Errors are RFC 9457 `application/problem+json` documents with a stable `code`.
Authenticate with `Authorization: Bearer <key>` (keys: `eventledger keys create`).
"""


class OpenModeRefused(RuntimeError):
    """No API key exists and the server is bound beyond loopback."""


def create_app(settings: Settings, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The app on ``settings``; ``clock`` decides when pending transfers expire (tests
    inject one, so no test waits for a timeout to pass)."""
    app = FastAPI(
        title="eventledger",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served from the package instead (api/docs_ui.py): these load from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    app.state.settings = settings
    app.state.clock = clock
    app.state.metrics = metrics = Metrics()
    app.state.json_parse_limiter = parse_limiter()
    app.state.rate_limiter = build_rate_limiter(settings)
    metrics.follow_conflict_retries(lambda: _conflict_retries(app))
    metrics.follow_projections(lambda: _projection_states(app))
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # Added last = outermost: metrics see every answer; the header limit answers before
    # routing; the body bounds apply when the route reads the body, after auth.
    app.add_middleware(RequestBodies, limits=_body_limits(settings))
    app.add_middleware(HeaderSizeLimit)
    app.add_middleware(RequestMetrics, metrics=metrics)
    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # A copy: FastAPI caches the document, and a caller (schemathesis) may change
        # what it is given.
        document = copy.deepcopy(original_openapi())
        document = document_problems(document)
        document = document_exact_values(document, ROUTERS, ProblemDetails)
        return document_links(document_replays(document))

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _body_limits(settings: Settings) -> BodyLimits:
    return BodyLimits(
        size_max_bytes=settings.request_body_size_max_bytes,
        size_max_bytes_by_route=BODY_SIZE_MAX_BYTES_BY_ROUTE,
        in_flight_max=settings.request_bodies_in_flight_max,
        queue_timeout_seconds=settings.request_body_queue_timeout_seconds,
        timeout_seconds=settings.request_body_timeout_seconds,
    )


def create_app_from_environment() -> FastAPI:
    """The uvicorn factory of ``serve --workers N``: settings from EVENTLEDGER_*."""
    return create_app(Settings())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Starts each part in order; the exit stack stops those started, last first."""
    settings: Settings = app.state.settings
    async with AsyncExitStack() as started:
        await started.enter_async_context(_keystore(app, settings))
        ledger = await started.enter_async_context(_ledger(app, settings))
        started.enter_context(queued_handlers(*QUEUED_LOGGERS))
        await started.enter_async_context(_read_models(app, settings, ledger))
        await started.enter_async_context(_audit(app, settings, ledger))
        await started.enter_async_context(_expiry_sweeper(settings, ledger))
        yield


@asynccontextmanager
async def _keystore(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """The API keys; with none, the server may run open only where ``may_run_open``."""
    keystore = await to_thread.run_sync(build_keystore, settings)
    try:
        has_keys = await to_thread.run_sync(keystore.has_active)
        await to_thread.run_sync(_check_open_mode, settings, has_keys)
        app.state.keystore = keystore
        app.state.active_keys = ActiveKeys(keystore)
        yield
    finally:
        keystore.close()


@asynccontextmanager
async def _ledger(app: FastAPI, settings: Settings) -> AsyncIterator[Ledger]:
    app.state.ledger = ledger = await to_thread.run_sync(
        partial(build_ledger, settings, clock=app.state.clock)
    )
    try:
        yield ledger
    finally:
        ledger.close()


@asynccontextmanager
async def _read_models(app: FastAPI, settings: Settings, ledger: Ledger) -> AsyncIterator[None]:
    """The read models' views and, unless ``run_projections`` is off (``serve
    --no-projections``, when ``eventledger projections run`` follows elsewhere), the
    projection runner that keeps them at the log's head."""
    views = await to_thread.run_sync(ViewStore.from_settings, settings)
    runner: ProjectionRunner | None = None
    try:
        if settings.run_projections:
            runner = await to_thread.run_sync(_build_runner, settings, ledger, views)
            runner.start()
        wake = runner.wake if runner is not None else None
        app.state.read_models = await to_thread.run_sync(
            ReadModels, views, ledger.head_position, wake
        )
        app.state.projection_runner = runner
        yield
    finally:
        if runner is not None:
            await to_thread.run_sync(runner.stop)
        views.close()


def _build_runner(settings: Settings, ledger: Ledger, views: ViewStore) -> ProjectionRunner:
    return ProjectionRunner(
        ledger,
        views,
        select_projections(),
        events_database=settings.database,
        batch_size=settings.projections_batch_size,
        poll_interval_seconds=settings.projections_poll_interval_seconds,
    )


@asynccontextmanager
async def _audit(app: FastAPI, settings: Settings, ledger: Ledger) -> AsyncIterator[None]:
    """The audit on views of its own and, unless ``run_projections`` is off, a thread
    that keeps the ``audit_chain`` projection at the log's head."""
    views = await to_thread.run_sync(ViewStore.from_settings, settings)
    stop = threading.Event()
    follower: threading.Thread | None = None
    try:
        app.state.audit = audit = await to_thread.run_sync(Audit, ledger, views)
        app.state.audit_verify_lock = threading.Lock()
        if settings.run_projections:
            follower = threading.Thread(
                target=audit.follow,
                args=(stop, settings.projections_poll_interval_seconds),
                name="audit-chain-follower",
                daemon=True,
            )
            follower.start()
        yield
    finally:
        stop.set()
        if follower is not None:
            await to_thread.run_sync(follower.join, AUDIT_FOLLOWER_JOIN_SECONDS)
        views.close()


@asynccontextmanager
async def _expiry_sweeper(settings: Settings, ledger: Ledger) -> AsyncIterator[None]:
    """Voids expired pending transfers in the background (see projections.expiry),
    unless ``pending_sweep_interval_seconds`` is 0."""
    if not settings.pending_sweep_interval_seconds:
        yield
        return
    sweeper = PendingExpirySweeper(ledger, settings.pending_sweep_interval_seconds)
    sweeper.start()
    try:
        yield
    finally:
        await to_thread.run_sync(sweeper.stop)


def _check_open_mode(settings: Settings, has_keys: bool) -> None:
    if has_keys:
        return
    if not may_run_open(settings):
        raise OpenModeRefused(
            f"no API key exists and {settings.host} is not a loopback address: create one "
            "with `eventledger keys create --scope admin`, or pass --insecure-no-auth"
        )
    logger.warning(
        "no API key exists: the API is open to anyone who can reach %s:%s "
        "(create one with `eventledger keys create --scope admin`)",
        settings.host,
        settings.port,
    )


def _conflict_retries(app: FastAPI) -> int:
    ledger = getattr(app.state, "ledger", None)
    return ledger.conflict_retries if ledger is not None else 0


def _projection_states(app: FastAPI) -> list[tuple[str, int | None]]:
    """(name, stalled position or None) of each projection, for /metrics; nothing when
    the views cannot be read (the scrape still answers, without these gauges)."""
    read_models = getattr(app.state, "read_models", None)
    if read_models is None:
        return []
    try:
        failures = read_models.failures()
    except (sqlite3.Error, psycopg.Error):
        logger.warning("metrics: the views cannot be read", exc_info=True)
        return []
    names = list(all_projections())
    names += sorted(name for name in failures if name not in names)
    return [(name, failures[name].position if name in failures else None) for name in names]
