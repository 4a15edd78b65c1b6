"""Path parameters and optional bodies of the routers, as the document describes them."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Body, Path

from api import examples
from api.schemas import PostPending, ReverseTransfer

AccountIdPath = Annotated[
    UUID, Path(description="The account's id, as answered when it was opened.")
]
TransferIdPath = Annotated[
    UUID, Path(description="The transfer's id, as answered when it was created (or the id sent).")
]

# A body that may be left out is documented as "this object or null": the example
# goes on that union, where clients (and the document's readers) look for it.
PostPendingBody = Annotated[PostPending | None, Body(examples=[examples.POST_PENDING])]
ReverseTransferBody = Annotated[ReverseTransfer | None, Body(examples=[examples.REVERSE_TRANSFER])]
