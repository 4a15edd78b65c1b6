"""After a transfer: capturing or releasing a pending one, expiry, and reversals."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from domain.account import Account
from domain.errors import (
    AmountOutOfRange,
    PendingExpired,
    TransferNotPending,
    TransferNotPosted,
)
from domain.ids import new_id
from domain.limits import check_text
from domain.money import check_amount
from domain.movements import LedgerMovements
from domain.store import _StaleRead
from domain.transfer import PENDING, POSTED, Transfer, TransferRequest
from domain.views import TransferView


class LedgerSettlement(LedgerMovements):
    """Two-phase commands and reversals. Public methods list the errors they raise."""

    def post_pending(self, transfer_id: UUID, amount: int | None = None) -> TransferView:
        """Captures ``amount`` (default all) of a pending transfer; releases the rest.

        Raises TransferNotFound, TransferNotPending, PendingExpired (and voids it),
        AmountOutOfRange (above the reserved amount), AccountFrozen, AccountClosed.
        """
        if amount is not None:
            check_amount(amount)
        return self._retrying(lambda _: self._attempt_post_pending(transfer_id, amount))

    def void_pending(self, transfer_id: UUID) -> TransferView:
        """Releases a pending transfer. Raises TransferNotFound, TransferNotPending."""
        return self._retrying(lambda _: self._attempt_void_pending(transfer_id))

    def expire_pending(self, transfer_ids: Iterable[UUID]) -> int:
        """Voids those of ``transfer_ids`` that are pending and past their timeout.

        Returns how many it voided. Raises ConcurrencyConflict.
        """
        expired = 0
        for transfer_id in transfer_ids:

            def attempt(_: bool, transfer_id: UUID = transfer_id) -> int:
                return self._attempt_expire(transfer_id)

            expired += self._retrying(attempt)
        return expired

    def reverse(
        self,
        original_id: UUID,
        amount: int | None = None,
        reversal_id: UUID | None = None,
        description: str | None = None,
    ) -> TransferView:
        """Posts a compensating transfer linked to ``original_id`` by ``reverses``.

        The sum reversed never exceeds what was posted. Raises TransferNotFound,
        TransferNotPosted, AmountOutOfRange, IdempotencyKeyReused, and the rejections
        of ``transfer`` (recorded).
        """
        if amount is not None:
            check_amount(amount)
        description = f"reversal of {original_id}" if description is None else description
        check_text("description", description)
        reversal_id = reversal_id or new_id()
        return self._retrying(
            lambda _: self._attempt_reverse(original_id, amount, reversal_id, description)
        )

    # Internals.

    def _attempt_post_pending(self, transfer_id: UUID, amount: int | None) -> TransferView:
        transfer = self._pending_transfer(transfer_id)
        if transfer.is_expired(self.clock()):
            self._void(transfer, "expired")
            raise PendingExpired(f"transfer {transfer_id} expired at {transfer.expires_at}")
        amount = transfer.amount if amount is None else amount
        if amount > transfer.amount:
            raise AmountOutOfRange(f"at most the {transfer.amount} reserved can be posted")
        accounts = self._load_reserving_accounts(transfer)
        accounts[transfer.debit_account_id].settle_debit(transfer_id, transfer.amount, amount)
        accounts[transfer.credit_account_id].settle_credit(transfer_id, transfer.amount, amount)
        transfer.capture(amount)
        recordings = self.save(*accounts.values(), transfer)
        return TransferView.of(transfer, recordings[-1].notification.id)

    def _attempt_void_pending(self, transfer_id: UUID) -> TransferView:
        transfer = self._pending_transfer(transfer_id)
        reason = "expired" if transfer.is_expired(self.clock()) else "voided"
        return self._void(transfer, reason)

    def _attempt_expire(self, transfer_id: UUID) -> int:
        transfer = self._find(transfer_id)
        if not isinstance(transfer, Transfer) or not transfer.is_expired(self.clock()):
            return 0
        self._void(transfer, "expired")
        return 1

    def _load_reserving_accounts(self, transfer: Transfer) -> dict[UUID, Account]:
        """The two accounts of a pending transfer, still holding its reservation.

        The transfer was read before the accounts. If another command settled it in
        between, the accounts no longer hold the amount: that read was stale, so retry
        (the save would conflict on the transfer's version anyway).
        """
        accounts = self._load_accounts([transfer.request])
        debit = accounts[transfer.debit_account_id]
        credit = accounts[transfer.credit_account_id]
        if debit.pending_debits < transfer.amount or credit.pending_credits < transfer.amount:
            raise _StaleRead(transfer.id)
        return accounts

    def _pending_transfer(self, transfer_id: UUID) -> Transfer:
        transfer = self._get_transfer(transfer_id)
        if transfer.status != PENDING:
            raise TransferNotPending(f"transfer {transfer_id} is {transfer.status}")
        return transfer

    def _void(self, transfer: Transfer, reason: str) -> TransferView:
        accounts = self._load_reserving_accounts(transfer)
        accounts[transfer.debit_account_id].release(transfer.id, "debit", transfer.amount)
        accounts[transfer.credit_account_id].release(transfer.id, "credit", transfer.amount)
        transfer.void(reason)
        recordings = self.save(*accounts.values(), transfer)
        return TransferView.of(transfer, recordings[-1].notification.id)

    def _attempt_reverse(
        self, original_id: UUID, amount: int | None, reversal_id: UUID, description: str
    ) -> TransferView:
        original = self._get_transfer(original_id)
        existing = self._find(reversal_id)
        if existing is not None:
            request = _reversal_request(
                original, existing.amount if amount is None else amount, description
            )
            return self._replay_transfer(existing, request)
        if original.status != POSTED:
            raise TransferNotPosted(f"transfer {original_id} is {original.status}")
        remaining = original.reversible_amount
        amount = remaining if amount is None else amount
        if not 1 <= amount <= remaining:
            raise AmountOutOfRange(f"{remaining} of transfer {original_id} is left to reverse")
        request = _reversal_request(original, amount, description)
        accounts = self._load_accounts([request])
        reversal = self._apply_or_record_rejection(reversal_id, request, accounts)
        original.record_reversal(reversal_id, amount)
        recordings = self.save(*accounts.values(), original, reversal)
        return TransferView.of(reversal, recordings[-1].notification.id)


def _reversal_request(original: Transfer, amount: int, description: str) -> TransferRequest:
    return TransferRequest(
        debit_account_id=original.credit_account_id,
        credit_account_id=original.debit_account_id,
        amount=amount,
        currency=original.currency,
        description=description,
        metadata={},
        reverses=original.id,
    )
