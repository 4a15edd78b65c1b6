"""The audit endpoints (``audit`` scope): the chain's digest, and a full verify.

The app's lifespan (``api.app``) builds the ``Audit`` and keeps the ``audit_chain``
projection at the log's head in a background thread. One verify runs at a time per
process (it streams the whole log); a second request meanwhile gets 409 ``conflict``.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.auth import AuditAccess
from api.errors import Problem, problem_responses
from api.routing import LedgerRoute
from projections.audit import Audit
from projections.audit.hashing import ALGORITHM, parse_digest

router = APIRouter(tags=["audit"], route_class=LedgerRoute)

DIGEST_PATTERN = r"^[0-9a-fA-F]{64}@[0-9]{1,19}$"
AUDIT_PROBLEMS = (401, 403, 409, 422, 429, 503)
CHECK_DESCRIPTION = (
    "what failed: chain, checkpoint, digest, gap, inserted, version, balance, overdraft, "
    "posting, sum, status, currency, reversal, decode, read_model:balances"
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
    position: int = Field(description="log position of the last event the chain covers")
    hash: str = Field(description="the chain hash after that event, 64 hex digits")
    algorithm: str = Field(description=f"always {ALGORITHM!r}; see the README")
    events: int = Field(description="how many events the chain covers")
    digest: str = Field(description="HASH@POSITION, to keep outside the database")


class VerifyIn(BaseModel):
    digest: str | None = Field(
        None,
        pattern=DIGEST_PATTERN,
        description="HASH@POSITION from an earlier digest, kept outside the database",
    )


class ChainHeadOut(BaseModel):
    position: int
    hash: str
    algorithm: str


class ProblemOut(BaseModel):
    check: str = Field(description=CHECK_DESCRIPTION)
    position: int | None = Field(description="first log position where it shows")
    account_id: str | None
    detail: str


class VerifyOut(BaseModel):
    ok: bool
    events_checked: int
    head: ChainHeadOut
    problems: list[ProblemOut] = Field(description="sorted by position; at most 1000")
    problems_dropped: int
    checks: list[str]


@router.get(
    "/v1/audit/digest",
    response_model=DigestOut,
    dependencies=[AuditAccess],
    responses=problem_responses(401, 403, 429, 503),
    summary="The hash chain's head, to be kept outside the database",
)
def audit_digest(audit: AuditDep) -> DigestOut:
    return DigestOut.model_validate(audit.digest())


@router.post(
    "/v1/audit/verify",
    response_model=VerifyOut,
    dependencies=[AuditAccess],
    responses=problem_responses(*AUDIT_PROBLEMS),
    summary="Recompute the chain from the stored events and check every invariant",
)
def audit_verify(audit: AuditDep, lock: VerifyLockDep, body: VerifyIn | None = None) -> VerifyOut:
    digest = None if body is None or body.digest is None else parse_digest(body.digest)
    if not lock.acquire(blocking=False):
        raise Problem(409, "conflict", "a verification is already running; try again later")
    try:
        result = audit.verify(digest)
    finally:
        lock.release()
    return VerifyOut.model_validate(result.as_dict())
