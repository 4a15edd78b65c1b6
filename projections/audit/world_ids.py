"""World account ids held by something else.

The world account of a currency has a fixed id, uuid5 of ``world:<CUR>`` (see
``domain.money.world_account_id``), and the ledger finds it by that id. An account
opened with that id in another currency, or a transfer with that id, holds it for
good: every deposit and withdrawal of that currency then fails (``currency_mismatch``,
or ``not_found`` when the world account can never be opened). The ledger now refuses
such ids; a store written before is checked here, on each aggregate's first event.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.money import ISO_4217_CODES, world_account_id
from projections.audit.problems import ACCOUNT, TRANSFER, Problem

CHECK = "world_id_squatted"
_CREATED = frozenset(
    {ACCOUNT + "Opened"} | {TRANSFER + name for name in ("Posted", "Pending", "Rejected")}
)


class WorldIds:
    """Reports an aggregate created with a world account's id that is not that world
    account. Knows every ISO 4217 currency's world id, and any other currency's from
    the first event that names it."""

    def __init__(self) -> None:
        self.currency_of: dict[UUID, str] = {world_account_id(c): c for c in ISO_4217_CODES}
        self.currencies = set(ISO_4217_CODES)

    def check(
        self, position: int, originator_id: UUID, topic: str, data: dict[str, Any]
    ) -> Problem | None:
        if topic not in _CREATED:
            return None
        currency = data.get("currency")
        if isinstance(currency, str) and currency not in self.currencies:
            self.currencies.add(currency)
            self.currency_of[world_account_id(currency)] = currency
        world_currency = self.currency_of.get(originator_id)
        if world_currency is None:
            return None
        if topic == ACCOUNT + "Opened":
            if data.get("is_world") is True and currency == world_currency:
                return None  # the world account itself
            what = f"an account opened in {currency}"
        else:
            what = f"a transfer ({topic.rsplit('.', 1)[-1]})"
        return Problem(
            CHECK,
            f"{what} has the id of the {world_currency} world account: while it holds the "
            f"id, no {world_currency} deposit or withdrawal can succeed",
            position,
            originator_id if topic.startswith(ACCOUNT) else None,
        )
