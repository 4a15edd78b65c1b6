"""What every projection shares: decoded events with their positions, the boundary
of a save, and the table plumbing for live and rebuilding copies.

A projection never ends a view transaction between two events of one save. The log
has no transaction markers, so the boundary is derived from the model: every event
that moves or reserves money (``Debited``, ``Credited``, ``DebitReserved``,
``CreditReserved``, ``ReservationReleased``) carries a ``transfer_id``, and the save
that writes it ends with an event of that Transfer aggregate (``Posted``, ``Pending``,
``PendingPosted``, ``PendingVoided``; a reversal's ``Posted`` comes after the
original's ``Reversed``). A position is a boundary when every transfer touched so far
has had its Transfer event, which makes each transfer, and each atomic batch of
transfers, whole inside one view transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from infrastructure.views import ViewTransaction
from projections.failures import clear_failures, create_failures_table

REBUILD_SUFFIX = "__rebuild"
REBUILD_TRACKING_SUFFIX = ":rebuild"


@dataclass(frozen=True, slots=True)
class Positioned:
    """One event of the log, as the projections read it (see ``decoding.py``).

    Ids are 32-digit hex strings and timestamps ISO 8601 strings, the forms the views
    store, so a rebuild converts nothing it does not need.
    """

    position: int
    kind: str  # "Account.Credited", "Transfer.Posted", ...
    originator_id: str
    originator_version: int
    data: dict[str, Any]


def whole_saves(events: Sequence[Positioned]) -> int:
    """How many leading ``events`` form whole saves (see the module docstring)."""
    return sum(len(save) for save in _saves(events))


def split_saves(events: Sequence[Positioned]) -> Iterator[Sequence[Positioned]]:
    """``events`` (whole saves) one save at a time, by the same boundary rule."""
    done = 0
    for save in _saves(events):
        done += len(save)
        yield save
    assert done == len(events), "events do not end on a save boundary"


def _saves(events: Sequence[Positioned]) -> Iterator[Sequence[Positioned]]:
    """The whole saves at the head of ``events``, one at a time: a save ends where no
    transfer whose postings were seen is still waiting for its Transfer event."""
    open_transfers: set[str] = set()
    start = 0
    for index, positioned in enumerate(events):
        if positioned.kind.startswith("Transfer."):
            open_transfers.discard(positioned.originator_id)
        else:
            transfer_id = positioned.data.get("transfer_id")
            if transfer_id is not None:
                open_transfers.add(transfer_id)
        if not open_transfers:
            yield events[start : index + 1]
            start = index + 1


def view_text(text: str) -> str:
    """``text`` as a view stores it: NUL becomes U+FFFD. PostgreSQL text cannot hold
    NUL, and one such event must not stop a view for good; the event store keeps the
    original, and SQLite views store the same replacement so both kinds agree."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


class Projection(Protocol):
    """A read model: its tables, and how a batch of whole saves changes them."""

    name: str
    # Logical table name -> CREATE TABLE template; ``{table}`` is the physical name.
    tables: Mapping[str, str]
    # Logical table name -> CREATE INDEX templates with ``{index}`` and ``{table}``.
    indexes: Mapping[str, Sequence[str]]

    def apply(
        self, tx: ViewTransaction, tables: Mapping[str, str], events: Sequence[Positioned]
    ) -> None: ...


def physical_tables(projection: Projection, rebuilding: bool) -> dict[str, str]:
    suffix = REBUILD_SUFFIX if rebuilding else ""
    return {logical: logical + suffix for logical in projection.tables}


def tracking_name(projection: Projection, rebuilding: bool) -> str:
    return projection.name + (REBUILD_TRACKING_SUFFIX if rebuilding else "")


def create_tables(
    tx: ViewTransaction, projection: Projection, rebuilding: bool, generation: str
) -> None:
    """Creates the projection's tables (if missing) and its tracking row at 0.

    Live tables get their indexes at once. Fresh tables of a rebuild get them just
    before the swap (``create_indexes``): one sort of the loaded rows costs a fraction
    of keeping an index up to date row by row.
    """
    tx.lock_schema()
    tables = physical_tables(projection, rebuilding)
    for logical, template in projection.tables.items():
        if not tx.table_exists(tables[logical]):
            tx.execute(template.replace("{table}", tables[logical]))
        else:
            widen_columns(tx, tables[logical], template)
    if not rebuilding:
        create_indexes(tx, projection, rebuilding, generation)
        create_failures_table(tx)
    name = tracking_name(projection, rebuilding)
    if name not in tx.positions():
        tx.set_position(name, 0)


