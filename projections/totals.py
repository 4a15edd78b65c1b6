"""The ``totals`` view: per currency, the sum of all balances (always exactly 0, as
every posting has its opposite in the same save), the number of accounts (not counting
the world account), of accepted transfers (posted or reserved) and of rejected ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from infrastructure.views import ViewTransaction
from projections.base import PENDING_TABLE_TEMPLATE, Positioned, TransferFacts

NAME = "totals"
_SIGN = {"Account.Credited": 1, "Account.Debited": -1}
_COUNTERS = ("balance_sum", "accounts", "transfers", "rejected")
_UPSERT = (
    "INSERT INTO {table} (currency, balance_sum, accounts, transfers, rejected) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (currency) DO UPDATE SET "
    + ", ".join(f"{c} = {{table}}.{c} + excluded.{c}" for c in _COUNTERS)
)


class Totals:
    name = NAME
    tables: Mapping[str, str] = {
        "totals": (
            "CREATE TABLE {table} (currency TEXT PRIMARY KEY, balance_sum {int} NOT NULL, "
            "accounts {int} NOT NULL, transfers {int} NOT NULL, rejected {int} NOT NULL)"
        ),
        "totals_pending": PENDING_TABLE_TEMPLATE,
    }
    indexes: Mapping[str, Sequence[str]] = {}

    def apply(
        self, tx: ViewTransaction, tables: Mapping[str, str], events: Sequence[Positioned]
    ) -> None:
        facts = TransferFacts(tx, tables["totals_pending"], events)
        deltas: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for positioned in events:
            kind, data = positioned.kind, positioned.data
            sign = _SIGN.get(kind)
            if sign is not None:
                deltas[facts.currency(data["transfer_id"])][0] += sign * data["amount"]
            elif kind == "Account.Opened":
                deltas[data["currency"]][1] += 0 if data["is_world"] else 1
            elif kind in ("Transfer.Posted", "Transfer.Pending"):
                deltas[data["currency"]][2] += 1
            elif kind == "Transfer.Rejected":
                deltas[data["currency"]][3] += 1
        rows = [(currency, *counts) for currency, counts in sorted(deltas.items())]
        tx.executemany(_UPSERT, rows, table=tables["totals"])
