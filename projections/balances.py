"""The ``balances`` view: one row per account, as the account aggregate would show it.

Each batch loads the rows of the accounts it touches, applies the events in memory
and writes each row back once, so a busy account costs one write per batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from infrastructure.views import ViewTransaction
from projections.base import Positioned

NAME = "balances"
COLUMNS = (
    "account_id", "currency", "name", "status", "is_world", "balance", "available_balance",
    "pending_debits", "pending_credits", "overdraft_limit", "metadata", "version",
    "created_at", "updated_at", "position",
)  # fmt: skip
LOAD_CHUNK_SIZE = 500

_UPSERT = (
    "INSERT INTO {table} ("
    + ", ".join(COLUMNS)
    + ") VALUES ("
    + ", ".join("?" for _ in COLUMNS)
    + ") ON CONFLICT (account_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in COLUMNS[1:])
)

_STATUS_BY_KIND = {
    "Account.Frozen": "frozen",
    "Account.Unfrozen": "open",
    "Account.Closed": "closed",
}


class Balances:
    name = NAME
    tables: Mapping[str, str] = {
        "balances": (
            "CREATE TABLE {table} (account_id {id} PRIMARY KEY, currency TEXT NOT NULL, "
            "name TEXT NOT NULL, status TEXT NOT NULL, is_world {int} NOT NULL, "
            "balance {int} NOT NULL, available_balance {int} NOT NULL, "
            "pending_debits {int} NOT NULL, pending_credits {int} NOT NULL, "
            "overdraft_limit {int} NOT NULL, metadata TEXT NOT NULL, version {int} NOT NULL, "
            "created_at {ts} NOT NULL, updated_at {ts} NOT NULL, position {int} NOT NULL)"
        )
    }
    indexes: Mapping[str, Sequence[str]] = {
        "balances": ("CREATE INDEX {index} ON {table} (currency, account_id)",)
    }

    def apply(
        self, tx: ViewTransaction, tables: Mapping[str, str], events: Sequence[Positioned]
    ) -> None:
        table = tables["balances"]
        accounts = [e for e in events if e.kind.startswith("Account.")]
        if not accounts:
            return
        rows = self._load(tx, table, {e.event.originator_id for e in accounts})
        for positioned in accounts:
            event = positioned.event
            if positioned.kind == "Account.Opened":
                rows[event.originator_id] = _opened(event)
            row = rows.get(event.originator_id)
            assert row is not None, f"account {event.originator_id} has no Opened event"
            _apply(row, positioned)
        dialect = tx.dialect
        written = []
        for account_id, row in rows.items():
            row["available_balance"] = row["balance"] - row["pending_debits"]
            values = [row[column] for column in COLUMNS]
            values[0] = dialect.id_value(account_id)
            values[10] = json.dumps(row["metadata"], sort_keys=True)
            values[12] = dialect.ts_value(row["created_at"])
            values[13] = dialect.ts_value(row["updated_at"])
            written.append(values)
        tx.executemany(_UPSERT, written, table=table)

    def _load(
        self, tx: ViewTransaction, table: str, account_ids: set[UUID]
    ) -> dict[UUID, dict[str, Any]]:
        dialect = tx.dialect
        rows: dict[UUID, dict[str, Any]] = {}
        ids = sorted(account_ids)
        for start in range(0, len(ids), LOAD_CHUNK_SIZE):
            chunk = ids[start : start + LOAD_CHUNK_SIZE]
            marks = ", ".join("?" for _ in chunk)
            found = tx.fetchall(
                f"SELECT {', '.join(COLUMNS)} FROM {{table}} WHERE account_id IN ({marks})",
                [dialect.id_value(account_id) for account_id in chunk],
                table=table,
            )
            for values in found:
                row = dict(zip(COLUMNS, values, strict=True))
                row["metadata"] = json.loads(row["metadata"])
                row["created_at"] = dialect.ts_from(row["created_at"])
                row["updated_at"] = dialect.ts_from(row["updated_at"])
                rows[dialect.id_from(row["account_id"])] = row
        return rows


def _opened(event: Any) -> dict[str, Any]:
    return {
        "account_id": event.originator_id,
        "currency": event.currency,
        "name": event.name,
        "status": "open",
        "is_world": int(event.is_world),
        "balance": 0,
        "available_balance": 0,
        "pending_debits": 0,
        "pending_credits": 0,
        "overdraft_limit": event.overdraft_limit,
        "metadata": dict(event.metadata),
        "created_at": event.timestamp,
    }


def _apply(row: dict[str, Any], positioned: Positioned) -> None:
    kind, event = positioned.kind, positioned.event
    if kind in ("Account.Credited", "Account.Debited"):
        row["balance"] = event.balance_after
    elif kind == "Account.DebitReserved":
        row["pending_debits"] += event.amount
    elif kind == "Account.CreditReserved":
        row["pending_credits"] += event.amount
    elif kind == "Account.ReservationReleased":
        side = "pending_debits" if event.side == "debit" else "pending_credits"
        row[side] -= event.amount
    elif kind in _STATUS_BY_KIND:
        row["status"] = _STATUS_BY_KIND[kind]
    elif kind == "Account.MetadataUpdated":
        row["name"] = event.name
        row["metadata"] = dict(event.metadata)
    elif kind == "Account.OverdraftLimitChanged":
        row["overdraft_limit"] = event.overdraft_limit
    row["version"] = event.originator_version
    row["updated_at"] = event.timestamp
    row["position"] = positioned.position
