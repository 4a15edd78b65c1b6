"""Liveness, readiness and Prometheus metrics; open to scrapers, no key needed."""

from __future__ import annotations

from typing import Annotated

from eventsourcing.persistence import PersistenceError
from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import granted
from api.deps import LedgerDep, MetricsDep, SettingsDep
from api.errors import Problem
from api.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="The event store answers",
)
def readyz(
    ledger: LedgerDep, settings: SettingsDep, may_read: Annotated[bool, Depends(granted("read"))]
) -> Health:
    """Ready when the event store answers. The log position (how much business the
    ledger has done) only for a caller who may read: a scraper needs no key for this."""
    try:
        position = ledger.head_position()
    except PersistenceError as error:
        raise Problem(
            503,
            "service_unavailable",
            f"the event store does not answer: {type(error).__name__}",
            headers={"Retry-After": str(settings.store_busy_retry_after_seconds)},
        ) from None
    return Health(status="ready", position=position if may_read else None)


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
