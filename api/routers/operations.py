"""Liveness, readiness and Prometheus metrics; open to scrapers, no key needed.

``/readyz`` is not ready (503) while the event store or the views database does not
answer: then this process cannot serve. A view stalled before an event it cannot apply
(``projection_stalled``), or this process's projection thread not running, is shown as
``"status": "degraded"`` with the stalled views named, but answered 200: the views are
shared by every process, so a 503 would take all of them out of a load balancer and
stop payments that do not need the views. Alert on ``degraded`` or on the
``eventledger_projection_failed`` gauge. Neither answer names positions or error
messages: those are for ``GET /v1/projections``, behind a key.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated

import psycopg
from eventsourcing.persistence import PersistenceError
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import granted
from api.deps import LedgerDep, MetricsDep, SettingsDep
from api.errors import Problem
from api.routers.read_models import ReadModelsDep
from api.routing import LedgerRoute
from api.schemas import Health
from projections.failures import ProjectionFailure

router = APIRouter(tags=["operations"], route_class=LedgerRoute)


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="The event store and the views answer; says whether a view is stalled",
)
def readyz(
    request: Request,
    ledger: LedgerDep,
    settings: SettingsDep,
    read_models: ReadModelsDep,
    may_read: Annotated[bool, Depends(granted("read"))],
) -> Health:
    """Ready when the event store and the views database answer. The log position
    (how much business the ledger has done) only for a caller who may read."""
    retry = {"Retry-After": str(settings.store_busy_retry_after_seconds)}
    try:
        position = ledger.head_position()
    except PersistenceError as error:
        raise Problem(
            503,
            "service_unavailable",
            f"the event store does not answer: {type(error).__name__}",
            headers=retry,
        ) from None
    try:
        failures = read_models.failures()
    except (sqlite3.Error, psycopg.Error) as error:
        raise Problem(
            503,
            "service_unavailable",
            f"the views database does not answer: {type(error).__name__}",
            headers=retry,
        ) from None
    shown = position if may_read else None
    runner = getattr(request.app.state, "projection_runner", None)
    if failures or (runner is not None and not runner.is_alive):
        problems = [_stalled_detail(list(failures.values()))] if failures else []
        if runner is not None and not runner.is_alive:
            problems.append("this process has stopped keeping the views up to date")
        return Health(
            status="degraded", position=shown, stalled=sorted(failures), detail="; ".join(problems)
        )
    return Health(status="ready", position=shown)


def _stalled_detail(failures: list[ProjectionFailure]) -> str:
    """Which views are stalled and the error's class; no position, no message."""
    parts = []
    for failure in failures:
        if failure.cause is None:
            parts.append(f"{failure.name} cannot read an event ({failure.error_class})")
        elif failure.cause == failure.name:
            parts.append(f"{failure.name} cannot apply an event ({failure.error_class})")
        else:
            parts.append(f"{failure.name} is held behind {failure.cause}")
    return (
        "stalled before an event it cannot apply: "
        + "; ".join(parts)
        + ". GET /v1/projections (read scope) says where and why"
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"},
    },
    summary="Prometheus metrics of this process",
)
def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
