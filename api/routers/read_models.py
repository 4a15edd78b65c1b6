"""Reads from the projections: /v1/accounts (list), /v1/accounts/{id}/statement and
/v1/projections.

The app's lifespan (``api.app``) opens the views and runs the in-process projection
runner. Every route takes ``?min_position=N`` (the ``position`` of a command's
response) and waits, at most ``read_your_writes_timeout_seconds``, until its view
has applied the log up to N; if it has not, it answers 503 with Retry-After.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import ReadAccess
from api.deps import SettingsDep
from api.errors import READ_PROBLEMS, Problem, problem_responses
from api.routing import LedgerRoute
from infrastructure.settings import Settings
from projections.queries import PAGE_SIZE_MAX, ReadModels, ViewBehind

router = APIRouter(tags=["read models"], route_class=LedgerRoute)

POSITION_MAX = 2**62
RETRY_AFTER_SECONDS = 1


async def get_read_models(request: Request) -> ReadModels:
    read_models: ReadModels = request.app.state.read_models
    return read_models


ReadModelsDep = Annotated[ReadModels, Depends(get_read_models)]
MinPositionQuery = Annotated[
    int | None,
    Query(ge=0, le=POSITION_MAX, description="Wait until the view has reached this position."),
]
LimitQuery = Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)]
CursorQuery = Annotated[
    str | None, Query(max_length=64, description="next_cursor of the previous page")
]


class Body(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AccountRowOut(Body):
    id: UUID
    currency: str
    name: str
    status: str = Field(description="open | frozen | closed")
    is_world: bool
    balance: int
    available_balance: int
    pending_debits: int
    pending_credits: int
    overdraft_limit: int
    metadata: dict[str, str]
    version: int
    created_at: datetime
    updated_at: datetime


class AccountListOut(Body):
    accounts: list[AccountRowOut]
    next_cursor: str | None
    position: int = Field(description="the balances view's log position")


class PostingOut(Body):
    position: int
    transfer_id: UUID
    amount: int = Field(description="signed minor units: credits > 0, debits < 0")
    balance_after: int
    timestamp: datetime
    description: str


class StatementOut(Body):
    account_id: UUID
    currency: str
    postings: list[PostingOut]
    next_cursor: str | None
    position: int = Field(description="the statements view's log position")


class ProjectionOut(Body):
    name: str
    position: int
    head: int
    lag: int
    rebuilding: int | None = Field(description="position of an unfinished rebuild")


class ProjectionsOut(Body):
    projections: list[ProjectionOut]


def wait_for_views(
    read_models: ReadModels, settings: Settings, min_position: int | None, *names: str
) -> None:
    if min_position is None:
        return
    head = read_models.head_position()
    if min_position > head:
        # Past the log's head no view can reach it by waiting: a position the client
        # made up, or one from another database.
        raise Problem(
            422,
            "validation_error",
            f"min_position {min_position} is past the log's head {head}; "
            "pass the position of a command's response",
        )
    try:
        read_models.wait_for(min_position, names, settings.read_your_writes_timeout_seconds)
    except ViewBehind as error:
        raise Problem(
            503,
            "view_behind",
            error.detail,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            extra={"position": error.position, "reached": error.reached},
        ) from None


@router.get(
    "/v1/accounts",
    response_model=AccountListOut,
    dependencies=[ReadAccess],
    responses=problem_responses(*READ_PROBLEMS),
    summary="List accounts from the balances view, by id, with cursor pagination",
)
def list_accounts(
    read_models: ReadModelsDep,
    settings: SettingsDep,
    currency: Annotated[str | None, Query(pattern="^[A-Z]{3}$")] = None,
    status: Annotated[str | None, Query(pattern="^(open|frozen|closed)$")] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
    min_position: MinPositionQuery = None,
) -> AccountListOut:
    wait_for_views(read_models, settings, min_position, "balances")
    page = read_models.list_accounts(currency, status, cursor, limit)
    return AccountListOut.model_validate(page)


@router.get(
    "/v1/accounts/{account_id}/statement",
    response_model=StatementOut,
    dependencies=[ReadAccess],
    responses=problem_responses(*READ_PROBLEMS),
    summary="Postings of an account with the balance after each, oldest first",
)
def account_statement(
    account_id: UUID,
    read_models: ReadModelsDep,
    settings: SettingsDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
    min_position: MinPositionQuery = None,
) -> StatementOut:
    wait_for_views(read_models, settings, min_position, "balances", "statements")
    return StatementOut.model_validate(read_models.statement(account_id, cursor, limit))


@router.get(
    "/v1/projections",
    response_model=ProjectionsOut,
    dependencies=[ReadAccess],
    responses=problem_responses(*READ_PROBLEMS),
    summary="Each view's position, the log head and the lag between them",
)
def projections_status(
    read_models: ReadModelsDep, settings: SettingsDep, min_position: MinPositionQuery = None
) -> ProjectionsOut:
    wait_for_views(read_models, settings, min_position)
    return ProjectionsOut.model_validate({"projections": read_models.status()})
