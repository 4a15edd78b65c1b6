"""Liveness, readiness and Prometheus metrics; open to scrapers, no key needed."""

from __future__ import annotations

from eventsourcing.persistence import PersistenceError
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import LedgerDep, MetricsDep, SettingsDep
from api.errors import Problem, problem_responses
from api.routing import LedgerRoute
from api.schemas import Health

router = APIRouter(tags=["operations"], route_class=LedgerRoute)


@router.get(
    "/healthz", response_model=Health, responses=problem_responses(), summary="The process is up"
)
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses=problem_responses(503),
    summary="The event store answers",
)
def readyz(ledger: LedgerDep, settings: SettingsDep) -> Health:
    try:
        position = ledger.head_position()
    except PersistenceError as error:
        raise Problem(
            503,
            "service_unavailable",
            f"the event store does not answer: {type(error).__name__}",
            headers={"Retry-After": str(settings.store_busy_retry_after_seconds)},
        ) from None
    return Health(status="ready", position=position)


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
