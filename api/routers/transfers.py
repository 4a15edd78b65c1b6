"""Transfers: /v1/transfers, including batches and the two-phase commands."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from api.auth import ReadAccess, WriteAccess
from api.deps import (
    IdempotencyKeyDep,
    IdempotencyKeyHeader,
    LedgerDep,
    MetricsDep,
    answer_transfer,
    checked_idempotency_key,
    command_id,
)
from api.idempotency import settlement_request_id
from api.metrics import Metrics
from api.parameters import PostPendingBody, ReverseTransferBody, TransferIdPath
from api.routing import LedgerRoute
from api.schemas import (
    BatchOut,
    CreateBatch,
    CreateTransfer,
    ReverseTransfer,
    TransferOut,
)
from domain.results import TransferView
from domain.rules import transfer_request
from infrastructure.transfer_queue import QueuedLedger

router = APIRouter(prefix="/v1/transfers", tags=["transfers"], route_class=LedgerRoute)


@router.post(
    "",
    status_code=201,
    response_model=TransferOut,
    dependencies=[WriteAccess],
    summary="Move money between two accounts (or reserve it, with pending)",
)
async def create_transfer(
    body: CreateTransfer,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> TransferView:
    # A route function's docstring becomes its OpenAPI description: notes for us are
    # comments. This awaits the transfer's future without holding a thread: the ledger
    # queues it (to the group-commit writer, or to a pool thread without group commit).
    # The busiest route takes the ledger and the metrics from app.state rather than as
    # dependencies: each dependency costs FastAPI tens of microseconds per request.
    ledger: QueuedLedger = request.app.state.ledger
    metrics: Metrics = request.app.state.metrics
    idempotency_key = checked_idempotency_key(request, idempotency_key)
    transfer_id = request.state.transfer_id = command_id(body.id, idempotency_key)
    checked = transfer_request(
        body.from_account, body.to_account, body.amount, body.currency,
        body.description, body.metadata,
        pending=body.pending, timeout_seconds=body.timeout_seconds,
    )  # fmt: skip
    # Queueing does no I/O: the checked request is handed over.
    future = ledger.submit_transfer(transfer_id, checked)
    try:
        # asyncio.timeout, not wait_for: wait_for wraps the await in a Task of its own.
        async with asyncio.timeout(ledger.transfer_timeout_seconds):
            view = await asyncio.wrap_future(future)
    except TimeoutError:
        raise ledger.gave_up(future) from None
    return answer_transfer(response, view, metrics)


@router.post(
    "/batch",
    status_code=201,
    response_model=BatchOut,
    dependencies=[WriteAccess],
    summary="Apply 1..1000 transfers atomically: all or none",
    description="A failing item answers 422 `batch_item_failed` with its `index` and "
    "`item_code`; nothing is written. With an Idempotency-Key, item i without an id gets "
    "uuid5 of the key + ':i'.",
)
def create_batch(
    body: CreateBatch,
    response: Response,
    ledger: LedgerDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyDep,
) -> BatchOut:
    items = [
        item.batch_item(command_id(item.id, idempotency_key, f":{index}"))
        for index, item in enumerate(body.transfers)
    ]
    views = ledger.transfer_batch(items)
    if all(view.replayed for view in views):
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    else:
        for view in views:
            metrics.transfers_posted.labels(status=view.status).inc()
    position = max((view.position or 0 for view in views), default=0) or None
    return BatchOut.model_validate({"transfers": views, "position": position}, from_attributes=True)


@router.get(
    "/{transfer_id}",
    response_model=TransferOut,
    dependencies=[ReadAccess],
    summary="State of a transfer (including rejected attempts)",
)
def get_transfer(transfer_id: TransferIdPath, ledger: LedgerDep) -> TransferView:
    return ledger.get_transfer(transfer_id)


SETTLEMENT_REPLAY = (
    "Idempotent: the same request again (same amount; the same Idempotency-Key, or "
    "none) answers the settled transfer with HTTP 200 and `Idempotent-Replayed: true`. "
    "The Idempotency-Key that settled it, sent with another request, is 422 "
    "`idempotency_key_reused`; any other request on a settled transfer is 422 "
    "`transfer_not_pending` (`pending_expired` for a post after the timeout voided it)."
)


@router.post(
    "/{transfer_id}/post",
    response_model=TransferOut,
    dependencies=[WriteAccess],
    summary="Capture a pending transfer (all, or a smaller amount)",
    description=SETTLEMENT_REPLAY,
)
def post_pending(
    transfer_id: TransferIdPath,
    response: Response,
    ledger: LedgerDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyDep,
    body: PostPendingBody = None,
) -> TransferView:
    amount = body.amount if body else None
    view = ledger.post_pending(transfer_id, amount, settlement_request_id(idempotency_key))
    answer_settlement(response, view, metrics)
    return view


@router.post(
    "/{transfer_id}/void",
    response_model=TransferOut,
    dependencies=[WriteAccess],
    summary="Release a pending transfer",
    description=SETTLEMENT_REPLAY + " A void after the timeout voided it is a replay.",
)
def void_pending(
    transfer_id: TransferIdPath,
    response: Response,
    ledger: LedgerDep,
    idempotency_key: IdempotencyKeyDep,
) -> TransferView:
    view = ledger.void_pending(transfer_id, settlement_request_id(idempotency_key))
    answer_settlement(response, view)
    return view


def answer_settlement(
    response: Response, view: TransferView, metrics: Metrics | None = None
) -> None:
    """A replay says so; a capture written now counts as a posted transfer."""
    if view.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    elif metrics is not None:
        metrics.transfers_posted.labels(status=view.status).inc()


@router.post(
    "/{transfer_id}/reverse",
    status_code=201,
    response_model=TransferOut,
    dependencies=[WriteAccess],
    summary="Post a compensating transfer linked by `reverses`",
)
def reverse_transfer(
    transfer_id: TransferIdPath,
    request: Request,
    response: Response,
    ledger: LedgerDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyDep,
    body: ReverseTransferBody = None,
) -> TransferView:
    body = body or ReverseTransfer()
    reversal_id = request.state.transfer_id = command_id(body.id, idempotency_key)
    view = ledger.reverse(transfer_id, body.amount, reversal_id, body.description)
    return answer_transfer(response, view, metrics)