def widen_columns(tx: ViewTransaction, table: str, template: str) -> None:
    """Gives the ``{wide}`` columns of ``template`` their type in a table made before
    they had it (a 64-bit INTEGER or BIGINT), keeping every row exactly: every value
    stored so far fits in 64 bits. PostgreSQL alters the columns; SQLite, which cannot
    change a column's type, copies the rows into a new table (whose indexes
    ``create_indexes`` makes again)."""
    wide = _WIDE_COLUMN.findall(template)
    declared = tx.column_types(table)
    wide_type = tx.dialect.types["wide"].upper()
    narrow = [column for column in wide if declared.get(column) != wide_type]
    if not narrow:
        return
    if tx.dialect.is_sqlite:
        widened = f"{table}{WIDEN_SUFFIX}"
        tx.execute(f"DROP TABLE IF EXISTS {widened}")
        tx.execute(template.replace("{table}", widened))
        tx.execute(f"INSERT INTO {widened} SELECT * FROM {table}")
        tx.execute(f"DROP TABLE {table}")
        tx.execute(f"ALTER TABLE {widened} RENAME TO {table}")
        return
    for column in narrow:
        tx.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {wide_type}")


_WIDE_COLUMN = re.compile(r"(\w+) \{wide\}")
WIDEN_SUFFIX = "__widen"


def create_indexes(
    tx: ViewTransaction, projection: Projection, rebuilding: bool, generation: str
) -> None:
    """Creates the indexes a projection's tables lack.

    Index names carry ``generation`` because an index keeps its name when its table is
    renamed by a swap; a fresh name per rebuild never collides with the live ones.
    """
    tables = physical_tables(projection, rebuilding)
    for logical, templates in projection.indexes.items():
        existing = tx.index_names(tables[logical])
        for number, template in enumerate(templates):
            prefix = f"{logical}_{number}_"
            if any(name.startswith(prefix) for name in existing):
                continue
            index = prefix + generation
            tx.execute(template.replace("{index}", index).replace("{table}", tables[logical]))


def drop_tables(tx: ViewTransaction, projection: Projection, rebuilding: bool) -> None:
    for table in physical_tables(projection, rebuilding).values():
        tx.execute(f"DROP TABLE IF EXISTS {table}")
    tx.forget(tracking_name(projection, rebuilding))


def swap_in(tx: ViewTransaction, projection: Projection, position: int) -> None:
    """Replaces the live tables by the rebuilt ones, in the caller's transaction; a
    failure the live view recorded at or before ``position`` is behind it now."""
    live = physical_tables(projection, rebuilding=False)
    rebuilt = physical_tables(projection, rebuilding=True)
    for logical in projection.tables:
        tx.execute(f"DROP TABLE IF EXISTS {live[logical]}")
        tx.execute(f"ALTER TABLE {rebuilt[logical]} RENAME TO {live[logical]}")
    tx.set_position(tracking_name(projection, rebuilding=False), position)
    tx.forget(tracking_name(projection, rebuilding=True))
    create_failures_table(tx)
    clear_failures(tx, [tracking_name(projection, rebuilding=False)], position)


class TransferFacts:
    """The currency and description of each transfer whose postings are in a batch.

    Postings (``Debited``/``Credited``) carry neither; the Transfer event of the same
    save does, except ``PendingPosted``, whose facts were recorded by ``Pending`` in
    an earlier save. Those are kept in a small per-projection table (``pending``)
    until the transfer is posted or voided.
    """

    def __init__(
        self, tx: ViewTransaction, pending_table: str, events: Sequence[Positioned]
    ) -> None:
        self.facts: dict[str, tuple[str, str]] = {}
        started: list[tuple[str, str, str]] = []
        finished: list[str] = []
        for positioned in events:
            kind, data = positioned.kind, positioned.data
            if kind in ("Transfer.Posted", "Transfer.Pending", "Transfer.Rejected"):
                description = tx.private.seal(view_text(data["description"]))
                facts = (data["currency"], description)
                self.facts[positioned.originator_id] = facts
                if kind == "Transfer.Pending":
                    started.append((positioned.originator_id, *facts))
            elif kind in ("Transfer.PendingPosted", "Transfer.PendingVoided"):
                finished.append(positioned.originator_id)
        for transfer_id in [t for t in finished if t not in self.facts]:
            rows = tx.fetchall(
                "SELECT currency, description FROM {table} WHERE transfer_id = ?",
                (transfer_id,),
                table=pending_table,
            )
            assert rows, f"pending transfer {transfer_id} has no recorded facts"
            self.facts[transfer_id] = (rows[0][0], rows[0][1])
        tx.executemany(
            "INSERT INTO {table} (transfer_id, currency, description) VALUES (?, ?, ?)",
            started,
            table=pending_table,
        )
        tx.executemany(
            "DELETE FROM {table} WHERE transfer_id = ?",
            [(transfer_id,) for transfer_id in finished],
            table=pending_table,
        )

    def currency(self, transfer_id: str) -> str:
        return self.facts[transfer_id][0]

    def description(self, transfer_id: str) -> str:
        return self.facts[transfer_id][1]


PENDING_TABLE_TEMPLATE = (
    "CREATE TABLE {table} (transfer_id {id} PRIMARY KEY, currency TEXT NOT NULL, "
    "description TEXT NOT NULL)"
)
