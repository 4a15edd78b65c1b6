"""The audit endpoints (``audit`` scope): the chain's digest, and a full verify.

The app's lifespan (``api.app``) builds the ``Audit`` and keeps the ``audit_chain``
projection at the log's head in a background thread. One verify runs at a time per
process (it streams the whole log); a second request meanwhile gets 409 ``conflict``.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field

from api import examples
from api.auth import AuditAccess
from api.errors import Problem
from api.fields import model_examples
from api.routing import LedgerRoute
from projections.audit import Audit, ChainMoving, ChainUpgradeBlocked
from projections.audit.hashing import ALGORITHM, LEGACY_ALGORITHM, parse_digest
from projections.audit.problems import PROBLEMS_MAX

router = APIRouter(tags=["audit"], route_class=LedgerRoute)

DIGEST_PATTERN = r"^[0-9a-fA-F]{64}@[0-9]{1,19}$"
CHECK_DESCRIPTION = (
    "what failed: chain, checkpoint, digest, gap, inserted, originator_id, stored_type, "
    "version, event_type, decode, balance, overdraft, posting, sum, pending, status, "
    "currency, reversal, amount, account, world_id_squatted, read_model:balances, "
    "read_model:totals, read_model:statements, snapshots, projection_stalled, "
    "chain_algorithm"
)


async def get_audit(request: Request) -> Audit:
    audit: Audit = request.app.state.audit
    return audit


async def get_verify_lock(request: Request) -> threading.Lock:
    lock: threading.Lock = request.app.state.audit_verify_lock
    return lock


AuditDep = Annotated[Audit, Depends(get_audit)]
VerifyLockDep = Annotated[threading.Lock, Depends(get_verify_lock)]


class DigestOut(BaseModel):
    model_config = model_examples(examples.DIGEST)

    position: int = Field(description="Log position of the last event the chain covers.")
    hash: str = Field(description="The chain hash after that event, 64 hex digits.")
    algorithm: str = Field(
        description=f"The chain's algorithm: {ALGORITHM!r} (a store chained with "
        f"{LEGACY_ALGORITHM!r} is re-chained once checked); see the README."
    )
    events: int = Field(description="How many events the chain covers.")
    digest: str = Field(
        description="HASH@POSITION: keep it outside the database, and pass it to a later "
        "verify to prove nothing before that position was changed."
    )


class VerifyIn(BaseModel):
    model_config = model_examples(examples.VERIFY_IN)

    digest: str | None = Field(
        None,
        pattern=DIGEST_PATTERN,
        description="HASH@POSITION from an earlier digest, kept outside the database; "
        "null checks the chain against itself only.",
    )


class ChainHeadOut(BaseModel):
    position: int = Field(description="Log position of the last event checked.")
    hash: str = Field(description="The chain hash after that event, 64 hex digits.")
    algorithm: str = Field(description=f"Always {ALGORITHM!r}.")


class ProblemOut(BaseModel):
    check: str = Field(description=CHECK_DESCRIPTION)
    position: int | None = Field(description="First log position where it shows.")
    account_id: str | None = Field(description="The account concerned; null if none.")
    detail: str = Field(description="What is wrong, for people.")


class VerifyOut(BaseModel):
    model_config = model_examples(examples.VERIFY)

    ok: bool = Field(description="True when every check passed.")
    events_checked: int = Field(description="How many stored events were read.")
    head: ChainHeadOut = Field(description="The chain recomputed from the stored events.")
    problems: list[ProblemOut] = Field(description=f"Sorted by position; at most {PROBLEMS_MAX}.")
    problems_dropped: int = Field(description=f"Problems found beyond the {PROBLEMS_MAX} listed.")
    checks: list[str] = Field(description="The checks that ran, with a note where one was skipped.")


VerifyBody = Annotated[VerifyIn | None, Body(examples=[examples.VERIFY_IN])]


@router.get(
    "/v1/audit/digest",
    response_model=DigestOut,
    dependencies=[AuditAccess],
    summary="The hash chain's head, to be kept outside the database",
    description="409 `conflict` while the store's chain is of the legacy algorithm and the "
    "log no longer matches it: `POST /v1/audit/verify` says where.",
)
def audit_digest(audit: AuditDep) -> DigestOut:
    try:
        return DigestOut.model_validate(audit.digest())
    except (ChainUpgradeBlocked, ChainMoving) as error:
        raise Problem(409, "conflict", str(error)) from None


@router.post(
    "/v1/audit/verify",
    response_model=VerifyOut,
    dependencies=[AuditAccess],
    summary="Recompute the chain from the stored events and check every invariant",
)
def audit_verify(audit: AuditDep, lock: VerifyLockDep, body: VerifyBody = None) -> VerifyOut:
    digest = None if body is None or body.digest is None else parse_digest(body.digest)
    if not lock.acquire(blocking=False):
        raise Problem(409, "conflict", "a verification is already running; try again later")
    try:
        result = audit.verify(digest)
    except ChainMoving as error:
        raise Problem(409, "conflict", str(error)) from None
    finally:
        lock.release()
    return VerifyOut.model_validate(result.as_dict())
