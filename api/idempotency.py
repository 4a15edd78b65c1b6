"""How an Idempotency-Key becomes ids, shared by the HTTP routes and the CLI.

Clients can compute every id themselves: a transfer's id is
``uuid5(IDEMPOTENCY_NAMESPACE, key)``, item *i* of a batch ``uuid5(..., key + ":i")``,
and a settlement (post or void) records ``uuid5(..., key)`` too, scoped to the
transfer it settles. No web framework is imported here, so the CLI starts fast.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from infrastructure.ids import new_id

IDEMPOTENCY_NAMESPACE = uuid5(NAMESPACE_URL, "eventledger:idempotency-key")


def command_id(body_id: UUID | None, idempotency_key: str | None, suffix: str = "") -> UUID:
    """The body ``id``, else uuid5 of the Idempotency-Key (+ suffix), else random."""
    if body_id is not None:
        return body_id
    if idempotency_key is not None:
        return uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key + suffix)
    return new_id()


def settlement_request_id(idempotency_key: str | None) -> UUID | None:
    """The id a post or void records for its Idempotency-Key: uuid5 of the key, as a
    transfer's id is (scoped to the transfer settled); None without a key."""
    return None if idempotency_key is None else uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key)
