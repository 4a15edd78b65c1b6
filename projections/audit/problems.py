"""What the audit reports (problems, the result of a verify), what a read-model check
looks like, and an account as its events say it is."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from uuid import UUID

if TYPE_CHECKING:
    from projections.audit.invariants import LedgerInvariants

ACCOUNT = "domain.account:Account."
TRANSFER = "domain.transfer:Transfer."
PROBLEMS_MAX = 1000


@dataclass(frozen=True)
class Problem:
    """One thing that does not hold; ``position`` is where it first shows."""

    check: str
    detail: str
    position: int | None = None
    account_id: UUID | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "position": self.position,
            "account_id": None if self.account_id is None else str(self.account_id),
            "detail": self.detail,
        }


@dataclass(slots=True)
class ReplayedAccount:
    """An account as its events say it is."""

    id: UUID
    currency: str
    overdraft_limit: int
    is_world: bool
    name: str
    metadata: dict[str, str]
    status: str = "open"
    balance: int = 0
    pending_debits: int = 0
    pending_credits: int = 0
    version: int = 1

    @property
    def available_balance(self) -> int:
        return self.balance - self.pending_debits


class ReadModelCheck(Protocol):
    """Compares a read model with the accounts replayed from the events.

    ``load`` snapshots the view and returns its position (None: not built); ``check``
    is called once the replay has applied every event up to that position.
    """

    name: str

    def load(self) -> int | None: ...

    def check(self, replay: LedgerInvariants, position: int) -> Iterable[Problem]: ...


@runtime_checkable
class PostingsCheck(ReadModelCheck, Protocol):
    """A read-model check that also compares, batch by batch, the postings
    (position, account id, transfer id, signed amount, balance_after) the replay
    found in positions ``after < p <= last``: memory stays flat."""

    def check_postings(
        self, after: int, last: int, postings: Sequence[tuple[int, UUID, UUID, int, int]]
    ) -> Iterable[Problem]: ...


@dataclass
class VerifyResult:
    ok: bool
    events_checked: int
    head: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    problems_dropped: int = 0
    checks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events_checked": self.events_checked,
            "head": self.head,
            "problems": [problem.as_dict() for problem in self.problems],
            "problems_dropped": self.problems_dropped,
            "checks": self.checks,
        }
