"""Each API operation as a ``Call``: what to send, how to read the answer, and whether
it may be sent again after an answer was lost.

Built once per method call, so a retry sends the very same request: the same
``Idempotency-Key`` (generated here when the caller gives none) and the same body.
The sync and async clients run the same calls (``eventledger/client.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel

from api.routers.audit import DigestOut, VerifyOut
from api.routers.read_models import AccountListOut, ProjectionsOut, StatementOut
from api.schemas import AccountEventsPage, AccountOut, BalanceOut, BatchOut, TransferOut

Model = TypeVar("Model", bound=BaseModel)
Id = UUID | str


@dataclass(frozen=True)
class Call(Generic[Model]):
    method: str
    path: str
    answer: type[Model]
    json: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    # Sent again after a lost answer only if the server would recognise it: reads,
    # and commands with an idempotency key.
    replay_safe: bool = False
    # Reads of the read models, which wait for the client's last write (min_position).
    reads_views: bool = False


def _command(
    path: str, answer: type[Model], body: dict[str, Any], idempotency_key: str | None
) -> Call[Model]:
    key = idempotency_key or f"py-{uuid4()}"
    json = {name: value for name, value in body.items() if value is not None}
    return Call("POST", path, answer, json, headers={"Idempotency-Key": key}, replay_safe=True)


def _version(if_version: int | None) -> dict[str, str]:
    return {} if if_version is None else {"If-Match": f'"{if_version}"'}


def _params(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


# Accounts.


def open_account(
    currency: str,
    name: str = "",
    *,
    overdraft_limit: int = 0,
    metadata: Mapping[str, str] | None = None,
    id: Id | None = None,
    idempotency_key: str | None = None,
) -> Call[AccountOut]:
    body = {"currency": currency, "name": name, "overdraft_limit": overdraft_limit,
            "metadata": dict(metadata or {}), "id": None if id is None else str(id)}  # fmt: skip
    return _command("/v1/accounts", AccountOut, body, idempotency_key)


def get_account(account_id: Id) -> Call[AccountOut]:
    return Call("GET", f"/v1/accounts/{account_id}", AccountOut, replay_safe=True)


def update_account(
    account_id: Id,
    *,
    name: str | None = None,
    metadata: Mapping[str, str] | None = None,
    if_version: int | None = None,
) -> Call[AccountOut]:
    body = _params(name=name, metadata=None if metadata is None else dict(metadata))
    return Call(
        "PATCH", f"/v1/accounts/{account_id}", AccountOut, body, headers=_version(if_version)
    )


def _lifecycle(action: str) -> Any:
    def call(account_id: Id, *, if_version: int | None = None) -> Call[AccountOut]:
        return Call(
            "POST", f"/v1/accounts/{account_id}/{action}", AccountOut, headers=_version(if_version)
        )

    call.__name__ = action
    call.__doc__ = f"POST /v1/accounts/{{id}}/{action}; ``if_version`` sends If-Match."
    return call


freeze = _lifecycle("freeze")
unfreeze = _lifecycle("unfreeze")
close = _lifecycle("close")


def _money(route: str) -> Any:
    def call(
        account_id: Id,
        amount: int,
        description: str = "",
        *,
        metadata: Mapping[str, str] | None = None,
        id: Id | None = None,
        idempotency_key: str | None = None,
    ) -> Call[TransferOut]:
        body = {"amount": amount, "description": description, "metadata": dict(metadata or {}),
                "id": None if id is None else str(id)}  # fmt: skip
        return _command(f"/v1/accounts/{account_id}/{route}", TransferOut, body, idempotency_key)

    return call


deposit = _money("deposits")
withdraw = _money("withdrawals")


def account_events(
    account_id: Id, *, cursor: str | None = None, limit: int = 100
) -> Call[AccountEventsPage]:
    params = _params(cursor=cursor, limit=limit)
    return Call(
        "GET",
        f"/v1/accounts/{account_id}/events",
        AccountEventsPage,
        params=params,
        replay_safe=True,
    )


def balance(
    account_id: Id, *, at: datetime | None = None, version: int | None = None
) -> Call[BalanceOut]:
    params = _params(at=None if at is None else at.isoformat(), version=version)
    return Call(
        "GET", f"/v1/accounts/{account_id}/balance", BalanceOut, params=params, replay_safe=True
    )


def list_accounts(
    *,
    currency: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Call[AccountListOut]:
    params = _params(currency=currency, status=status, cursor=cursor, limit=limit)
    return Call(
        "GET", "/v1/accounts", AccountListOut, params=params, replay_safe=True, reads_views=True
    )


def statement(account_id: Id, *, cursor: str | None = None, limit: int = 100) -> Call[StatementOut]:
    params = _params(cursor=cursor, limit=limit)
    path = f"/v1/accounts/{account_id}/statement"
    return Call("GET", path, StatementOut, params=params, replay_safe=True, reads_views=True)


# Transfers.


def transfer(
    from_account: Id,
    to_account: Id,
    amount: int,
    currency: str,
    description: str = "",
    *,
    metadata: Mapping[str, str] | None = None,
    pending: bool = False,
    timeout_seconds: int | None = None,
    id: Id | None = None,
    idempotency_key: str | None = None,
) -> Call[TransferOut]:
    body = {"from_account": str(from_account), "to_account": str(to_account), "amount": amount,
            "currency": currency, "description": description, "metadata": dict(metadata or {}),
            "pending": pending, "timeout_seconds": timeout_seconds,
            "id": None if id is None else str(id)}  # fmt: skip
    return _command("/v1/transfers", TransferOut, body, idempotency_key)


def transfer_batch(
    transfers: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
) -> Call[BatchOut]:
    """Each item as POST /v1/transfers takes it; give each an ``id`` to make a batch
    sent again replay (the key alone does not name the items)."""
    return _command(
        "/v1/transfers/batch", BatchOut, {"transfers": list(transfers)}, idempotency_key
    )


def get_transfer(transfer_id: Id) -> Call[TransferOut]:
    return Call("GET", f"/v1/transfers/{transfer_id}", TransferOut, replay_safe=True)


def post_pending(
    transfer_id: Id, amount: int | None = None, *, idempotency_key: str | None = None
) -> Call[TransferOut]:
    return _command(
        f"/v1/transfers/{transfer_id}/post", TransferOut, {"amount": amount}, idempotency_key
    )


def void_pending(transfer_id: Id, *, idempotency_key: str | None = None) -> Call[TransferOut]:
    return _command(f"/v1/transfers/{transfer_id}/void", TransferOut, {}, idempotency_key)


def reverse(
    transfer_id: Id,
    amount: int | None = None,
    *,
    description: str | None = None,
    id: Id | None = None,
    idempotency_key: str | None = None,
) -> Call[TransferOut]:
    body = {"amount": amount, "description": description, "id": None if id is None else str(id)}
    return _command(f"/v1/transfers/{transfer_id}/reverse", TransferOut, body, idempotency_key)


# Operations and audit.


def projections() -> Call[ProjectionsOut]:
    return Call("GET", "/v1/projections", ProjectionsOut, replay_safe=True, reads_views=True)


def audit_digest() -> Call[DigestOut]:
    return Call("GET", "/v1/audit/digest", DigestOut, replay_safe=True)


def audit_verify(digest: str | None = None) -> Call[VerifyOut]:
    # Verify reads only: sending it again is harmless.
    return Call("POST", "/v1/audit/verify", VerifyOut, _params(digest=digest), replay_safe=True)
