"""Stateful property test: random command sequences against the Ledger and a model.

Goal: whatever order clients call the use cases in, the ledger answers what a plain
model of the rules answers, and its books stay balanced.

Method: a hypothesis ``RuleBasedStateMachine`` opens accounts (USD and EUR, several
overdraft limits), deposits, withdraws, transfers, reserves pending transfers and posts
(all or part), voids or lets them expire (an injected clock), freezes, unfreezes,
closes, retries earlier transfer ids (same request: replay; other request:
``idempotency_key_reused``), sends malformed amounts and unknown ids, and reopens the
application. Every answer is compared with ``ledger_model.LedgerModel``. After every
step: per currency the balances of all accounts, world accounts included, sum to 0;
no account has ``balance - pending_debits`` below ``-overdraft_limit``; every account
equals the model's.

Each example gets a fresh store: the memory store, a new SQLite file, or a new
PostgreSQL schema (dropped afterwards), so the sums cover the whole store.

Each Ledger is built with a drawn aggregate cache size (0 or 10,000), snapshot interval
(1, 3 or 100) and commit mode (group commit, or one transaction per command).

"Reopen": on SQLite and PostgreSQL the Ledger is closed and a new one is built on the
same database (with those three drawn anew). ``memory://`` keeps
its events inside the Ledger object, so there the new Ledger is built on the previous
one's in-memory recorders (fresh aggregate cache, mapper and repository, same stored
events and snapshots). In both cases every account and transfer is then compared with
the model, and every account is also replayed from its events alone (no cache, no
snapshot).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID, uuid4

from eventsourcing.application import Repository
from eventsourcing.persistence import EventStore
from hypothesis import HealthCheck, event
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg import sql

from domain import errors
from domain.errors import LedgerError
from domain.ledger import Ledger
from domain.money import world_account_id
from domain.results import AccountView, TransferView
from infrastructure.persistence import build_ledger, ledger_env, postgres_connect
from infrastructure.settings import Settings
from infrastructure.tuned_ledger import TunedLedger
from tests.reliability.ledger_model import PENDING, Answer, LedgerModel, Request

CURRENCIES = ("USD", "EUR")
STEPS = 30
EXAMPLES = {"memory": 100, "sqlite": 40, "postgres": 25}
START = datetime(2030, 1, 1, tzinfo=UTC)

# An amount, or an edge resolved against the model when the rule runs: "limit" is
# exactly what the payer may still spend (or the whole reservation, when posting),
# "past_limit" one more.
# Out of range (0, 10**15 + 1) and the maximum (10**15) now and then too.
amounts = st.one_of(
    st.integers(1, 1_500),
    st.sampled_from(["limit", "past_limit", "limit", "past_limit", 0, 10**15, 10**15 + 1]),
)
overdraft_limits = st.sampled_from([0, 0, 100, 1_000])
timeouts = st.sampled_from([None, None, 10, 60])
# (aggregate cache size, snapshot interval, group commit) of a (re)built Ledger.
ledger_shapes = st.tuples(st.sampled_from([10_000, 0]), st.sampled_from([100, 3, 1]), st.booleans())
Shape = tuple[int, int, bool]


class Stores:
    """A fresh store per example, on the kind the ``settings`` fixture names."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.base = settings.database
        self.tmp_path = tmp_path
        self.numbers = itertools.count()

    def new(self) -> Settings:
        number = next(self.numbers)
        if self.base.kind == "sqlite":
            return Settings(database_url=f"sqlite:///{self.tmp_path / f'machine{number}.db'}")
        if self.base.kind == "postgresql":
            b = self.base
            schema = f"{b.schema}_machine{number}"
            url = f"postgresql://{b.user}@{b.host}:{b.port}/{b.dbname}?schema={schema}"
            return Settings(database_url=url)
        return Settings(database_url="memory://")

    def drop(self, settings: Settings) -> None:
        database = settings.database
        if database.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(database.path + suffix).unlink(missing_ok=True)
        elif database.kind == "postgresql":
            with postgres_connect(database, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(database.schema)
                    )
                )


