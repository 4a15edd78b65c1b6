"""The ``balances`` view: one row per account, as the account aggregate would show it.

Each batch loads the rows of the accounts it touches, applies the events in memory
and writes each row back once, so a busy account costs one write per batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from infrastructure.private_text import PrivateText
from infrastructure.views import ViewTransaction
from projections.base import Positioned, view_text

NAME = "balances"
COLUMNS = (
    "account_id", "currency", "name", "status", "is_world", "balance", "available_balance",
    "pending_debits", "pending_credits", "overdraft_limit", "metadata", "version",
    "created_at", "updated_at", "position",
)  # fmt: skip
# A world account's may need more than 64 bits: ``{wide}`` columns (infrastructure/views.py).
WIDE_COLUMNS = ("balance", "available_balance", "pending_debits", "pending_credits")
_WIDE_INDEXES = tuple(COLUMNS.index(column) for column in WIDE_COLUMNS)
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
            "balance {wide} NOT NULL, available_balance {wide} NOT NULL, "
            "pending_debits {wide} NOT NULL, pending_credits {wide} NOT NULL, "
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
        rows = self._load(tx, table, {e.originator_id for e in accounts})
        for positioned in accounts:
            if positioned.kind == "Account.Opened":
                rows[positioned.originator_id] = _opened(positioned, tx.private)
            row = rows.get(positioned.originator_id)
            assert row is not None, f"account {positioned.originator_id} has no Opened event"
            _apply(row, positioned, tx.private)
        written = []
        wide_value = tx.dialect.wide_value
        for row in rows.values():
            row["available_balance"] = row["balance"] - row["pending_debits"]
            values = [row[column] for column in COLUMNS]
            for index in _WIDE_INDEXES:
                values[index] = wide_value(values[index])
            written.append(values)
        tx.executemany(_UPSERT, written, table=table)

    def _load(self, tx: ViewTransaction, table: str, account_ids: set[str]) -> dict[str, Any]:
        """The current rows of ``account_ids``, by hex id, as they are stored."""
        dialect = tx.dialect
        rows: dict[str, dict[str, Any]] = {}
        ids = sorted(account_ids)
        for start in range(0, len(ids), LOAD_CHUNK_SIZE):
            chunk = ids[start : start + LOAD_CHUNK_SIZE]
            marks = ", ".join("?" for _ in chunk)
            found = tx.fetchall(
                f"SELECT {', '.join(COLUMNS)} FROM {{table}} WHERE account_id IN ({marks})",
                chunk,
                table=table,
            )
            for values in found:
                row = dict(zip(COLUMNS, values, strict=True))
                row["account_id"] = dialect.id_key(row["account_id"])
                for column in WIDE_COLUMNS:
                    row[column] = dialect.wide_from(row[column])
                rows[row["account_id"]] = row
        return rows


def _metadata(metadata: dict[str, str], private: PrivateText) -> str:
    return private.seal(orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS).decode())


def _opened(positioned: Positioned, private: PrivateText) -> dict[str, Any]:
    data = positioned.data
    return {
        "account_id": positioned.originator_id,
        "currency": data["currency"],
        "name": private.seal(view_text(data["name"])),
        "status": "open",
        "is_world": int(data["is_world"]),
        "balance": 0,
        "available_balance": 0,
        "pending_debits": 0,
        "pending_credits": 0,
        "overdraft_limit": data["overdraft_limit"],
        "metadata": _metadata(data["metadata"], private),
        "created_at": data["timestamp"],
    }


def _apply(row: dict[str, Any], positioned: Positioned, private: PrivateText) -> None:
    kind, data = positioned.kind, positioned.data
    if kind in ("Account.Credited", "Account.Debited"):
        row["balance"] = data["balance_after"]
    elif kind == "Account.DebitReserved":
        row["pending_debits"] += data["amount"]
    elif kind == "Account.CreditReserved":
        row["pending_credits"] += data["amount"]
    elif kind == "Account.ReservationReleased":
        side = "pending_debits" if data["side"] == "debit" else "pending_credits"
        row[side] -= data["amount"]
    elif kind in _STATUS_BY_KIND:
        row["status"] = _STATUS_BY_KIND[kind]
    elif kind == "Account.MetadataUpdated":
        row["name"] = private.seal(view_text(data["name"]))
        row["metadata"] = _metadata(data["metadata"], private)
    elif kind == "Account.OverdraftLimitChanged":
        row["overdraft_limit"] = data["overdraft_limit"]
    row["version"] = positioned.originator_version
    row["updated_at"] = data["timestamp"]
    row["position"] = positioned.position
