"""Request and response bodies of the /v1 API.

Requests forbid unknown fields and take amounts as strict JSON integers: a string, a
float, a boolean, NaN or an exponent is a 422 before the ledger sees it. The ledger
then checks ranges (1..10**15) and answers ``amount_out_of_range``. The field types,
their descriptions and limits are in ``api.fields``; the examples in ``api.examples``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api import examples
from api.fields import (
    ACCOUNT_STATUS,
    CURRENCY_OUT,
    METADATA_DESCRIPTION,
    MINOR_UNITS,
    POSITION_DESCRIPTION,
    Amount,
    ClientId,
    Currency,
    Metadata,
    OverdraftLimit,
    Text,
    Timeout,
    model_examples,
)
from api.paging import NEXT_CURSOR_DESCRIPTION
from domain.limits import BATCH_SIZE_MAX, TEXT_LENGTH_MAX, TIMEOUT_SECONDS_MAX


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAccount(RequestBody):
    model_config = model_examples(examples.OPEN_ACCOUNT)

    currency: Currency
    name: Text = Field("", description=f"A name for people, at most {TEXT_LENGTH_MAX} characters.")
    overdraft_limit: OverdraftLimit = Field(
        0,
        description="How far below zero the balance may go, in minor units; 0 (the "
        "default) lets it reach zero and no further.",
    )
    metadata: Metadata = Field(default_factory=dict, description=METADATA_DESCRIPTION)
    id: ClientId = None


class UpdateAccount(RequestBody):
    model_config = model_examples(examples.UPDATE_ACCOUNT, examples.CHANGE_OVERDRAFT)

    name: Text | None = Field(
        None, description=f"The new name, at most {TEXT_LENGTH_MAX} characters; null keeps it."
    )
    metadata: Metadata | None = Field(
        None,
        description="Replaces the whole map (keys left out are removed); null keeps it. "
        + METADATA_DESCRIPTION,
    )
    overdraft_limit: OverdraftLimit | None = Field(
        None,
        description="The new overdraft limit in minor units. Sent on its own only: a "
        "request with it and name or metadata is refused.",
    )


class MoveMoney(RequestBody):
    model_config = model_examples(examples.DEPOSIT)

    amount: Amount
    description: Text = Field(
        "", description=f"Shown on the statement, at most {TEXT_LENGTH_MAX} characters."
    )
    metadata: Metadata = Field(default_factory=dict, description=METADATA_DESCRIPTION)
    id: ClientId = None


class CreateTransfer(RequestBody):
    model_config = model_examples(examples.CREATE_TRANSFER_NOW, examples.CREATE_TRANSFER)

    from_account: UUID = Field(description="The account debited (its id).")
    to_account: UUID = Field(description="The account credited (its id).")
    amount: Amount
    currency: Currency = Field(description="Must be the currency of both accounts.")
    description: Text = Field(
        "", description=f"Shown on the statements, at most {TEXT_LENGTH_MAX} characters."
    )
    metadata: Metadata = Field(default_factory=dict, description=METADATA_DESCRIPTION)
    id: ClientId = None
    pending: StrictBool = Field(
        False,
        description="True reserves the amount now (status `pending`); post or void it "
        "later. False (the default) moves the money at once.",
    )
    timeout_seconds: Timeout | None = Field(
        None,
        description="Pending transfers only (refused otherwise): seconds, 1 to "
        f"{TIMEOUT_SECONDS_MAX}, after which a transfer not yet posted is voided. Null: it "
        "waits until posted or voided.",
    )

    def batch_item(self, transfer_id: UUID | None) -> dict[str, Any]:
        """The keyword arguments ``Ledger.transfer_batch`` takes for this transfer."""
        return {
            "transfer_id": transfer_id,
            "from_account": self.from_account,
            "to_account": self.to_account,
            "amount": self.amount,
            "currency": self.currency,
            "description": self.description,
            "metadata": self.metadata,
            "pending": self.pending,
            "timeout_seconds": self.timeout_seconds,
        }


class CreateBatch(RequestBody):
    model_config = model_examples(examples.CREATE_BATCH)

    transfers: list[CreateTransfer] = Field(
        min_length=1,
        max_length=BATCH_SIZE_MAX,
        description=f"1 to {BATCH_SIZE_MAX} transfers, applied in order, all or none.",
    )


class PostPending(RequestBody):
    model_config = model_examples(examples.POST_PENDING)

    amount: Amount | None = Field(
        None,
        description="Minor units to capture, at most the pending amount; the rest is "
        "released. Null or absent: the whole pending amount.",
    )


class ReverseTransfer(RequestBody):
    model_config = model_examples(examples.REVERSE_TRANSFER)

    amount: Amount | None = Field(
        None,
        description="Minor units to send back, at most what is left to reverse. Null or "
        "absent: all that is left.",
    )
    id: ClientId = None
    description: Text | None = Field(
        None,
        description=f"Shown on the statements, at most {TEXT_LENGTH_MAX} characters; null "
        "takes the reversed transfer's description.",
    )


class ResponseBody(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AccountOut(ResponseBody):
    model_config = model_examples(examples.ACCOUNT)

    id: UUID = Field(description="The account's id.")
    currency: str = Field(description=CURRENCY_OUT)
    name: str = Field(description="The account's name; may be empty.")
    status: str = Field(description=ACCOUNT_STATUS)
    balance: int = Field(description=f"{MINOR_UNITS}: posted credits minus posted debits.")
    available_balance: int = Field(
        description=f"{MINOR_UNITS}: the balance minus pending debits; what a new debit "
        "may use, plus the overdraft limit."
    )
    pending_debits: int = Field(description=f"{MINOR_UNITS} reserved by pending transfers out.")
    pending_credits: int = Field(description=f"{MINOR_UNITS} on their way in, still pending.")
    overdraft_limit: int = Field(description=f"{MINOR_UNITS}: how far below zero it may go.")
    metadata: dict[str, str] = Field(description="Your key-value strings.")
    version: int = Field(
        description="Number of events of the account; also sent as the ETag header, to "
        "send back as If-Match."
    )
    created_at: datetime = Field(description="When it was opened (RFC 3339, UTC).")
    updated_at: datetime = Field(description="When it last changed (RFC 3339, UTC).")
    position: int | None = Field(None, description=POSITION_DESCRIPTION)


class TransferOut(ResponseBody):
    model_config = model_examples(examples.TRANSFER)

    id: UUID = Field(description="The transfer's id.")
    from_account: UUID = Field(description="The account debited.")
    to_account: UUID = Field(description="The account credited.")
    amount: int = Field(description=f"{MINOR_UNITS}, as requested.")
    currency: str = Field(description=CURRENCY_OUT)
    status: str = Field(
        description="`posted` (money moved), `pending` (reserved), `voided` (released) "
        "or `rejected` (refused; see error_code)."
    )
    description: str = Field(description="As given; may be empty.")
    metadata: dict[str, str] = Field(description="Your key-value strings.")
    created_at: datetime = Field(description="When it was requested (RFC 3339, UTC).")
    updated_at: datetime = Field(description="When it last changed (RFC 3339, UTC).")
    position: int | None = Field(None, description=POSITION_DESCRIPTION)
    reverses: UUID | None = Field(
        None, description="The id of the transfer this one reverses; null if none."
    )
    reversed_amount: int = Field(
        description=f"{MINOR_UNITS} sent back so far by reversals of this transfer."
    )
    posted_amount: int = Field(
        description=f"{MINOR_UNITS} that moved: the amount, or what was captured of a "
        "pending transfer; 0 while pending, voided or rejected."
    )
    pending: bool = Field(description="Whether it was created as a pending transfer.")
    expires_at: datetime | None = Field(
        None,
        description="When a pending transfer not yet posted is voided (RFC 3339, UTC); "
        "null without a timeout.",
    )
    error_code: str | None = Field(
        None, description="Why a rejected transfer was refused (a problem code); else null."
    )
    version: int = Field(description="Number of events of the transfer.")


class BatchOut(BaseModel):
    model_config = model_examples(examples.BATCH)

    transfers: list[TransferOut] = Field(description="One per item, in the request's order.")
    position: int | None = Field(None, description=POSITION_DESCRIPTION)


class AccountEventOut(ResponseBody):
    version: int = Field(description="The event's version in the account's stream, from 1.")
    type: str = Field(
        description="What happened: Opened, Credited, Debited, DebitReserved, Frozen..."
    )
    timestamp: datetime = Field(description="When it was recorded (RFC 3339, UTC).")
    data: dict[str, Any] = Field(
        description="The event's fields as stored; amounts in minor units."
    )


class AccountEventsPage(BaseModel):
    model_config = model_examples(examples.ACCOUNT_EVENTS)

    items: list[AccountEventOut] = Field(description="Events, oldest first.")
    next_cursor: str | None = Field(description=NEXT_CURSOR_DESCRIPTION)


class BalanceOut(ResponseBody):
    model_config = model_examples(examples.BALANCE)

    account_id: UUID = Field(description="The account's id.")
    currency: str = Field(description=CURRENCY_OUT)
    version: int = Field(description="The account's version at that point.")
    timestamp: datetime = Field(description="When that version was recorded (RFC 3339, UTC).")
    balance: int = Field(description=f"{MINOR_UNITS}: posted credits minus posted debits.")
    available_balance: int = Field(description=f"{MINOR_UNITS}: the balance minus pending debits.")
    pending_debits: int = Field(description=f"{MINOR_UNITS} reserved by pending transfers out.")
    pending_credits: int = Field(description=f"{MINOR_UNITS} on their way in, still pending.")
    status: str = Field(description=ACCOUNT_STATUS)


class Health(BaseModel):
    model_config = model_examples(examples.HEALTH, examples.READY)

    status: str = Field(
        description="`ok` from /healthz (the process is up); from /readyz, `ready` (the "
        "event store and the views answer) or `degraded` (they answer, but a view is "
        "stalled, or this process does not keep the views up to date)."
    )
    position: int | None = Field(
        None,
        description="The log's head position; null from /healthz, and from /readyz "
        "without read access.",
    )
    stalled: list[str] | None = Field(
        None,
        description="From /readyz when `status` is `degraded`: the views stalled before "
        "an event they cannot apply (GET /v1/projections says where and why).",
    )
    detail: str | None = Field(
        None,
        description="From /readyz when `status` is `degraded`: what is wrong, without "
        "positions or error messages.",
    )
