"""Request and response bodies of the /v1 API.

Requests forbid unknown fields and take amounts as strict JSON integers: a string, a
float, a boolean, NaN or an exponent is a 422 before the ledger sees it. The ledger
then checks ranges (1..10**15) and answers ``amount_out_of_range``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from api.paging import NEXT_CURSOR_DESCRIPTION
from domain.ledger import BATCH_SIZE_MAX
from domain.limits import (
    METADATA_KEY_LENGTH_MAX,
    METADATA_KEYS_MAX,
    METADATA_VALUE_LENGTH_MAX,
    TEXT_LENGTH_MAX,
)

Amount = Annotated[StrictInt, Field(description="minor units (cents), 1..10**15", examples=[2500])]
Currency = Annotated[
    str,
    StringConstraints(min_length=3, max_length=3),
    Field(description="ISO 4217 code", examples=["USD"]),
]
Text = Annotated[str, StringConstraints(max_length=TEXT_LENGTH_MAX)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=METADATA_KEY_LENGTH_MAX)]
MetadataValue = Annotated[str, StringConstraints(max_length=METADATA_VALUE_LENGTH_MAX)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(max_length=METADATA_KEYS_MAX, examples=[{"order": "A-1001"}]),
]
ClientId = Annotated[
    UUID | None,
    Field(description="idempotency: the id to create; else from Idempotency-Key, else random"),
]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAccount(RequestBody):
    currency: Currency
    name: Text = ""
    overdraft_limit: StrictInt = Field(0, description="how far below zero the balance may go")
    metadata: Metadata = Field(default_factory=dict)
    id: ClientId = None


class UpdateAccount(RequestBody):
    name: Text | None = None
    metadata: Metadata | None = Field(None, description="replaces the whole map")
    overdraft_limit: StrictInt | None = Field(
        None, description="on its own only: a separate command from name and metadata"
    )


class MoveMoney(RequestBody):
    amount: Amount
    description: Text = ""
    metadata: Metadata = Field(default_factory=dict)
    id: ClientId = None


class CreateTransfer(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "from_account": "0b5c3a4e-6f1e-4d55-9a3b-2f7e0c1d9a10",
                "to_account": "7c2e9f14-3a6b-4c8d-8e1f-5a4b3c2d1e0f",
                "amount": 2500,
                "currency": "USD",
                "description": "rent",
            }
        },
    )

    from_account: UUID
    to_account: UUID
    amount: Amount
    currency: Currency
    description: Text = ""
    metadata: Metadata = Field(default_factory=dict)
    id: ClientId = None
    pending: StrictBool = Field(False, description="reserve now, post or void later")
    timeout_seconds: StrictInt | None = Field(
        None, description="a pending transfer not posted in time is voided"
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
    transfers: list[CreateTransfer] = Field(min_length=1, max_length=BATCH_SIZE_MAX)


class PostPending(RequestBody):
    amount: Amount | None = Field(None, description="at most the pending amount; default all")


class ReverseTransfer(RequestBody):
    amount: Amount | None = Field(None, description="default: all that is left to reverse")
    id: ClientId = None
    description: Text | None = None


class ResponseBody(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AccountOut(ResponseBody):
    id: UUID
    currency: str
    name: str
    status: str = Field(description="open | frozen | closed")
    balance: int
    available_balance: int
    pending_debits: int
    pending_credits: int
    overdraft_limit: int
    metadata: dict[str, str]
    version: int = Field(description="also sent as the ETag header")
    created_at: datetime
    updated_at: datetime
    position: int | None = Field(None, description="log position after this command")


class TransferOut(ResponseBody):
    id: UUID
    from_account: UUID
    to_account: UUID
    amount: int
    currency: str
    status: str = Field(description="posted | pending | voided | rejected")
    description: str
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    position: int | None = Field(None, description="log position after this command")
    reverses: UUID | None = None
    reversed_amount: int
    posted_amount: int
    pending: bool
    expires_at: datetime | None = None
    error_code: str | None = Field(None, description="why a rejected transfer was refused")
    version: int


class BatchOut(BaseModel):
    transfers: list[TransferOut]
    position: int | None = None


class AccountEventOut(ResponseBody):
    version: int
    type: str
    timestamp: datetime
    data: dict[str, Any]


class AccountEventsPage(BaseModel):
    items: list[AccountEventOut]
    next_cursor: str | None = Field(description=NEXT_CURSOR_DESCRIPTION)


class BalanceOut(ResponseBody):
    account_id: UUID
    currency: str
    version: int
    timestamp: datetime
    balance: int
    available_balance: int
    pending_debits: int
    pending_credits: int
    status: str


class Health(BaseModel):
    status: str
    position: int | None = None