class OnPreviousRecorders(Ledger):
    """A new Ledger on another memory Ledger's recorders: memory's "restart"."""

    name = "Ledger"

    def __init__(self, previous: Ledger, cache_size: int, **kwargs: Any) -> None:
        self.previous = previous
        settings = Settings(database_url="memory://", aggregate_cache_size=cache_size)
        super().__init__(ledger_env(settings), **kwargs)

    def construct_recorder(self) -> Any:
        return self.previous.recorder

    def construct_snapshot_store(self) -> EventStore[UUID]:
        assert self.previous.snapshots is not None
        return self.factory.event_store(
            mapper=self.mapper, recorder=self.previous.snapshots.recorder
        )


class ReopenedMemoryLedger(OnPreviousRecorders):
    """The plain Ledger, reopened on memory."""


class ReopenedTunedMemoryLedger(OnPreviousRecorders, TunedLedger):
    """The tuned Ledger (group commit), reopened on memory."""

    name = "Ledger"


def observe(command: Callable[[], object]) -> Answer:
    """What the ledger answered, in the model's terms."""
    try:
        view = command()
    except LedgerError as error:
        event(f"answer: {type(error).__name__}")  # --hypothesis-show-statistics lists them
        return Answer(error=type(error).__name__)
    event(f"answer: {getattr(view, 'status', '?')}")
    if isinstance(view, TransferView):
        amounts = (view.amount, view.posted_amount)
        return Answer(view=("transfer", view.status, *amounts, view.replayed))
    assert isinstance(view, AccountView), view
    return Answer(view=("account", view.status))


