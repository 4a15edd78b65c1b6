"""FastAPI dependencies and the header rules shared by the routers.

The aliases live at module level: defined inside a function, an ``Annotated`` alias
silently becomes a query parameter.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Request, Response

from api.errors import Problem
from api.idempotency import command_id as command_id  # re-exported for the routers
from api.metrics import Metrics
from domain.ledger import Ledger
from domain.results import AccountView, TransferView
from infrastructure.settings import Settings

# The getters below are ``async`` although they await nothing: a plain ``def``
# dependency costs every request a round trip through the thread pool.

IDEMPOTENCY_KEY_LENGTH_MAX = 255
# ASCII digits only: ``\d`` would take "٣" (an Arabic-Indic three) as version 3.
_ETAG = re.compile(r'^"([0-9]{1,18})"$')


async def get_ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        description="Makes a retry safe: the same key and body answer the same result.",
    ),
]


def refuse_repeated_header(request: Request, name: str) -> None:
    """Two headers of a kind we read once are refused, as duplicate JSON keys are:
    a framework keeps the first, a proxy or a log may keep the last, and the two
    readers would disagree on which request this was."""
    if len(request.headers.getlist(name)) > 1:
        raise Problem(422, "validation_error", f"send the {name} header once")


def checked_idempotency_key(request: Request, idempotency_key: str | None) -> str | None:
    refuse_repeated_header(request, "Idempotency-Key")
    if idempotency_key is not None and not idempotency_key.strip():
        raise Problem(422, "validation_error", "Idempotency-Key must not be blank")
    return idempotency_key


async def get_idempotency_key(
    request: Request, idempotency_key: IdempotencyKeyHeader = None
) -> str | None:
    return checked_idempotency_key(request, idempotency_key)


async def get_expected_version(
    request: Request,
    if_match: Annotated[
        str | None,
        Header(max_length=40, description='The ETag of the version you read, like "3".'),
    ] = None,
) -> int | None:
    """``If-Match: "<version>"`` -> the version; ``*`` or no header -> None (any)."""
    refuse_repeated_header(request, "If-Match")
    if if_match is None or if_match.strip() == "*":
        return None
    match = _ETAG.fullmatch(if_match.strip())
    if match is None:
        raise Problem(422, "validation_error", 'If-Match must be an ETag like "3"')
    return int(match.group(1))


LedgerDep = Annotated[Ledger, Depends(get_ledger)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
IdempotencyKeyDep = Annotated[str | None, Depends(get_idempotency_key)]
ExpectedVersionDep = Annotated[int | None, Depends(get_expected_version)]


def etag(version: int) -> str:
    return f'"{version}"'


def answer_account(response: Response, view: AccountView) -> AccountView:
    response.headers["ETag"] = etag(view.version)
    if view.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return view


def answer_transfer(response: Response, view: TransferView, metrics: Metrics) -> TransferView:
    response.headers["Location"] = f"/v1/transfers/{view.id}"
    if view.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    else:
        metrics.transfers_posted.labels(status=view.status).inc()
    return view
