"""Liveness, readiness and Prometheus metrics; open to scrapers, no key needed.

``/readyz`` is not ready (503) while the event store or the views do not answer, while
a view is stalled before an event it cannot apply (``projection_stalled``), or while
this process's projection thread is not running. It names the stalled views and the
error's class, not positions or messages: those are for ``GET /v1/projections``,
behind a key.
"""

from __future__ import annotations

import sqlite3

import psycopg
from eventsourcing.persistence import PersistenceError
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import LedgerDep, MetricsDep, SettingsDep
from api.errors import Problem, problem_responses
from api.routers.read_models import STALLED_RETRY_AFTER_SECONDS, ReadModelsDep
from api.schemas import Health
from projections.failures import ProjectionFailure

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz", response_model=Health, responses=problem_responses(), summary="The process is up"
)
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses=problem_responses(503),
    summary="The event store and the views answer, and no view is stalled",
)
def readyz(
    request: Request, ledger: LedgerDep, settings: SettingsDep, read_models: ReadModelsDep
) -> Health:
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
    if failures:
        raise Problem(
            503,
            "projection_stalled",
            _stalled_detail(list(failures.values())),
            headers={"Retry-After": str(STALLED_RETRY_AFTER_SECONDS)},
            extra={"stalled": sorted(failures)},
        )
    runner = getattr(request.app.state, "projection_runner", None)
    if runner is not None and not runner.is_alive:
        raise Problem(503, "service_unavailable", "the projection thread is not running")
    return Health(status="ready", position=position)


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
        **problem_responses(),
    },
    summary="Prometheus metrics of this process",
)
def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
