"""Account commands and event-store reads: /v1/accounts.

(The account list and statements come from read models: api/routers/read_models.py.)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime

from api.auth import ReadAccess, WriteAccess
from api.deps import (
    ExpectedVersionDep,
    IdempotencyKeyDep,
    LedgerDep,
    MetricsDep,
    answer_account,
    answer_transfer,
    command_id,
)
from api.errors import Problem
from api.paging import PAGE_SIZE_DEFAULT, CursorQuery, limit_query
from api.parameters import AccountIdPath
from api.routing import LedgerRoute
from api.schemas import (
    AccountEventsPage,
    AccountOut,
    BalanceOut,
    MoveMoney,
    OpenAccount,
    TransferOut,
    UpdateAccount,
)
from domain.limits import EVENTS_PAGE_SIZE_MAX
from domain.results import AccountView, BalanceAt, TransferView
from projections.queries import parse_position_cursor

router = APIRouter(prefix="/v1/accounts", tags=["accounts"], route_class=LedgerRoute)

VERSION_MAX = 2**62


@router.post(
    "",
    status_code=201,
    response_model=AccountOut,
    dependencies=[WriteAccess],
    summary="Open an account",
)
def open_account(
    body: OpenAccount, response: Response, ledger: LedgerDep, idempotency_key: IdempotencyKeyDep
) -> AccountView:
    view = ledger.open_account(
        body.currency,
        body.name,
        body.metadata,
        body.overdraft_limit,
        command_id(body.id, idempotency_key),
    )
    response.headers["Location"] = f"/v1/accounts/{view.id}"
    return answer_account(response, view)


@router.get(
    "/{account_id}",
    response_model=AccountOut,
    dependencies=[ReadAccess],
    summary="Current state, replayed from the event store",
)
def get_account(account_id: AccountIdPath, response: Response, ledger: LedgerDep) -> AccountView:
    return answer_account(response, ledger.get_account(account_id))


@router.patch(
    "/{account_id}",
    response_model=AccountOut,
    dependencies=[WriteAccess],
    summary="Change name and/or metadata, or the overdraft limit",
)
def update_account(
    account_id: AccountIdPath,
    body: UpdateAccount,
    response: Response,
    ledger: LedgerDep,
    expected_version: ExpectedVersionDep,
) -> AccountView:
    if body.overdraft_limit is not None:
        if body.name is not None or body.metadata is not None:
            raise Problem(
                422,
                "validation_error",
                "change overdraft_limit on its own, not with name or metadata",
            )
        view = ledger.change_overdraft_limit(account_id, body.overdraft_limit, expected_version)
    elif body.name is None and body.metadata is None:
        raise Problem(422, "validation_error", "give name, metadata or overdraft_limit")
    else:
        view = ledger.update_metadata(account_id, body.name, body.metadata, expected_version)
    return answer_account(response, view)


def _lifecycle_route(name: str, summary: str) -> None:
    @router.post(
        f"/{{account_id}}/{name}",
        response_model=AccountOut,
        dependencies=[WriteAccess],
        summary=summary,
        name=f"{name}_account",
    )
    def command(
        account_id: AccountIdPath,
        response: Response,
        ledger: LedgerDep,
        expected_version: ExpectedVersionDep,
    ) -> AccountView:
        commands = {
            "freeze": ledger.freeze,
            "unfreeze": ledger.unfreeze,
            "close": ledger.close_account,
        }
        return answer_account(response, commands[name](account_id, expected_version))


_lifecycle_route("freeze", "Freeze: no money in or out until unfrozen")
_lifecycle_route("unfreeze", "Unfreeze a frozen account")
_lifecycle_route("close", "Close an empty account for good")


def _money_route(path: str, name: str, summary: str) -> None:
    """POST /v1/accounts/{id}/deposits or /withdrawals: a transfer with the world."""

    @router.post(
        f"/{{account_id}}/{path}",
        status_code=201,
        response_model=TransferOut,
        dependencies=[WriteAccess],
        summary=summary,
        name=name,
    )
    def command(
        account_id: AccountIdPath,
        body: MoveMoney,
        request: Request,
        response: Response,
        ledger: LedgerDep,
        metrics: MetricsDep,
        idempotency_key: IdempotencyKeyDep,
    ) -> TransferView:
        transfer_id = request.state.transfer_id = command_id(body.id, idempotency_key)
        move = ledger.deposit if name == "deposit" else ledger.withdraw
        view = move(account_id, body.amount, body.description, body.metadata, transfer_id)
        return answer_transfer(response, view, metrics)


_money_route("deposits", "deposit", "Move money in from the world account")
_money_route("withdrawals", "withdraw", "Move money out to the world account")


@router.get(
    "/{account_id}/events",
    response_model=AccountEventsPage,
    dependencies=[ReadAccess],
    summary="Raw stored events of the account, oldest first",
)
def account_events(
    account_id: AccountIdPath,
    ledger: LedgerDep,
    cursor: CursorQuery = None,
    limit: Annotated[int, limit_query(EVENTS_PAGE_SIZE_MAX)] = PAGE_SIZE_DEFAULT,
) -> AccountEventsPage:
    after_version = parse_position_cursor(cursor)
    events = ledger.account_events(account_id, after_version, limit)
    # A full page may be the last: one event more tells, so the last page says null.
    more = len(events) == limit and ledger.account_events(account_id, events[-1].version, 1)
    next_cursor = str(events[-1].version) if more else None
    return AccountEventsPage.model_validate(
        {"items": events, "next_cursor": next_cursor}, from_attributes=True
    )


@router.get(
    "/{account_id}/balance",
    response_model=BalanceOut,
    dependencies=[ReadAccess],
    summary="Balance at a point in time (?at=RFC 3339) or at a version (?version=N)",
)
def balance_at(
    account_id: AccountIdPath,
    ledger: LedgerDep,
    at: Annotated[
        AwareDatetime | None,
        Query(
            description="A moment, RFC 3339 with its offset, e.g. 2026-01-31T23:59:59Z: "
            "the balance after the last event recorded at or before it."
        ),
    ] = None,
    version: Annotated[
        int | None,
        Query(ge=1, le=VERSION_MAX, description="The account's version, from 1 (its ETag)."),
    ] = None,
) -> BalanceAt:
    return ledger.balance_at(account_id, version=version, at=at)
