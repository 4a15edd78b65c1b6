"""The rules of moving money, as plain functions over loaded aggregates.

Each ``decide_*`` function checks every guard before it changes anything, so a
refusal leaves the aggregates exactly as it found them; on success it changes the
given copies and returns what the command created. Callers (the Ledger's use cases
and the group-commit writer) own the copies: they save them, or drop them whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from uuid import UUID

from domain.account import Account
from domain.errors import AmountOutOfRange, InvalidRequest, SameAccount
from domain.limits import check_metadata, check_text, check_timeout
from domain.money import check_amount, check_currency, check_not_reserved
from domain.transfer import Transfer, TransferRequest


def transfer_request(
    from_account: UUID,
    to_account: UUID,
    amount: int,
    currency: str,
    description: str = "",
    metadata: Mapping[str, str] | None = None,
    *,
    pending: bool = False,
    timeout_seconds: int | None = None,
) -> TransferRequest:
    """A checked request. Raises InvalidRequest, AmountOutOfRange, SameAccount:
    malformed input is refused here, before anything is loaded or recorded."""
    check_amount(amount)
    check_currency(currency)
    check_text("description", description)
    if from_account == to_account:
        raise SameAccount("a transfer needs two different accounts")
    if timeout_seconds is not None:
        if not pending:
            raise InvalidRequest("timeout_seconds applies to pending transfers only")
        check_timeout(timeout_seconds)
    return TransferRequest(
        debit_account_id=from_account,
        credit_account_id=to_account,
        amount=amount,
        currency=currency,
        description=description,
        metadata=check_metadata(metadata),
        pending=pending,
        timeout_seconds=timeout_seconds,
    )


def decide_transfer(
    accounts: Mapping[UUID, Account], transfer_id: UUID, request: TransferRequest, now: datetime
) -> Transfer:
    """Posts (or reserves, when pending) ``request`` on the two accounts.

    Raises ReservedId (``transfer_id`` is a world account's: recorded nowhere), or a
    ``TransferRejected`` before any change when a rule refuses it.
    """
    check_not_reserved(transfer_id, "transfer id")
    debit = accounts[request.debit_account_id]
    credit = accounts[request.credit_account_id]
    debit.check_can_move(request.currency)
    credit.check_can_move(request.currency)
    debit.check_can_debit(request.amount, pending=request.pending)
    credit.check_can_credit(request.amount, pending=request.pending)
    if request.pending:
        debit.reserve_debit(transfer_id, request.amount)
        credit.reserve_credit(transfer_id, request.amount)
        expires_at = None
        if request.timeout_seconds is not None:
            expires_at = now + timedelta(seconds=request.timeout_seconds)
        return Transfer.reserve(transfer_id, request, expires_at)
    debit.debit(transfer_id, request.amount)
    credit.credit(transfer_id, request.amount)
    return Transfer.post(transfer_id, request)


def decide_capture(
    accounts: Mapping[UUID, Account],
    transfer: Transfer,
    amount: int,
    request_id: UUID | None = None,
) -> None:
    """Captures ``amount`` of a pending transfer and releases the rest of its hold.

    Raises AmountOutOfRange (more than reserved), AccountFrozen, AccountClosed, and
    BalanceOverflow, which the bound kept when the hold was accepted rules out.
    """
    if amount > transfer.amount:
        raise AmountOutOfRange(f"at most the {transfer.amount} reserved can be posted")
    debit = accounts[transfer.debit_account_id]
    credit = accounts[transfer.credit_account_id]
    for account in (debit, credit):
        account.check_can_move(transfer.currency)
    debit.check_can_settle("debit", transfer.amount, amount)
    credit.check_can_settle("credit", transfer.amount, amount)
    debit.settle_debit(transfer.id, transfer.amount, amount)
    credit.settle_credit(transfer.id, transfer.amount, amount)
    transfer.capture(amount, request_id)


def decide_void(
    accounts: Mapping[UUID, Account],
    transfer: Transfer,
    reason: str,
    request_id: UUID | None = None,
) -> None:
    """Releases both holds of a pending transfer; allowed on frozen accounts."""
    accounts[transfer.debit_account_id].release(transfer.id, "debit", transfer.amount)
    accounts[transfer.credit_account_id].release(transfer.id, "credit", transfer.amount)
    transfer.void(reason, request_id)


def holds_reservation(accounts: Mapping[UUID, Account], transfer: Transfer) -> bool:
    """Whether the accounts, as loaded, still hold the pending transfer's amount.

    The transfer is read before its accounts; if another command settled it in
    between, they no longer do, and the reads must be taken again.
    """
    debit = accounts[transfer.debit_account_id]
    credit = accounts[transfer.credit_account_id]
    return debit.pending_debits >= transfer.amount and credit.pending_credits >= transfer.amount


def reversible_amount(original: Transfer, amount: int | None) -> int:
    """``amount`` (default: what is left) if that much of ``original`` can be reversed.

    Raises AmountOutOfRange when more than what is left would be reversed.
    """
    remaining = original.reversible_amount
    amount = remaining if amount is None else amount
    if not 1 <= amount <= remaining:
        raise AmountOutOfRange(f"{remaining} of transfer {original.id} is left to reverse")
    return amount


def reversal_request(original: Transfer, amount: int, description: str) -> TransferRequest:
    """The compensating request for ``amount`` of ``original``: the sides swapped."""
    return TransferRequest(
        debit_account_id=original.credit_account_id,
        credit_account_id=original.debit_account_id,
        amount=amount,
        currency=original.currency,
        description=description,
        metadata={},
        reverses=original.id,
    )
