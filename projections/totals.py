"""The ``totals`` view: per currency, the sum of all balances (always exactly 0, as
every posting has its opposite in the same save), the number of accounts (not counting
the world account), of accepted transfers (posted or reserved) and of rejected ones.

The sum is added up in Python, exactly, and stored in a ``{wide}`` column
(infrastructure/views.py): it is 0 after every whole save, but a log that broke that
rule must show its true sum to ``audit verify``, not stop the view on an overflow.
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
    + ", ".join(f"{c} = excluded.{c}" for c in _COUNTERS)
)
LOAD_CHUNK_SIZE = 500


class Totals:
    name = NAME
    tables: Mapping[str, str] = {
        "totals": (
            "CREATE TABLE {table} (currency TEXT PRIMARY KEY, balance_sum {wide} NOT NULL, "
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
        if not deltas:
            return
        table = tables["totals"]
        current = _load(tx, table, sorted(deltas))
        dialect = tx.dialect
        rows = []
        for currency, delta in sorted(deltas.items()):
            stored = current.get(currency, [0, 0, 0, 0])
            counts = [a + b for a, b in zip(stored, delta, strict=True)]
            rows.append((currency, dialect.wide_value(counts[0]), *counts[1:]))
        tx.executemany(_UPSERT, rows, table=table)


def _load(tx: ViewTransaction, table: str, currencies: list[str]) -> dict[str, list[int]]:
    """The stored counts of ``currencies``, as ints."""
    dialect = tx.dialect
    found: dict[str, list[int]] = {}
    for start in range(0, len(currencies), LOAD_CHUNK_SIZE):
        chunk = currencies[start : start + LOAD_CHUNK_SIZE]
        marks = ", ".join("?" for _ in chunk)
        rows = tx.fetchall(
            f"SELECT currency, {', '.join(_COUNTERS)} FROM {{table}} WHERE currency IN ({marks})",
            chunk,
            table=table,
        )
        for currency, balance_sum, *counts in rows:
            found[currency] = [dialect.wide_from(balance_sum), *(int(c) for c in counts)]
    return found
