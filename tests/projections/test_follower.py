"""The followers apply the log exactly once, in whole saves, on every store.

Method: a reproducible workload (transfers, batches, pending/post/void, rejections,
metadata changes) is followed by projections; their rows are compared with the
account aggregates and with a from-scratch rebuild. Crashes are injected by making a
projection raise in the middle of a batch (the database and the library are real).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import uuid4

import pytest

from domain.account import Account
from domain.errors import InvalidRequest
from domain.ledger import Ledger
from domain.money import world_account_id
from domain.rules import decide_transfer
from domain.transfer import TransferRequest
from infrastructure.settings import Settings
from infrastructure.views import ViewStore, ViewTransaction
from projections.base import Positioned, whole_saves
from projections.catalog import select_projections
from projections.follower import Follower, follower_for
from projections.queries import ReadModels
from projections.reading import read_whole_saves
from projections.rebuild import rebuild
from tests.projections.conftest import Workload, assert_rows_match_aggregates, dump


class Crash(BaseException):
    """The process dying inside a transaction: not an error the follower handles (an
    Exception raised by a projection is a permanent failure, see test_stalled.py)."""


class CrashingProjection:
    """Wraps a projection and raises after its apply on the Nth batch: the batch's
    rows are written, then the transaction dies before its commit."""

    def __init__(self, inner: Any, crash_on_batch: int) -> None:
        self.inner = inner
        self.name, self.tables, self.indexes = inner.name, inner.tables, inner.indexes
        self.batches = 0
        self.crash_on_batch = crash_on_batch

    def apply(
        self, tx: ViewTransaction, tables: Mapping[str, str], events: Sequence[Positioned]
    ) -> None:
        self.inner.apply(tx, tables, events)
        self.batches += 1
        if self.batches == self.crash_on_batch:
            raise Crash()


class TestFollow:
    def test_views_equal_the_aggregates_and_a_rebuild(
        self, ledger: Ledger, views: ViewStore, workload: Callable[..., Workload]
    ) -> None:
        work = workload(seed=7)
        for _ in range(120):
            work.step()
        follower = follower_for(ledger, views, select_projections(), batch_size=37)
        follower.catch_up()
        assert follower.positions() == dict.fromkeys(follower.positions(), ledger.head_position())
        assert assert_rows_match_aggregates(ledger, views) == 6 + 2  # two world accounts
        read_models = ReadModels(views, ledger.head_position)
        totals = read_models.totals()
        assert [t.balance_sum for t in totals] == [0, 0]
        assert sum(t.accounts for t in totals) == 6
        assert all(total == 0 for total in read_models.balance_sums().values())
        before = dump(views)
        rebuild(ledger, views, select_projections(), batch_size=101)
        assert dump(views) == before

    def test_a_statement_replays_the_account_balance(
        self, ledger: Ledger, views: ViewStore, workload: Callable[..., Workload]
    ) -> None:
        work = workload(seed=3)
        for _ in range(60):
            work.step()
        follower_for(ledger, views, select_projections()).catch_up()
        read_models = ReadModels(views, ledger.head_position)
        for account_id in work.accounts:
            postings, cursor = [], None
            while True:
                page = read_models.statement(account_id, cursor, limit=7)
                postings += page.items
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            running = 0
            for posting in postings:
                running += posting.amount
                assert posting.balance_after == running
            assert running == ledger.get_account(account_id).balance
            assert postings[0].description.startswith("opening")


class TestExactlyOnce:
    def test_a_crash_inside_a_batch_is_neither_lost_nor_repeated(
        self, ledger: Ledger, views: ViewStore, workload: Callable[..., Workload]
    ) -> None:
        work = workload(seed=11)
        for _ in range(40):
            work.step()
        for crash_on_batch in (1, 3, 2):
            crashing = [CrashingProjection(p, crash_on_batch) for p in select_projections()]
            follower = follower_for(ledger, views, crashing, batch_size=25)
            with pytest.raises(Crash):
                follower.catch_up()
            for _ in range(15):
                work.step()
        # A fresh follower (a restarted process) continues from the committed positions.
        follower_for(ledger, views, select_projections(), batch_size=25).catch_up()
        assert_rows_match_aggregates(ledger, views)
        before = dump(views)
        rebuild(ledger, views, select_projections())
        assert dump(views) == before

    def test_two_followers_racing_apply_each_batch_once(
        self, store: str, ledger: Ledger, views: ViewStore, workload: Callable[..., Workload]
    ) -> None:
        if store == "memory":
            pytest.skip("two view stores need a database both can reach")
        other_views = ViewStore(views.database)
        work = workload(seed=5)
        for _ in range(80):
            work.step()
        followers = [
            follower_for(ledger, v, select_projections(), batch_size=9)
            for v in (views, other_views)
        ]
        threads = [threading.Thread(target=f.catch_up) for f in followers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        other_views.close()
        assert_rows_match_aggregates(ledger, views)
        before = dump(views)
        rebuild(ledger, views, select_projections())
        assert dump(views) == before


class TestWholeSaves:
    def test_a_batch_never_ends_inside_a_save(self, ledger: Ledger, views: ViewStore) -> None:
        accounts = [ledger.open_account("USD").id for _ in range(5)]
        items = [
            dict(from_account=world_account_id("USD"), to_account=a, amount=100 + i, currency="USD")
            for i, a in enumerate(accounts * 4)
        ]
        ledger.transfer_batch(items)  # one save of 20 transfers: 60 events
        pending = ledger.transfer(accounts[0], accounts[1], 50, "USD", pending=True)
        ledger.post_pending(pending.id, 20)
        follower = follower_for(ledger, views, select_projections(), batch_size=1)
        read_models = ReadModels(views, ledger.head_position)
        while follower.step():
            assert all(t.balance_sum == 0 for t in read_models.totals())
            assert all(total == 0 for total in read_models.balance_sums().values())
        assert follower.position == ledger.head_position()

    def test_the_boundary_is_after_the_last_transfer_event_of_a_save(self, ledger: Ledger) -> None:
        account = ledger.open_account("USD").id
        opened = ledger.head_position()
        ledger.transfer_batch(
            [
                dict(
                    from_account=world_account_id("USD"),
                    to_account=account,
                    amount=1,
                    currency="USD",
                )
                for _ in range(3)
            ]
        )
        events, rest = read_whole_saves(ledger, opened, batch_size=1)
        assert rest == []
        assert [e.kind for e in events] == ["Account.Debited"] * 3 + ["Account.Credited"] * 3 + [
            "Transfer.Posted"
        ] * 3
        assert whole_saves(events[:-1]) == 0


class TestPositions:
    def test_a_follower_reloads_positions_moved_by_another_writer(
        self, ledger: Ledger, views: ViewStore
    ) -> None:
        account = ledger.open_account("USD").id
        first = Follower(ledger, views, select_projections())
        first.create_tables()
        first.catch_up()
        second = follower_for(ledger, views, select_projections())
        ledger.deposit(account, 5)
        second.catch_up()
        ledger.deposit(account, 7)
        assert first.catch_up() > 0  # its cached positions were stale: it reloaded
        assert ReadModels(views, ledger.head_position).list_accounts().items
        assert_rows_match_aggregates(ledger, views)


class TestTables:
    def test_processes_starting_together_create_the_views_once(
        self, store: str, settings: Settings
    ) -> None:
        if store == "memory":
            pytest.skip("a memory store's views belong to one process")
        errors: list[BaseException] = []

        def start() -> None:
            try:
                views = ViewStore.from_settings(settings)
                ReadModels(views, lambda: 0)
                views.close()
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=start) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors


class TestListAccounts:
    def test_pages_by_cursor_and_filters_by_currency_and_status(
        self, ledger: Ledger, views: ViewStore
    ) -> None:
        usd = [ledger.open_account("USD").id for _ in range(5)]
        eur = ledger.open_account("EUR").id
        ledger.freeze(usd[0])
        follower_for(ledger, views, select_projections()).catch_up()
        read_models = ReadModels(views, ledger.head_position)
        seen, cursor, pages = [], None, 0
        while True:
            page = read_models.list_accounts(currency="USD", cursor=cursor, limit=2)
            seen += [account.id for account in page.items]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sorted(seen) == seen and pages == 3
        assert set(seen) == {*usd, world_account_id("USD")} and eur not in seen
        frozen = read_models.list_accounts(status="frozen").items
        assert [account.id for account in frozen] == [usd[0]]
        assert read_models.list_accounts(currency="EUR", status="open").items[0].id in (
            eur,
            world_account_id("EUR"),
        )
        with pytest.raises(InvalidRequest):
            read_models.list_accounts(limit=1001)
        with pytest.raises(InvalidRequest):
            read_models.list_accounts(cursor="not-a-cursor")


class TestText:
    def test_a_nul_in_a_name_or_description_does_not_stop_the_views(
        self, ledger: Ledger, views: ViewStore
    ) -> None:
        # The ledger refuses NUL now; events recorded before it did must not stop the
        # views either, so write such events through the aggregates directly.
        ledger.open_account("USD")  # the world account
        named_account = Account(
            id=uuid4(), currency="USD", name="a\x00b", metadata={"k": "v\x00"},
            overdraft_limit=0, is_world=False,
        )  # fmt: skip
        ledger.save(named_account)
        account = named_account.id
        world = world_account_id("USD")
        for description, pending in (("held\x00", True), ("x\x00y", False)):
            request = TransferRequest(world, account, 5, "USD", description, {}, pending)
            accounts = ledger.load_accounts([world, account])
            transfer = decide_transfer(accounts, uuid4(), request, ledger.clock())
            ledger.save(*accounts.values(), transfer)
            if pending:
                ledger.post_pending(transfer.id)
        follower = follower_for(ledger, views, select_projections())
        follower.catch_up()
        assert follower.position == ledger.head_position()
        read_models = ReadModels(views, ledger.head_position)
        row = read_models.list_accounts(currency="USD", status="open").items
        named = {r.id: r for r in row}[account]
        assert named.name == "a\ufffdb" and named.metadata == {"k": "v\x00"}
        postings = read_models.statement(account).items
        assert [p.description for p in postings] == ["held\ufffd", "x\ufffdy"]
