"""Moving money: single transfers (group-committed or not) and atomic batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from typing import Any
from uuid import UUID

from domain.account import Account
from domain.errors import (
    REJECTIONS_BY_CODE,
    AccountNotFound,
    BatchItemFailed,
    IdempotencyKeyReused,
    InvalidRequest,
    LedgerError,
    OutcomeUnknown,
    SameAccount,
    TransferRejected,
)
from domain.ids import new_id
from domain.limits import check_metadata, check_text, check_timeout
from domain.money import check_amount, check_currency
from domain.store import LedgerStore
from domain.transfer import REJECTED, Transfer, TransferRequest
from domain.views import TransferView

BATCH_SIZE_MAX = 1000


class LedgerMovements(LedgerStore):
    """Transfers and batches. Public methods list the ``LedgerError`` they raise."""

    def transfer(
        self,
        from_account: UUID,
        to_account: UUID,
        amount: int,
        currency: str,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        transfer_id: UUID | None = None,
        *,
        pending: bool = False,
        timeout_seconds: int | None = None,
    ) -> TransferView:
        """Posts (or, with ``pending``, reserves) a transfer, exactly once per id.

        Raises InvalidRequest, AmountOutOfRange, SameAccount, AccountNotFound (recorded
        nowhere); InsufficientFunds, CurrencyMismatch, AccountFrozen, AccountClosed,
        BalanceOverflow (recorded as Transfer.Rejected, and raised again on a retry);
        IdempotencyKeyReused; ConcurrencyConflict.
        """
        future = self.submit_transfer(
            from_account, to_account, amount, currency, description, metadata, transfer_id,
            pending=pending, timeout_seconds=timeout_seconds,
        )  # fmt: skip
        try:
            return future.result(self.transfer_timeout_seconds)
        except FutureTimeout:
            raise OutcomeUnknown(
                f"no answer within {self.transfer_timeout_seconds} s; retry with the same id"
            ) from None

    def submit_transfer(
        self,
        from_account: UUID,
        to_account: UUID,
        amount: int,
        currency: str,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        transfer_id: UUID | None = None,
        *,
        pending: bool = False,
        timeout_seconds: int | None = None,
    ) -> Future[TransferView]:
        """``transfer`` without waiting: the future holds the view or the error.

        Malformed input raises here, at once. With group commit the transfer is queued
        for the writer; without it, it runs now in this thread.
        """
        request = self._check_request(
            from_account, to_account, amount, currency, description, metadata,
            pending, timeout_seconds,
        )  # fmt: skip
        transfer_id = transfer_id or new_id()
        if self.group_committer is not None:
            return self.group_committer.submit(transfer_id, request)
        future: Future[TransferView] = Future()
        try:
            future.set_result(
                self._retrying(lambda first: self._attempt_transfer(transfer_id, request, first))
            )
        except LedgerError as error:
            future.set_exception(error)
        return future

    def transfer_batch(self, items: Sequence[Mapping[str, Any]]) -> list[TransferView]:
        """Applies 1..1000 transfers in one transaction: all of them or none.

        Each item has the keyword arguments of ``transfer`` and a ``transfer_id``.
        Raises InvalidRequest (size), BatchItemFailed (naming the first failing item,
        nothing written), ConcurrencyConflict. The same ids and items again replay.
        """
        if not 1 <= len(items) <= BATCH_SIZE_MAX:
            raise InvalidRequest(f"a batch holds 1 to {BATCH_SIZE_MAX} transfers")
        planned: list[tuple[UUID, TransferRequest]] = []
        for index, item in enumerate(items):
            try:
                planned.append(self._plan_batch_item(item))
            except LedgerError as error:
                raise BatchItemFailed(index, error) from None
        ids = [transfer_id for transfer_id, _ in planned]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("transfer ids in a batch must be distinct")
        return self._retrying(lambda first: self._attempt_batch(planned, first))

    def get_transfer(self, transfer_id: UUID) -> TransferView:
        """Raises TransferNotFound."""
        return TransferView.of(self._get_transfer(transfer_id))

    # Internals.

    def _check_request(
        self,
        from_account: UUID,
        to_account: UUID,
        amount: int,
        currency: str,
        description: str,
        metadata: Mapping[str, str] | None,
        pending: bool,
        timeout_seconds: int | None,
        reverses: UUID | None = None,
    ) -> TransferRequest:
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
            reverses=reverses,
        )

    def _attempt_transfer(
        self, transfer_id: UUID, request: TransferRequest, first: bool
    ) -> TransferView:
        existing = None if first else self._find(transfer_id)
        if existing is not None:
            return self._replay_transfer(existing, request)
        accounts = self._load_accounts([request])
        transfer = self._apply_or_record_rejection(transfer_id, request, accounts)
        recordings = self.save(*accounts.values(), transfer)
        return TransferView.of(transfer, recordings[-1].notification.id)

    def _replay_transfer(self, existing: Any, request: TransferRequest) -> TransferView:
        if not isinstance(existing, Transfer) or existing.request != request:
            raise IdempotencyKeyReused(f"{existing.id} was used for another request; use a new id")
        if existing.status == REJECTED:
            assert existing.error_code is not None and existing.error_detail is not None
            raise REJECTIONS_BY_CODE[existing.error_code](existing.error_detail)
        return TransferView.of(existing, self.head_position(), replayed=True)

    def _apply(
        self, transfer_id: UUID, request: TransferRequest, accounts: Mapping[UUID, Account]
    ) -> Transfer:
        """Applies one request to loaded accounts; raises a rejection before any change."""
        debit = accounts[request.debit_account_id]
        credit = accounts[request.credit_account_id]
        debit.check_can_move(request.currency)
        credit.check_can_move(request.currency)
        debit.check_can_debit(request.amount)
        credit.check_can_credit(request.amount)
        if request.pending:
            debit.reserve_debit(transfer_id, request.amount)
            credit.reserve_credit(transfer_id, request.amount)
            expires_at = None
            if request.timeout_seconds is not None:
                expires_at = self.clock() + timedelta(seconds=request.timeout_seconds)
            return Transfer.reserve(transfer_id, request, expires_at)
        debit.debit(transfer_id, request.amount)
        credit.credit(transfer_id, request.amount)
        return Transfer.post(transfer_id, request)

    def _apply_or_record_rejection(
        self, transfer_id: UUID, request: TransferRequest, accounts: Mapping[UUID, Account]
    ) -> Transfer:
        """``_apply``, but a business rejection is saved (``Transfer.Rejected``, so a
        retry gets the same answer) before it is raised again."""
        try:
            return self._apply(transfer_id, request, accounts)
        except TransferRejected as rejection:
            self.save(Transfer.reject(transfer_id, request, rejection.code, rejection.detail))
            raise

    def _plan_batch_item(self, item: Mapping[str, Any]) -> tuple[UUID, TransferRequest]:
        transfer_id = item.get("transfer_id") or new_id()
        request = self._check_request(
            item["from_account"], item["to_account"], item["amount"], item["currency"],
            item.get("description", ""), item.get("metadata"),
            item.get("pending", False), item.get("timeout_seconds"),
        )  # fmt: skip
        return transfer_id, request

    def _attempt_batch(
        self, planned: list[tuple[UUID, TransferRequest]], first: bool
    ) -> list[TransferView]:
        if not first:
            existing = [self._find(transfer_id) for transfer_id, _ in planned]
            if any(found is not None for found in existing):
                return self._replay_batch(planned, existing)
        try:
            accounts = self._load_accounts(request for _, request in planned)
        except AccountNotFound as error:
            index = next(
                i for i, (_, r) in enumerate(planned)
                if error.account_id in (r.debit_account_id, r.credit_account_id)
            )  # fmt: skip
            raise BatchItemFailed(index, error) from None
        transfers = []
        for index, (transfer_id, request) in enumerate(planned):
            try:
                transfers.append(self._apply(transfer_id, request, accounts))
            except LedgerError as error:
                # A failed batch records nothing, so no conflict sends a replay to the
                # retry path: look for a replay here, where it can answer the original
                # even though its items would fail now (money spent since, say).
                if first:
                    existing = [self._find(transfer_id) for transfer_id, _ in planned]
                    if any(found is not None for found in existing):
                        return self._replay_batch(planned, existing)
                raise BatchItemFailed(index, error) from None
        recordings = self.save(*accounts.values(), *transfers)
        position = recordings[-1].notification.id
        return [TransferView.of(transfer, position) for transfer in transfers]

    def _replay_batch(
        self, planned: list[tuple[UUID, TransferRequest]], existing: list[Any]
    ) -> list[TransferView]:
        views = []
        for index, ((_, request), found) in enumerate(zip(planned, existing, strict=True)):
            if found is None:
                error = IdempotencyKeyReused("part of this batch was written before")
                raise BatchItemFailed(index, error)
            try:
                views.append(self._replay_transfer(found, request))
            except LedgerError as error:
                raise BatchItemFailed(index, error) from None
        return views
