"""Matching each transfer with its postings, inside the window of one save.

Every command writes all of a transfer's events in one transaction, so a transfer is
"open" from its first event to its last and the open set stays the size of the
largest transaction. A transfer closes once its Transfer event (``Posted`` or
``PendingPosted``), at least one debit, one credit and, for a reversal, the
``Reversed`` record on the original have been seen; then exactly one of each, on the
right accounts, with the right amount, must be there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from uuid import UUID

from projections.audit.problems import Problem, ReplayedAccount


@dataclass(slots=True)
class OpenTransfer:
    """A transfer whose postings are being matched."""

    first_position: int
    debit_account_id: UUID | None = None
    credit_account_id: UUID | None = None
    amount: int | None = None
    reverses: UUID | None = None
    debits: list[tuple[UUID, int, int]] = field(default_factory=list)
    credits: list[tuple[UUID, int, int]] = field(default_factory=list)
    reversal_records: list[tuple[UUID, int, int]] = field(default_factory=list)


class PostingMatcher:
    def __init__(self, accounts: Mapping[UUID, ReplayedAccount]) -> None:
        self.accounts = accounts
        self.open: dict[UUID, OpenTransfer] = {}

    def transfer(self, position: int, transfer_id: UUID) -> OpenTransfer:
        """The open record of ``transfer_id``, opened at ``position`` if new."""
        found = self.open.get(transfer_id)
        if found is None:
            found = self.open[transfer_id] = OpenTransfer(first_position=position)
        return found

    def unmatched(self) -> Iterator[Problem]:
        """At the end of the log: every transfer still open is a problem."""
        for transfer_id, found in self.open.items():
            yield Problem(
                "posting",
                f"transfer {transfer_id} is not matched by exactly one debit and one "
                f"credit: {describe(found)}",
                found.first_position,
                first_account(found),
            )

    def settle(self, transfer_id: UUID) -> Problem | None:
        """Closes a transfer once its postings are all there; returns any mismatch."""
        found = self.open[transfer_id]
        if found.amount is None or not found.debits or not found.credits:
            return None
        if found.reverses is not None and not found.reversal_records:
            return None
        del self.open[transfer_id]
        return self._mismatch(transfer_id, found)

    def _mismatch(self, transfer_id: UUID, found: OpenTransfer) -> Problem | None:
        expected_records = 1 if found.reverses is not None else 0
        if (
            len(found.debits) != 1
            or len(found.credits) != 1
            or len(found.reversal_records) != expected_records
        ):
            return Problem(
                "posting",
                f"transfer {transfer_id}: {describe(found)}",
                found.first_position,
                first_account(found),
            )
        (debit_account, debit_amount, debit_position) = found.debits[0]
        (credit_account, credit_amount, credit_position) = found.credits[0]
        if debit_account != found.debit_account_id or debit_amount != found.amount:
            return Problem(
                "posting",
                f"transfer {transfer_id} debits {debit_amount} from {debit_account}, "
                f"expected {found.amount} from {found.debit_account_id}",
                debit_position,
                debit_account,
            )
        if credit_account != found.credit_account_id or credit_amount != found.amount:
            return Problem(
                "posting",
                f"transfer {transfer_id} credits {credit_amount} to {credit_account}, "
                f"expected {found.amount} to {found.credit_account_id}",
                credit_position,
                credit_account,
            )
        return self._currency_mismatch(transfer_id, found)

    def _currency_mismatch(self, transfer_id: UUID, found: OpenTransfer) -> Problem | None:
        debit = self.accounts.get(found.debits[0][0])
        credit = self.accounts.get(found.credits[0][0])
        if debit is not None and credit is not None and debit.currency != credit.currency:
            return Problem(
                "currency",
                f"transfer {transfer_id} moves {debit.currency} into a {credit.currency} account",
                found.credits[0][2],
                credit.id,
            )
        if found.reversal_records and found.reversal_records[0][:2] != (
            found.reverses,
            found.amount,
        ):
            original, amount, position = found.reversal_records[0]
            return Problem(
                "reversal",
                f"reversal {transfer_id} of {found.reverses} for {found.amount} is recorded "
                f"on {original} as {amount}",
                position,
            )
        return None


def describe(found: OpenTransfer) -> str:
    transfer = "no transfer event" if found.amount is None else f"amount {found.amount}"
    return f"{transfer}, {len(found.debits)} debit(s), {len(found.credits)} credit(s)" + (
        f", {len(found.reversal_records)} reversal record(s)" if found.reversal_records else ""
    )


def first_account(found: OpenTransfer) -> UUID | None:
    postings = found.debits + found.credits
    if not postings:
        return None
    return min(postings, key=lambda posting: posting[2])[0]
