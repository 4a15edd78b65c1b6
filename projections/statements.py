"""The ``statements`` view: one row per posting, for paged account statements.

A posting is a ``Debited`` (negative amount) or ``Credited`` (positive) event; its row
keeps the balance after it, so a page of a statement needs no running sum. The amount
is at most 10^15; the balance after it is a world account's too, so a ``{wide}`` column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from infrastructure.views import ViewTransaction
from projections.base import PENDING_TABLE_TEMPLATE, Positioned, TransferFacts

NAME = "statements"
_SIGN = {"Account.Credited": 1, "Account.Debited": -1}
_INSERT = (
    "INSERT INTO {table} (position, account_id, transfer_id, amount, balance_after, "
    "timestamp, description) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class Statements:
    name = NAME
    tables: Mapping[str, str] = {
        "statements": (
            "CREATE TABLE {table} (position {int} PRIMARY KEY, account_id {id} NOT NULL, "
            "transfer_id {id} NOT NULL, amount {int} NOT NULL, balance_after {wide} NOT NULL, "
            "timestamp {ts} NOT NULL, description TEXT NOT NULL)"
        ),
        "statements_pending": PENDING_TABLE_TEMPLATE,
    }
    indexes: Mapping[str, Sequence[str]] = {
        "statements": ("CREATE INDEX {index} ON {table} (account_id, position)",)
    }

    def apply(
        self, tx: ViewTransaction, tables: Mapping[str, str], events: Sequence[Positioned]
    ) -> None:
        facts = TransferFacts(tx, tables["statements_pending"], events)
        wide_value = tx.dialect.wide_value
        rows = []
        for positioned in events:
            sign = _SIGN.get(positioned.kind)
            if sign is None:
                continue
            data = positioned.data
            transfer_id = data["transfer_id"]
            rows.append(
                (
                    positioned.position,
                    positioned.originator_id,
                    transfer_id,
                    sign * data["amount"],
                    wide_value(data["balance_after"]),
                    data["timestamp"],
                    facts.description(transfer_id),
                )
            )
        tx.executemany(_INSERT, rows, table=tables["statements"])