class LedgerMachine(RuleBasedStateMachine):
    stores: ClassVar[Stores]

    accounts = Bundle("accounts")

    def __init__(self) -> None:
        super().__init__()
        self.model = LedgerModel()
        self.now = START
        self.settings = self.stores.new()
        self.ledger: Ledger | None = None

    def clock(self) -> datetime:
        return self.now

    @initialize(
        target=accounts,
        shape=ledger_shapes,
        limits=st.tuples(overdraft_limits, overdraft_limits, overdraft_limits),
        funds=st.tuples(*[st.integers(0, 2_000)] * 3),
    )
    def build(self, shape: Shape, limits: tuple[int, ...], funds: tuple[int, ...]) -> Any:
        """Builds the Ledger and opens three accounts, so money moves from the first step."""
        self.ledger = self._build(shape)
        opened = []
        for currency, limit, amount in zip(("USD", "USD", "EUR"), limits, funds, strict=True):
            account = self.open_account(currency, limit)
            if amount:
                self._deposit(account, amount)
            opened.append(account)
        # One reservation (or its rejection) from the start, so settling and retrying
        # have something to work on from the first step.
        self._resend(uuid4(), Request(opened[0], opened[1], 1, "USD", True, 60))
        return multiple(*opened)

    def _build(self, shape: Shape) -> Ledger:
        cache_size, snapshot_interval, group_commit = shape
        if self.ledger is not None and self.settings.database.kind == "memory":
            reopened = ReopenedTunedMemoryLedger if group_commit else ReopenedMemoryLedger
            ledger: Ledger = reopened(
                self.ledger, cache_size, snapshot_interval=snapshot_interval, clock=self.clock
            )
            self.ledger.close()
            return ledger
        if self.ledger is not None:
            self.ledger.close()
        overrides = {
            "aggregate_cache_size": cache_size,
            "snapshot_interval": snapshot_interval,
            "group_commit": group_commit,
        }
        return build_ledger(self.settings.model_copy(update=overrides), clock=self.clock)

    @property
    def app(self) -> Ledger:
        assert self.ledger is not None
        return self.ledger

    def teardown(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
        self.stores.drop(self.settings)

    # Accounts.

    @rule(target=accounts, currency=st.sampled_from(CURRENCIES), overdraft_limit=overdraft_limits)
    def open_account(self, currency: str, overdraft_limit: int) -> UUID:
        account = self.app.open_account(currency, overdraft_limit=overdraft_limit)
        self.model.open_account(account.id, currency, overdraft_limit)
        return account.id

    @rule(
        account=accounts,
        command=st.sampled_from(["freeze", "freeze", "unfreeze", "unfreeze", "close"]),
        its_world=st.sampled_from([False, False, False, True]),
    )
    def change_status(self, account: UUID, command: str, its_world: bool) -> None:
        """Freezes, unfreezes or closes an account, or tries to on its world account."""
        if its_world:
            account = world_account_id(self.model.accounts[account].currency)
        method = getattr(self.app, {"close": "close_account"}.get(command, command))
        assert observe(lambda: method(account)) == getattr(self.model, command)(account)

    # Money. An amount given as "limit" or "past_limit" is resolved against the payer.

    def _resolve(self, amount: int | str, payer: UUID) -> int:
        if isinstance(amount, int):
            return amount
        spender = self.model.accounts[payer]
        room = spender.balance - spender.pending_debits + spender.overdraft_limit
        return max(room, 0) + (amount == "past_limit")

    @rule(account=accounts, amount=amounts)
    def deposit(self, account: UUID, amount: int | str) -> None:
        self._deposit(account, self._resolve(amount, account))

    @rule(account=accounts, amount=amounts)
    def withdraw(self, account: UUID, amount: int | str) -> None:
        amount = self._resolve(amount, account)
        currency = self.model.accounts[account].currency
        request = Request(account, world_account_id(currency), amount, currency)
        transfer_id = uuid4()
        self._transfer(
            transfer_id,
            request,
            lambda: self.app.withdraw(account, amount, transfer_id=transfer_id),
        )

    @rule(
        payer=accounts,
        payee=accounts,
        amount=amounts,
        currency=st.sampled_from([None, None, None, None, *CURRENCIES]),
    )
    def transfer(self, payer: UUID, payee: UUID, amount: int | str, currency: str | None) -> None:
        """A posted transfer in the payer's currency or, now and then, in a given one."""
        currency = currency or self.model.accounts[payer].currency
        request = Request(payer, payee, self._resolve(amount, payer), currency)
        self._resend(uuid4(), request)

    @rule(
        payer=accounts,
        payee=accounts,
        amount=amounts,
        timeout_seconds=timeouts,
    )
    def reserve(
        self, payer: UUID, payee: UUID, amount: int | str, timeout_seconds: int | None
    ) -> None:
        """A pending transfer, with or without a timeout."""
        currency = self.model.accounts[payer].currency
        amount = self._resolve(amount, payer)
        request = Request(payer, payee, amount, currency, True, timeout_seconds)
        self._resend(uuid4(), request)

    def _deposit(self, account: UUID, amount: int) -> None:
        world = world_account_id(self.model.accounts[account].currency)
        request = Request(world, account, amount, self.model.accounts[account].currency)
        transfer_id = uuid4()
        self._transfer(
            transfer_id, request, lambda: self.app.deposit(account, amount, transfer_id=transfer_id)
        )

    def _resend(self, transfer_id: UUID, request: Request) -> None:
        r = request
        self._transfer(
            transfer_id,
            request,
            lambda: self.app.transfer(
                r.debit_account_id,
                r.credit_account_id,
                r.amount,
                r.currency,
                transfer_id=transfer_id,
                pending=r.pending,
                timeout_seconds=r.timeout_seconds,
            ),
        )

    def _transfer(self, transfer_id: UUID, request: Request, call: Callable[[], object]) -> None:
        expected = self.model.transfer(transfer_id, request, self.now)
        assert observe(call) == expected

    def _recorded_transfer(self, data: st.DataObject) -> UUID:
        """One of the transfers the ledger recorded (posted, pending, voided, rejected)."""
        return data.draw(st.sampled_from(list(self.model.transfers)), label="transfer")

    @precondition(lambda self: self.model.transfers)
    @rule(data=st.data(), same_request=st.booleans())
    def retry(self, data: st.DataObject, same_request: bool) -> None:
        """Sends a recorded transfer's id again, with its request or another one."""
        transfer = self._recorded_transfer(data)
        request = self.model.transfers[transfer].request
        if not same_request:
            request = Request(**{**vars(request), "amount": request.amount % 1_500 + 1})
        self._resend(transfer, request)

    @rule(account=accounts, unknown_first=st.booleans())
    def unknown_ids(self, account: UUID, unknown_first: bool) -> None:
        """Names an account or a transfer that does not exist: recorded nowhere."""
        unknown = uuid4()
        payer, payee = (unknown, account) if unknown_first else (account, unknown)
        self._resend(uuid4(), Request(payer, payee, 1, self.model.accounts[account].currency))
        assert observe(lambda: self.app.post_pending(unknown)).error == "TransferNotFound"
        assert observe(lambda: self.app.void_pending(unknown)).error == "TransferNotFound"

    # Two-phase.

    @precondition(lambda self: self.model.transfers)
    @rule(
        data=st.data(),
        command=st.sampled_from(["post", "post", "void"]),
        amount=st.one_of(st.none(), amounts),
    )
    def settle(self, data: st.DataObject, command: str, amount: int | str | None) -> None:
        """Posts all (amount None) or part of a transfer, or voids it."""
        transfer = self._recorded_transfer(data)
        if isinstance(amount, str):
            reserved = self.model.transfers[transfer].request.amount
            amount = reserved + (amount == "past_limit")
        if command == "void":
            expected = self.model.void_pending(transfer, self.now)
            assert observe(lambda: self.app.void_pending(transfer)) == expected
        else:
            expected = self.model.post_pending(transfer, amount, self.now)
            assert observe(lambda: self.app.post_pending(transfer, amount)) == expected

    @rule(seconds=st.sampled_from([1, 9, 30, 3_600, "next_expiry"]), sweep=st.booleans())
    def time_passes(self, seconds: int | str, sweep: bool) -> None:
        """The clock moves on (maybe to the exact instant a pending transfer expires);
        then, maybe, the sweeper voids what expired."""
        if seconds == "next_expiry":
            expiries = [
                t.expires_at
                for t in self.model.transfers.values()
                if t.status == PENDING and t.expires_at is not None and t.expires_at > self.now
            ]
            self.now = min(expiries, default=self.now + timedelta(seconds=1))
        else:
            assert isinstance(seconds, int)
            self.now += timedelta(seconds=seconds)
        if sweep:
            voided = self.app.expire_pending(list(self.model.transfers))
            assert voided == self.model.expire_pending(self.now)

    # Restart.

    @rule(shape=ledger_shapes)
    def reopen(self, shape: Shape) -> None:
        self.ledger = self._build(shape)
        self._check_every_transfer()
        self._check_replay_without_cache_or_snapshots()

    def _check_every_transfer(self) -> None:
        for transfer_id, expected in self.model.transfers.items():
            view = self.app.get_transfer(transfer_id)
            assert (view.status, view.posted_amount) == (expected.status, expected.posted_amount)
            code = getattr(errors, expected.error).code if expected.error else None
            assert view.error_code == code

    def _check_replay_without_cache_or_snapshots(self) -> None:
        repository = Repository(event_store=self.app.events)
        for account_id, expected in self.model.accounts.items():
            account = repository.get(account_id)
            got = (account.balance, account.pending_debits, account.pending_credits)
            assert got == (expected.balance, expected.pending_debits, expected.pending_credits)
            assert account.status == expected.status

    # Invariants, checked after every step.

    @invariant()
    def books_balance_and_match_the_model(self) -> None:
        if self.ledger is None:
            return
        sums = dict.fromkeys(CURRENCIES, 0)
        for account_id, expected in self.model.accounts.items():
            view = self.app.get_account(account_id)
            sums[view.currency] += view.balance
            if not view.is_world:
                assert view.balance - view.pending_debits >= -view.overdraft_limit, view
            got = (
                view.currency, view.overdraft_limit, view.status,
                view.balance, view.pending_debits, view.pending_credits,
            )  # fmt: skip
            assert got == (
                expected.currency, expected.overdraft_limit, expected.status,
                expected.balance, expected.pending_debits, expected.pending_credits,
            )  # fmt: skip
        assert sums == dict.fromkeys(CURRENCIES, 0)


def test_ledger_agrees_with_the_model(store: str, settings: Settings, tmp_path: Path) -> None:
    machine = type(f"LedgerMachineOn{store.title()}", (LedgerMachine,), {})
    machine.stores = Stores(settings, tmp_path)
    run_state_machine_as_test(
        machine,
        settings=hypothesis_settings(
            max_examples=EXAMPLES[store],
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
