"""Read-model checks for ``audit verify``: each view row against the replayed account,
and each account as the ledger loads it (through its snapshots) against the replay.

A check snapshots its view (rows and tracking position, in one read transaction)
before the log is streamed; the verifier calls ``check`` when the replay has
reached exactly that position, so a view that lags the log is compared with the
accounts as they were at its own position, never reported for lagging.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, EventSourcingError

from infrastructure.views import ViewStore
from projections.audit.invariants import LedgerInvariants, Problem

BALANCES_FIELDS = (
    "currency", "status", "balance", "available_balance", "pending_debits",
    "pending_credits", "overdraft_limit", "version",
)  # fmt: skip
WIDE_FIELDS = ("balance", "available_balance", "pending_debits", "pending_credits")


class BalancesViewCheck:
    """The ``balances`` view (projections/balances.py): one row per account."""

    name = "read_model:balances"
    table = "balances"

    def __init__(self, views: ViewStore) -> None:
        self.views = views
        self.rows: dict[UUID, dict[str, Any]] = {}

    def load(self) -> int | None:
        """Snapshots the view; returns its position, or None when it is not built."""
        with self.views.read() as tx:
            position = tx.positions().get(self.table)
            if position is None or not tx.table_exists(self.table):
                return None
            found = tx.fetchall(
                f"SELECT account_id, {', '.join(BALANCES_FIELDS)}, position FROM {self.table}"
            )
            dialect = tx.dialect
        self.rows = {
            dialect.id_from(row[0]): dict(zip((*BALANCES_FIELDS, "position"), row[1:], strict=True))
            for row in found
        }
        for row in self.rows.values():
            # A world account's numbers may exceed 64 bits: stored as text on SQLite,
            # as NUMERIC on PostgreSQL (infrastructure/views.py); compared as ints.
            for name in WIDE_FIELDS:
                row[name] = dialect.wide_from(row[name])
        return position

    def check(self, replay: LedgerInvariants, position: int) -> Iterable[Problem]:
        accounts = replay.accounts
        for account_id, account in accounts.items():
            row = self.rows.pop(account_id, None)
            if row is None:
                yield Problem(
                    self.name, f"no {self.table} row for an account opened by {position}",
                    None, account_id,
                )  # fmt: skip
                continue
            for name in BALANCES_FIELDS:
                replayed = getattr(account, name)
                if row[name] != replayed:
                    yield Problem(
                        self.name,
                        f"{self.table} row has {name}={row[name]!r}, the replayed account "
                        f"has {replayed!r}",
                        row["position"],
                        account_id,
                    )
                    break
        for account_id, row in self.rows.items():
            yield Problem(
                self.name,
                f"{self.table} row for an account with no Opened event up to {position}",
                row["position"],
                account_id,
            )
        self.rows = {}


SNAPSHOT_FIELDS = (
    "currency", "status", "balance", "pending_debits", "pending_credits",
    "overdraft_limit", "name", "metadata",
)  # fmt: skip


class TotalsViewCheck:
    """The ``totals`` view (projections/totals.py): one row per currency."""

    name = "read_model:totals"
    table = "totals"
    columns = ("balance_sum", "accounts", "transfers", "rejected")

    def __init__(self, views: ViewStore) -> None:
        self.views = views
        self.rows: dict[str, tuple[int, ...]] = {}

    def load(self) -> int | None:
        with self.views.read() as tx:
            position = tx.positions().get(self.table)
            if position is None or not tx.table_exists(self.table):
                return None
            found = tx.fetchall(f"SELECT currency, {', '.join(self.columns)} FROM {self.table}")
        self.rows = {row[0]: tuple(int(value) for value in row[1:]) for row in found}
        return position

    def check(self, replay: LedgerInvariants, position: int) -> Iterable[Problem]:
        accounts: dict[str, int] = {}
        for account in replay.accounts.values():
            if not account.is_world:
                accounts[account.currency] = accounts.get(account.currency, 0) + 1
        currencies = set(self.rows) | set(replay.sums)
        for currency in sorted(currencies):
            replayed = (
                replay.sums.get(currency, 0),
                accounts.get(currency, 0),
                replay.transfers.get(currency, 0),
                replay.rejected.get(currency, 0),
            )
            row = self.rows.get(currency, (0, 0, 0, 0))
            for name, in_view, in_replay in zip(self.columns, row, replayed, strict=True):
                if in_view != in_replay:
                    yield Problem(
                        self.name,
                        f"{self.table} row {currency} has {name}={in_view}, the replay up to "
                        f"position {position} has {in_replay}",
                        position,
                    )
                    break
        self.rows = {}


class StatementsViewCheck:
    """The ``statements`` view (projections/statements.py): one row per posting,
    compared batch by batch with the postings the replay finds, up to the view's
    position (rows are written once and never change)."""

    name = "read_model:statements"
    table = "statements"

    def __init__(self, views: ViewStore) -> None:
        self.views = views
        self.position = 0

    def load(self) -> int | None:
        with self.views.read() as tx:
            position = tx.positions().get(self.table)
            if position is None or not tx.table_exists(self.table):
                return None
        self.position = position
        return position

    def check(self, replay: LedgerInvariants, position: int) -> Iterable[Problem]:
        return ()

    def check_postings(
        self, after: int, last: int, postings: Sequence[tuple[int, UUID, UUID, int, int]]
    ) -> Iterable[Problem]:
        upto = min(last, self.position)
        if after >= upto:
            return
        with self.views.read() as tx:
            rows = tx.fetchall(
                f"SELECT position, account_id, transfer_id, amount, balance_after "
                f"FROM {self.table} WHERE position > ? AND position <= ? ORDER BY position",
                (after, upto),
            )
            dialect = tx.dialect
        in_view = {
            int(r[0]): (dialect.id_from(r[1]), dialect.id_from(r[2]), int(r[3]), int(r[4]))
            for r in rows
        }
        for position, account_id, transfer_id, amount, balance_after in postings:
            if position > upto:
                break
            row = in_view.pop(position, None)
            if row != (account_id, transfer_id, amount, balance_after):
                found = "no row" if row is None else f"{row[2]} (balance_after {row[3]})"
                yield Problem(
                    self.name,
                    f"{self.table} has {found} for the posting of {amount} "
                    f"(balance_after {balance_after}) of transfer {transfer_id}",
                    position,
                    account_id,
                )
        for position, row in sorted(in_view.items()):
            yield Problem(
                self.name, f"{self.table} has a row with no posting in the log", position, row[0]
            )


class SnapshotsCheck:
    """Accounts as the ledger loads them (latest snapshot + later events) against the
    replay from events alone. Snapshots are a cache outside the chain; a changed one
    would change every balance the API serves, so it is checked here.

    Each account is loaded at its replayed version (which also bypasses the
    in-process aggregate cache), so writes during the run do not matter. Costs one
    load per account.
    """

    name = "snapshots"

    def __init__(self, application: Application[Any]) -> None:
        self.application = application

    def load(self) -> int | None:
        return int(self.application.recorder.max_notification_id() or 0)

    def check(self, replay: LedgerInvariants, position: int) -> Iterable[Problem]:
        repository = self.application.repository
        for account_id, replayed in replay.accounts.items():
            try:
                loaded: Aggregate = repository.get(account_id, version=replayed.version)
            except (AssertionError, EventSourcingError, KeyError, TypeError, ValueError) as error:
                # A broken event stream (the log's own checks say where) or snapshot; the
                # library asserts that a stream starts with its created event.
                yield Problem(self.name, f"the ledger cannot load it: {error!r}", None, account_id)
                continue
            if loaded.version != replayed.version:
                yield Problem(
                    self.name,
                    f"the ledger loads version {loaded.version}, the events reach "
                    f"{replayed.version}",
                    None,
                    account_id,
                )
                continue
            for name in SNAPSHOT_FIELDS:
                if getattr(loaded, name) != getattr(replayed, name):
                    yield Problem(
                        self.name,
                        f"the ledger loads {name}={getattr(loaded, name)!r} (from a snapshot), "
                        f"the events say {getattr(replayed, name)!r}",
                        None,
                        account_id,
                    )
                    break
