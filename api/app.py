"""The FastAPI application factory.

``create_app(settings)`` builds nothing at import time: the lifespan builds the Ledger
and the API-key store and keeps them on ``app.state``. Each module in ``ROUTERS``
exposes a ``router``; one that also has a ``lifespan(app)`` (an async context manager:
the projection follower, the pending-transfer sweeper) runs it inside ours, after
the ledger is built.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import datetime
from functools import partial
from types import ModuleType
from typing import Any

from anyio import to_thread
from fastapi import FastAPI

from api.auth import may_run_open
from api.errors import install_error_handlers, move_problems_to_problem_json
from api.header_limit import HeaderSizeLimit
from api.keystore import ActiveKeys, build_keystore
from api.logs import QUEUED_LOGGERS, queued_handlers
from api.metrics import Metrics
from api.middleware import BodySizeLimit, RequestMetrics
from api.openapi_replays import document_replays
from api.ratelimit import build_rate_limiter
from api.routers import accounts, audit, operations, read_models, transfers
from api.strict_json import StrictJsonBodies
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings

logger = logging.getLogger(__name__)

# Routes are matched in this order: the busiest (transfers) first.
ROUTERS: tuple[ModuleType, ...] = (transfers, accounts, read_models, operations, audit)
# A batch of 1000 transfers cannot fit in 64 KiB; it alone may send up to 1 MiB.
BATCH_BODY_SIZE_MAX_BYTES = 1024 * 1024

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
        lifespan=_lifespan_with(ROUTERS),
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.metrics = metrics = Metrics()
    app.state.rate_limiter = build_rate_limiter(settings)
    metrics.follow_conflict_retries(lambda: _conflict_retries(app))
    install_error_handlers(app)
    for router_module in ROUTERS:
        app.include_router(router_module.router)
    # Inside the body limit, so the body it reads whole is bounded.
    app.add_middleware(StrictJsonBodies)
    # Added last = outermost: the limit answers before routing, metrics see it all.
    app.add_middleware(
        BodySizeLimit,
        size_max_bytes=settings.request_body_size_max_bytes,
        size_max_bytes_by_path={"/v1/transfers/batch": BATCH_BODY_SIZE_MAX_BYTES},
    )
    app.add_middleware(HeaderSizeLimit)
    app.add_middleware(RequestMetrics, metrics=metrics)
    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        return document_replays(move_problems_to_problem_json(original_openapi()))

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def create_app_from_environment() -> FastAPI:
    """The uvicorn factory of ``serve --workers N``: settings from EVENTLEDGER_*."""
    return create_app(Settings())


def _lifespan_with(
    plugins: tuple[ModuleType, ...],
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        keystore = await to_thread.run_sync(build_keystore, settings)
        try:
            await to_thread.run_sync(_check_open_mode, settings, keystore.has_active())
            app.state.keystore = keystore
            app.state.active_keys = ActiveKeys(keystore)
            app.state.ledger = ledger = await to_thread.run_sync(
                partial(build_ledger, settings, clock=app.state.clock)
            )
            try:
                async with AsyncExitStack() as stack:
                    stack.enter_context(queued_handlers(*QUEUED_LOGGERS))
                    for plugin in plugins:
                        if hasattr(plugin, "lifespan"):
                            await stack.enter_async_context(plugin.lifespan(app))
                    yield
            finally:
                ledger.close()
        finally:
            keystore.close()

    return lifespan


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
