"""The ledger's invariants, checked while replaying every event in log order.

State kept: one small record per account and per transfer still open (a transfer
whose events have not all been seen, or a pending one not yet posted or voided).
Every command writes all of a transfer's events in one transaction, so the open
set stays the size of the largest transaction: memory grows with the number of
accounts, never with the number of events.

Checks, each reported with the position and account where it first fails:

- each aggregate's versions go 1, 2, 3... in log order;
- ``balance_after`` equals the replayed balance after the posting;
- no posted balance goes beyond its overdraft limit (world accounts exempt); a
  capture is held to the limit in force when its funds were reserved;
- money moves only on open accounts, in the account's currency;
- every posted transfer (``Posted``, ``PendingPosted``; reversals are ``Posted``
  with ``reverses``) has exactly one ``Debited`` on its debit account and one
  ``Credited`` on its credit account, with its amount, and no posting exists
  without its transfer; a reversal has exactly one ``Reversed`` on its original
  (the matching itself: ``projections.audit.postings``);
- per currency, the sum of all balances is 0 whenever no transfer is half-seen,
  and at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from projections.audit.postings import PostingMatcher
from projections.audit.problems import (
    ACCOUNT,
    PROBLEMS_MAX,
    TRANSFER,
    Problem,
    ReplayedAccount,
)

__all__ = ["ACCOUNT", "TRANSFER", "LedgerInvariants", "Problem", "ReplayedAccount"]


@dataclass(slots=True)
class _Pending:
    debit_account_id: UUID
    credit_account_id: UUID
    debit_limit_at_reservation: int | None = None


class LedgerInvariants:
    """Feed every decoded event in order with ``feed``; call ``finish`` at the end."""

    def __init__(self) -> None:
        self.accounts: dict[UUID, ReplayedAccount] = {}
        self.sums: dict[str, int] = {}
        # Per currency: transfers begun (Posted or Pending, reversals included) and
        # transfers rejected, as the totals view counts them.
        self.transfers: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.problems: list[Problem] = []
        # When a list, each posting is appended as (position, account id, transfer id,
        # signed amount, balance_after), for checks that stream a statements view.
        self.postings: list[tuple[int, UUID, UUID, int, int]] | None = None
        self.problems_dropped = 0
        self.matcher = PostingMatcher(self.accounts)
        self._pending: dict[UUID, _Pending] = {}
        self._unbalanced_reported: set[str] = set()
        self._handlers: dict[str, Callable[[int, UUID, int, dict[str, Any]], None]] = {
            ACCOUNT + "Opened": self._opened,
            ACCOUNT + "Debited": self._debited,
            ACCOUNT + "Credited": self._credited,
            ACCOUNT + "DebitReserved": self._debit_reserved,
            ACCOUNT + "CreditReserved": self._credit_reserved,
            ACCOUNT + "ReservationReleased": self._released,
            ACCOUNT + "Frozen": lambda p, a, v, d: self._set_status(a, "frozen"),
            ACCOUNT + "Unfrozen": lambda p, a, v, d: self._set_status(a, "open"),
            ACCOUNT + "Closed": lambda p, a, v, d: self._set_status(a, "closed"),
            ACCOUNT + "MetadataUpdated": self._metadata_updated,
            ACCOUNT + "OverdraftLimitChanged": self._limit_changed,
            TRANSFER + "Posted": self._posted,
            TRANSFER + "Pending": self._pending_created,
            TRANSFER + "Rejected": self._rejected,
            TRANSFER + "PendingPosted": self._pending_posted,
            TRANSFER + "PendingVoided": self._pending_voided,
            TRANSFER + "Reversed": self._reversed,
        }

    def report(self, problem: Problem) -> None:
        if len(self.problems) < PROBLEMS_MAX:
            self.problems.append(problem)
        else:
            self.problems_dropped += 1

    # Feeding.

    def feed(self, position: int, originator_id: UUID, version: int, topic: str, data: Any) -> None:
        handler = self._handlers.get(topic)
        if handler is None:
            self.report(Problem("event_type", f"unknown event type {topic}", position))
            return
        if not self._version_follows(position, originator_id, version, topic):
            return
        handler(position, originator_id, version, data)
        if not self.matcher.open:
            self._check_sums(position)

    def _version_follows(
        self, position: int, originator_id: UUID, version: int, topic: str
    ) -> bool:
        """Checks an aggregate's versions run 1, 2, 3...; False skips the event.

        Transfers are not remembered once settled (memory must not grow with the log),
        so for them only "created at version 1, changed after it" is checked here; the
        event store's unique (id, version) and the chain cover the rest.
        """
        created = topic.endswith((".Opened", ".Posted", ".Pending", ".Rejected"))
        if topic.startswith(ACCOUNT):
            account = self.accounts.get(originator_id)
            expected = 1 if account is None else account.version + 1
            ok = version == expected
            if account is not None and not created:
                # Carry on from the stored version, so one bad event is one problem.
                account.version = version
                keep = True
            else:
                keep = ok
        else:
            expected = 1 if created else 2
            ok = version == 1 if created else version >= 2
            keep = ok
        if ok:
            return True
        self.report(
            Problem(
                "version",
                f"{topic.rsplit(':', 1)[-1]} has version {version}, expected {expected}",
                position,
                originator_id,
            )
        )
        return keep

    def finish(self, position: int) -> None:
        """End-of-log checks: nothing left unmatched, every currency sums to 0."""
        for problem in self.matcher.unmatched():
            self.report(problem)
        self._check_pending_sums(position)
        for currency, total in sorted(self.sums.items()):
            if total != 0:
                self.report(Problem("sum", f"{currency} balances sum to {total}, not 0", position))

    def _check_pending_sums(self, position: int) -> None:
        """Every reservation holds the same amount on both sides, so per currency
        the pending debits and the pending credits of all accounts are equal."""
        pending: dict[str, int] = {}
        for account in self.accounts.values():
            difference = account.pending_debits - account.pending_credits
            pending[account.currency] = pending.get(account.currency, 0) + difference
        for currency, difference in sorted(pending.items()):
            if difference != 0:
                self.report(
                    Problem(
                        "pending",
                        f"{currency} pending debits exceed pending credits by {difference}",
                        position,
                    )
                )

    # Accounts.

    def _account(self, position: int, account_id: UUID) -> ReplayedAccount | None:
        account = self.accounts.get(account_id)
        if account is None:
            self.report(
                Problem("account", "event of an account never opened", position, account_id)
            )
        return account

    def _opened(self, position: int, account_id: UUID, version: int, data: dict[str, Any]) -> None:
        self.accounts[account_id] = ReplayedAccount(
            id=account_id,
            currency=data["currency"],
            overdraft_limit=data["overdraft_limit"],
            is_world=data["is_world"],
            name=data["name"],
            metadata=dict(data["metadata"]),
        )
        self.sums.setdefault(data["currency"], 0)

    def _debited(self, position: int, account_id: UUID, version: int, data: dict[str, Any]) -> None:
        account = self._account(position, account_id)
        if account is None:
            return
        transfer_id, amount = data["transfer_id"], data["amount"]
        limit = account.overdraft_limit
        pending = self._pending.get(transfer_id)
        if pending is not None and pending.debit_limit_at_reservation is not None:
            limit = max(limit, pending.debit_limit_at_reservation)
        self._post(position, account, amount, -amount, data["balance_after"])
        if not account.is_world and account.balance < -limit:
            self.report(
                Problem(
                    "overdraft",
                    f"balance {account.balance} is beyond the overdraft limit {limit}",
                    position,
                    account_id,
                )
            )
        self.matcher.transfer(position, transfer_id).debits.append((account_id, amount, position))
        if self.postings is not None:
            self.postings.append(
                (position, account_id, transfer_id, -amount, data["balance_after"])
            )
        self._settle(transfer_id)

    def _credited(
        self, position: int, account_id: UUID, version: int, data: dict[str, Any]
    ) -> None:
        account = self._account(position, account_id)
        if account is None:
            return
        transfer_id, amount = data["transfer_id"], data["amount"]
        self._post(position, account, amount, amount, data["balance_after"])
        self.matcher.transfer(position, transfer_id).credits.append((account_id, amount, position))
        if self.postings is not None:
            self.postings.append((position, account_id, transfer_id, amount, data["balance_after"]))
        self._settle(transfer_id)

    def _post(
        self, position: int, account: ReplayedAccount, amount: int, delta: int, balance_after: int
    ) -> None:
        if account.status != "open":
            self.report(
                Problem(
                    "status", f"money moved on a {account.status} account", position, account.id
                )
            )
        if not 1 <= amount <= 10**15:
            self.report(Problem("amount", f"amount {amount} out of range", position, account.id))
        account.balance += delta
        self.sums[account.currency] = self.sums.get(account.currency, 0) + delta
        if balance_after != account.balance:
            self.report(
                Problem(
                    "balance",
                    f"balance_after is {balance_after}, replayed balance is {account.balance}",
                    position,
                    account.id,
                )
            )

    def _debit_reserved(
        self, position: int, account_id: UUID, version: int, data: dict[str, Any]
    ) -> None:
        account = self._account(position, account_id)
        if account is not None:
            account.pending_debits += data["amount"]
            pending = self._pending.setdefault(
                data["transfer_id"], _Pending(account_id, account_id)
            )
            pending.debit_limit_at_reservation = account.overdraft_limit

    def _credit_reserved(
        self, position: int, account_id: UUID, version: int, data: dict[str, Any]
    ) -> None:
        account = self._account(position, account_id)
        if account is not None:
            account.pending_credits += data["amount"]

    def _released(
        self, position: int, account_id: UUID, version: int, data: dict[str, Any]
    ) -> None:
        account = self._account(position, account_id)
        if account is None:
            return
        if data["side"] == "debit":
            account.pending_debits -= data["amount"]
        else:
            account.pending_credits -= data["amount"]
        if account.pending_debits < 0 or account.pending_credits < 0:
            self.report(Problem("pending", "released more than was reserved", position, account_id))

    def _set_status(self, account_id: UUID, status: str) -> None:
        account = self.accounts.get(account_id)
        if account is not None:
            account.status = status

    def _metadata_updated(
        self, position: int, account_id: UUID, version: int, data: dict[str, Any]
    ) -> None:
        account = self._account(position, account_id)
        if account is not None:
            account.name = data["name"]
            account.metadata = dict(data["metadata"])

    def _limit_changed(
        self, position: int, account_id: UUID, version: int, data: dict[str, Any]
    ) -> None:
        account = self._account(position, account_id)
        if account is not None:
            account.overdraft_limit = data["overdraft_limit"]

    # Transfers.

    def _rejected(
        self, position: int, transfer_id: UUID, version: int, data: dict[str, Any]
    ) -> None:
        self.rejected[data["currency"]] = self.rejected.get(data["currency"], 0) + 1

    def _posted(self, position: int, transfer_id: UUID, version: int, data: dict[str, Any]) -> None:
        self.transfers[data["currency"]] = self.transfers.get(data["currency"], 0) + 1
        expected = self.matcher.transfer(position, transfer_id)
        expected.debit_account_id = data["debit_account_id"]
        expected.credit_account_id = data["credit_account_id"]
        expected.amount = data["amount"]
        expected.reverses = data["reverses"]
        self._settle(transfer_id)

    def _pending_created(
        self, position: int, transfer_id: UUID, version: int, data: dict[str, Any]
    ) -> None:
        self.transfers[data["currency"]] = self.transfers.get(data["currency"], 0) + 1
        pending = self._pending.setdefault(
            transfer_id, _Pending(data["debit_account_id"], data["credit_account_id"])
        )
        pending.debit_account_id = data["debit_account_id"]
        pending.credit_account_id = data["credit_account_id"]

    def _pending_posted(
        self, position: int, transfer_id: UUID, version: int, data: dict[str, Any]
    ) -> None:
        pending = self._pending.pop(transfer_id, None)
        if pending is None:
            self.report(
                Problem("posting", f"transfer {transfer_id} posted but never pending", position)
            )
            return
        expected = self.matcher.transfer(position, transfer_id)
        expected.debit_account_id = pending.debit_account_id
        expected.credit_account_id = pending.credit_account_id
        expected.amount = data["amount"]
        self._settle(transfer_id)

    def _pending_voided(
        self, position: int, transfer_id: UUID, version: int, data: dict[str, Any]
    ) -> None:
        self._pending.pop(transfer_id, None)

    def _reversed(
        self, position: int, transfer_id: UUID, version: int, data: dict[str, Any]
    ) -> None:
        reversal = self.matcher.transfer(position, data["reversal_id"])
        reversal.reversal_records.append((transfer_id, data["amount"], position))
        self._settle(data["reversal_id"])

    def _check_sums(self, position: int) -> None:
        for currency, total in self.sums.items():
            if total != 0 and currency not in self._unbalanced_reported:
                self._unbalanced_reported.add(currency)
                self.report(Problem("sum", f"{currency} balances sum to {total}, not 0", position))
            elif total == 0:
                self._unbalanced_reported.discard(currency)

    def _settle(self, transfer_id: UUID) -> None:
        problem = self.matcher.settle(transfer_id)
        if problem is not None:
            self.report(problem)
