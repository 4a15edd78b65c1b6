"""The Account aggregate: a balance derived from its postings.

Guards live in the public command methods; the state changes live in the events'
``apply`` methods and in the private ``@event`` methods, which re-run on every replay
and so touch nothing but the account and the event's fields.
"""

from __future__ import annotations

from copy import copy
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotEmpty,
    BalanceOverflow,
    CurrencyMismatch,
    InsufficientFunds,
)
from domain.money import balance_range

OPEN = "open"
FROZEN = "frozen"
CLOSED = "closed"


class Posting(Aggregate.Event):
    """What both postings record; the balance after it is the state it sets."""

    transfer_id: UUID
    amount: int
    balance_after: int

    def apply(self, account: Account) -> None:
        account.balance = self.balance_after


class Account(Aggregate):
    # The events that move or reserve money, written by every transfer, are declared
    # as classes and triggered directly: the ``@event`` method decorator costs three
    # times as much per event (it re-maps the call's arguments onto the method's
    # parameters to build the event, and again to apply it). Same names, fields and
    # topics (``domain.account:Account.Debited``), so stored events read the same.

    class Debited(Posting):
        """Money out: ``balance_after`` is the balance less ``amount``."""

    class Credited(Posting):
        """Money in: ``balance_after`` is the balance plus ``amount``."""

    class DebitReserved(Aggregate.Event):
        transfer_id: UUID
        amount: int

        def apply(self, account: Account) -> None:
            account.pending_debits += self.amount

    class CreditReserved(Aggregate.Event):
        transfer_id: UUID
        amount: int

        def apply(self, account: Account) -> None:
            account.pending_credits += self.amount

    class ReservationReleased(Aggregate.Event):
        transfer_id: UUID
        side: str
        amount: int

        def apply(self, account: Account) -> None:
            if self.side == "debit":
                account.pending_debits -= self.amount
            else:
                account.pending_credits -= self.amount

    @event("Opened")
    def __init__(
        self,
        id: UUID,  # noqa: A002 - eventsourcing takes the aggregate id from this name.
        currency: str,
        name: str,
        metadata: dict[str, str],
        overdraft_limit: int,
        is_world: bool,
    ) -> None:
        self.currency = currency
        self.name = name
        self.metadata = dict(metadata)
        self.overdraft_limit = overdraft_limit
        self.is_world = is_world
        # What the account was opened with, to recognise a replayed open.
        self.opened_with = (name, dict(metadata), overdraft_limit)
        self.status = OPEN
        self.balance = 0
        self.pending_debits = 0
        self.pending_credits = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> Account:
        """A copy as independent as a deep copy, at a fraction of its cost.

        The aggregate cache copies an account on every load and every save; the
        generic deep copy walks every UUID and datetime, which are immutable. Only the
        two dicts and the pending-event list can change in place, so only they are
        copied.
        """
        clone = copy(self)
        clone.__dict__["_pending_events"] = list(self.__dict__["_pending_events"])
        clone.metadata = dict(self.metadata)
        name, metadata, overdraft_limit = self.opened_with
        clone.opened_with = (name, dict(metadata), overdraft_limit)
        return clone

    # Read-only views.

    @property
    def available_balance(self) -> int:
        return self.balance - self.pending_debits

    @property
    def is_empty(self) -> bool:
        return self.balance == 0 and self.pending_debits == 0 and self.pending_credits == 0

    # Guards shared by the money commands.

    def check_can_move(self, currency: str) -> None:
        """Raises the rejection that stops money moving in or out of this account."""
        if self.status == CLOSED:
            raise AccountClosed(f"account {self.id} is closed")
        if self.status == FROZEN:
            raise AccountFrozen(f"account {self.id} is frozen")
        if currency != self.currency:
            raise CurrencyMismatch(
                f"account {self.id} holds {self.currency}, the transfer is in {currency}"
            )

    def check_can_debit(self, amount: int, *, pending: bool = False) -> None:
        """A debit (or, with ``pending``, a reservation) of ``amount`` needs
        ``amount <= available + overdraft_limit`` and every number left in range."""
        if not self.is_world and amount > self.available_balance + self.overdraft_limit:
            raise InsufficientFunds(
                f"account {self.id} has {self.available_balance} available "
                f"and an overdraft limit of {self.overdraft_limit}; {amount} requested"
            )
        if pending:
            self.check_in_range(self.balance, self.pending_debits + amount, self.pending_credits)
        else:
            self.check_in_range(self.balance - amount, self.pending_debits, self.pending_credits)

    def check_can_credit(self, amount: int, *, pending: bool = False) -> None:
        if pending:
            self.check_in_range(self.balance, self.pending_debits, self.pending_credits + amount)
        else:
            self.check_in_range(self.balance + amount, self.pending_debits, self.pending_credits)

    def check_can_settle(self, side: str, reserved: int, amount: int) -> None:
        """Range check of capturing ``amount`` of a hold of ``reserved`` on ``side``."""
        assert side in ("debit", "credit") and 1 <= amount <= reserved, (side, amount, reserved)
        if side == "debit":
            self.check_in_range(
                self.balance - amount, self.pending_debits - reserved, self.pending_credits
            )
        else:
            self.check_in_range(
                self.balance + amount, self.pending_debits, self.pending_credits - reserved
            )

    def check_in_range(self, balance: int, pending_debits: int, pending_credits: int) -> None:
        """The one bound on an account's numbers, checked before every change of them.

        Raises BalanceOverflow unless the balance, the pending debits, the pending
        credits, the available balance (balance - pending debits) and the balance
        with its pending credits would all be within ``balance_range``: signed 64 bits,
        or signed 128 bits for a world account. The last two are what a capture can
        reach, so a hold that was accepted can always be captured, and the views,
        which store the available balance, can always hold it.
        """
        low, high = balance_range(self.is_world)
        available, reachable = balance - pending_debits, balance + pending_credits
        if (
            low <= balance <= high
            and low <= pending_debits <= high
            and low <= pending_credits <= high
            and low <= available <= high
            and low <= reachable <= high
        ):
            return  # every transfer but the refused ones: no tuple, no loop
        for name, value in (
            ("balance", balance),
            ("pending debits", pending_debits),
            ("pending credits", pending_credits),
            ("available balance", available),
            ("balance with pending credits", reachable),
        ):
            if not low <= value <= high:
                raise BalanceOverflow(
                    f"account {self.id}: its {name} would be {value}, outside {low}..{high}"
                )

    # Money commands. The ledger checks the guards first, on both sides, so a
    # refusal never leaves one side half-applied.

    def debit(self, transfer_id: UUID, amount: int) -> None:
        self.check_can_move(self.currency)
        self.check_can_debit(amount)
        self._debited(transfer_id, amount, self.balance - amount)

    def credit(self, transfer_id: UUID, amount: int) -> None:
        self.check_can_move(self.currency)
        self.check_can_credit(amount)
        self._credited(transfer_id, amount, self.balance + amount)

    def _debited(self, transfer_id: UUID, amount: int, balance_after: int) -> None:
        self.trigger_event(
            self.Debited, transfer_id=transfer_id, amount=amount, balance_after=balance_after
        )

    def _credited(self, transfer_id: UUID, amount: int, balance_after: int) -> None:
        self.trigger_event(
            self.Credited, transfer_id=transfer_id, amount=amount, balance_after=balance_after
        )

    # Two-phase commands: a reservation moves no money, it only changes what is
    # available. Releasing it (to void, expire or capture) undoes exactly that.

    def reserve_debit(self, transfer_id: UUID, amount: int) -> None:
        self.check_can_move(self.currency)
        self.check_can_debit(amount, pending=True)
        self._debit_reserved(transfer_id, amount)

    def reserve_credit(self, transfer_id: UUID, amount: int) -> None:
        self.check_can_move(self.currency)
        self.check_can_credit(amount, pending=True)
        self._credit_reserved(transfer_id, amount)

    def release(self, transfer_id: UUID, side: str, amount: int) -> None:
        """Releases a reservation; allowed on a frozen account, so a void always works.

        A release only brings numbers back towards states already checked, so the
        range check below cannot fail on a ledger that kept the bound.
        """
        assert side in ("debit", "credit"), side
        held = self.pending_debits if side == "debit" else self.pending_credits
        assert 1 <= amount <= held, (amount, held)
        if side == "debit":
            self.check_in_range(self.balance, self.pending_debits - amount, self.pending_credits)
        else:
            self.check_in_range(self.balance, self.pending_debits, self.pending_credits - amount)
        self._reservation_released(transfer_id, side, amount)

    def settle_debit(self, transfer_id: UUID, reserved: int, amount: int) -> None:
        """Captures ``amount`` of a reservation of ``reserved`` and releases the rest.

        The funds were checked when they were reserved, so only the account's status
        and the range are checked again (the range check cannot fail either: the
        reservation kept the available balance in range).
        """
        self.check_can_move(self.currency)
        self.check_can_settle("debit", reserved, amount)
        self.release(transfer_id, "debit", reserved)
        self._debited(transfer_id, amount, self.balance - amount)

    def settle_credit(self, transfer_id: UUID, reserved: int, amount: int) -> None:
        self.check_can_move(self.currency)
        self.check_can_settle("credit", reserved, amount)
        self.release(transfer_id, "credit", reserved)
        self._credited(transfer_id, amount, self.balance + amount)

    def _debit_reserved(self, transfer_id: UUID, amount: int) -> None:
        self.trigger_event(self.DebitReserved, transfer_id=transfer_id, amount=amount)

    def _credit_reserved(self, transfer_id: UUID, amount: int) -> None:
        self.trigger_event(self.CreditReserved, transfer_id=transfer_id, amount=amount)

    def _reservation_released(self, transfer_id: UUID, side: str, amount: int) -> None:
        self.trigger_event(
            self.ReservationReleased, transfer_id=transfer_id, side=side, amount=amount
        )

    # Lifecycle commands.

    def freeze(self) -> bool:
        """Freezes an open account; returns False when it was frozen already."""
        if self.status == CLOSED:
            raise AccountClosed(f"account {self.id} is closed")
        if self.status == FROZEN:
            return False
        self._frozen()
        return True

    def unfreeze(self) -> bool:
        """Unfreezes a frozen account; returns False when it was open already."""
        if self.status == CLOSED:
            raise AccountClosed(f"account {self.id} is closed")
        if self.status == OPEN:
            return False
        self._unfrozen()
        return True

    def close(self) -> None:
        if self.status == CLOSED:
            raise AccountClosed(f"account {self.id} is closed already")
        if not self.is_empty:
            raise AccountNotEmpty(
                f"account {self.id} has balance {self.balance}, pending debits "
                f"{self.pending_debits} and pending credits {self.pending_credits}"
            )
        self._closed()

    def update_metadata(self, name: str, metadata: dict[str, str]) -> bool:
        """Replaces name and metadata; returns False when nothing changes."""
        if self.status == CLOSED:
            raise AccountClosed(f"account {self.id} is closed")
        if name == self.name and metadata == self.metadata:
            return False
        self._metadata_updated(name, dict(metadata))
        return True

    def change_overdraft_limit(self, overdraft_limit: int) -> bool:
        """Sets a new limit; returns False when it is the current one.

        Lowering the limit below what is already drawn is allowed (like a bank
        cutting a credit line): further debits are refused until the balance recovers.
        """
        assert overdraft_limit >= 0 and not self.is_world
        if self.status == CLOSED:
            raise AccountClosed(f"account {self.id} is closed")
        if overdraft_limit == self.overdraft_limit:
            return False
        self._overdraft_limit_changed(overdraft_limit)
        return True

    @event("OverdraftLimitChanged")
    def _overdraft_limit_changed(self, overdraft_limit: int) -> None:
        self.overdraft_limit = overdraft_limit

    @event("Frozen")
    def _frozen(self) -> None:
        self.status = FROZEN

    @event("Unfrozen")
    def _unfrozen(self) -> None:
        self.status = OPEN

    @event("Closed")
    def _closed(self) -> None:
        self.status = CLOSED

    @event("MetadataUpdated")
    def _metadata_updated(self, name: str, metadata: dict[str, str]) -> None:
        self.name = name
        self.metadata = dict(metadata)
