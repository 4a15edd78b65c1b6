"""Reads from the projections: /v1/accounts (list), /v1/accounts/{id}/statement and
/v1/projections.

The app's lifespan (``api.app``) opens the views and runs the in-process projection
runner. Every route takes ``?min_position=N`` (the ``position`` of a command's
response) and waits, at most ``read_your_writes_timeout_seconds``, until its view
has applied the log up to N; if it has not, it answers 503 ``view_behind`` with
Retry-After. A view stalled before N (an event it cannot apply; see
``projections.failures``) will not get there by waiting: that is answered at once,
503 ``view_stalled``, naming the view, the event and the error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api import examples
from api.auth import ReadAccess
from api.deps import SettingsDep
from api.errors import Problem
from api.fields import ACCOUNT_STATUS, CURRENCY_OUT, MINOR_UNITS, model_examples
from api.paging import NEXT_CURSOR_DESCRIPTION, PAGE_SIZE_DEFAULT, CursorQuery, limit_query
from api.parameters import AccountIdPath
from api.routing import LedgerRoute
from domain.limits import VIEW_PAGE_SIZE_MAX
from infrastructure.settings import Settings
from projections.queries import ReadModels, ViewBehind, ViewStalled

router = APIRouter(tags=["read models"], route_class=LedgerRoute)

POSITION_MAX = 2**62
RETRY_AFTER_SECONDS = 1
# A stalled view waits for an operator: no point in asking again every second.
STALLED_RETRY_AFTER_SECONDS = 30


async def get_read_models(request: Request) -> ReadModels:
    read_models: ReadModels = request.app.state.read_models
    return read_models


ReadModelsDep = Annotated[ReadModels, Depends(get_read_models)]
MinPositionQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=POSITION_MAX,
        description="The `position` of one of your commands' answers: the view is read "
        "once it has applied the log up to there (read your writes). If it has not "
        "within a bounded wait, the answer is 503 `view_behind` with Retry-After; a "
        "position past the log's head is 422.",
    ),
]
LimitQuery = Annotated[int, limit_query(VIEW_PAGE_SIZE_MAX)]


class Body(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AccountRowOut(Body):
    id: UUID = Field(description="The account's id.")
    currency: str = Field(description=CURRENCY_OUT)
    name: str = Field(description="The account's name; `world:<currency>` for a world account.")
    status: str = Field(description=ACCOUNT_STATUS)
    is_world: bool = Field(
        description="Whether this is the world account of its currency, through which "
        "deposits enter and withdrawals leave (its balance is minus all money in)."
    )
    balance: int = Field(description=f"{MINOR_UNITS}: posted credits minus posted debits.")
    available_balance: int = Field(description=f"{MINOR_UNITS}: the balance minus pending debits.")
    pending_debits: int = Field(description=f"{MINOR_UNITS} reserved by pending transfers out.")
    pending_credits: int = Field(description=f"{MINOR_UNITS} on their way in, still pending.")
    overdraft_limit: int = Field(description=f"{MINOR_UNITS}: how far below zero it may go.")
    metadata: dict[str, str] = Field(description="Your key-value strings.")
    version: int = Field(description="Number of events of the account (its ETag).")
    created_at: datetime = Field(description="When it was opened (RFC 3339, UTC).")
    updated_at: datetime = Field(description="When it last changed (RFC 3339, UTC).")


class AccountListOut(Body):
    model_config = model_examples(examples.ACCOUNT_LIST)

    items: list[AccountRowOut] = Field(description="Accounts ordered by id.")
    next_cursor: str | None = Field(description=NEXT_CURSOR_DESCRIPTION)
    position: int = Field(
        description="The log position the balances view has applied: the list is as of then."
    )


class PostingOut(Body):
    position: int = Field(description="The log position of the posting.")
    transfer_id: UUID = Field(description="The transfer that moved the money.")
    amount: int = Field(description="Signed minor units: credits > 0, debits < 0.")
    balance_after: int = Field(description=f"{MINOR_UNITS}: the balance after this posting.")
    timestamp: datetime = Field(description="When it was recorded (RFC 3339, UTC).")
    description: str = Field(description="The transfer's description; may be empty.")


class StatementOut(Body):
    model_config = model_examples(examples.STATEMENT)

    account_id: UUID = Field(description="The account's id.")
    currency: str = Field(description=CURRENCY_OUT)
    items: list[PostingOut] = Field(description="Postings, oldest first.")
    next_cursor: str | None = Field(description=NEXT_CURSOR_DESCRIPTION)
    position: int = Field(
        description="The log position the statements view has applied: the statement is as of then."
    )


class StalledOut(Body):
    """Where and why a view stopped: the event it cannot apply, and since when."""

    position: int = Field(
        description="log position of the first event the view cannot apply; it stays before it"
    )
    last_position: int = Field(description="the end of the save that holds that event")
    cause: str | None = Field(
        description="the projection whose apply failed (this one, or one followed with it, "
        "which holds it back); null when the event cannot be read or decoded"
    )
    error: str = Field(description="the error's class and message")
    since: datetime = Field(description="when the follower first met it")


class ProjectionOut(Body):
    name: str = Field(description="The view: balances, statements or totals.")
    position: int = Field(description="The log position the view has applied.")
    head: int = Field(description="The log's last position.")
    lag: int = Field(description="How far behind the head the view is: head minus position.")
    rebuilding: int | None = Field(
        description="Position reached by an unfinished rebuild (running or interrupted); "
        "null when there is none."
    )
    stalled: StalledOut | None = Field(
        None,
        description="Set while the view is stalled before an event it cannot apply; null "
        "otherwise.",
    )


class ProjectionsOut(Body):
    model_config = model_examples(examples.PROJECTIONS)

    projections: list[ProjectionOut] = Field(description="One per view.")


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
    except ViewStalled as error:
        raise Problem(
            503,
            "view_stalled",
            error.detail,
            headers={"Retry-After": str(STALLED_RETRY_AFTER_SECONDS)},
            extra={
                "position": error.position,
                "reached": error.reached,
                "stalled": [
                    {"projection": f.name, "position": f.position, "error": f.error}
                    for f in error.failures
                ],
            },
        ) from None
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
    summary="List accounts from the balances view, by id, with cursor pagination",
)
def list_accounts(
    read_models: ReadModelsDep,
    settings: SettingsDep,
    currency: Annotated[
        str | None,
        Query(pattern="^[A-Z]{3}$", description="Only accounts of this ISO 4217 currency."),
    ] = None,
    status: Annotated[
        str | None,
        Query(pattern="^(open|frozen|closed)$", description="Only accounts in this status."),
    ] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = PAGE_SIZE_DEFAULT,
    min_position: MinPositionQuery = None,
) -> AccountListOut:
    wait_for_views(read_models, settings, min_position, "balances")
    page = read_models.list_accounts(currency, status, cursor, limit)
    return AccountListOut.model_validate(page)


@router.get(
    "/v1/accounts/{account_id}/statement",
    response_model=StatementOut,
    dependencies=[ReadAccess],
    summary="Postings of an account with the balance after each, oldest first",
)
def account_statement(
    account_id: AccountIdPath,
    read_models: ReadModelsDep,
    settings: SettingsDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = PAGE_SIZE_DEFAULT,
    min_position: MinPositionQuery = None,
) -> StatementOut:
    wait_for_views(read_models, settings, min_position, "balances", "statements")
    return StatementOut.model_validate(read_models.statement(account_id, cursor, limit))


@router.get(
    "/v1/projections",
    response_model=ProjectionsOut,
    dependencies=[ReadAccess],
    summary="Each view's position, the log head and the lag between them",
)
def projections_status(
    read_models: ReadModelsDep, settings: SettingsDep, min_position: MinPositionQuery = None
) -> ProjectionsOut:
    wait_for_views(read_models, settings, min_position)
    return ProjectionsOut.model_validate({"projections": read_models.status()})
