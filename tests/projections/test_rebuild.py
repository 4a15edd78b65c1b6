"""Rebuilds replace a view atomically and resume where they were interrupted.

Method: readers in threads query the views in a tight loop while a rebuild with small
batches runs; the old and the new view are both complete, so any read that sees fewer
accounts, a non-zero total or an error has seen a half-built table. Interruption is a
``stop`` event set from the progress callback, then a second ``rebuild`` call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from domain.ledger import Ledger
from domain.money import world_account_id
from infrastructure.settings import Settings
from infrastructure.views import ViewStore
from projections.catalog import select_projections
from projections.follower import follower_for
from projections.queries import ReadModels
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from tests.projections.conftest import Workload, assert_rows_match_aggregates, dump
from tests.projections.test_consistency import stream_transfers
from tests.support import wait_until


class TestRebuild:
    def test_an_interrupted_rebuild_resumes_and_then_swaps(
        self, ledger: Ledger, views: ViewStore, workload: Callable[..., Workload]
    ) -> None:
        work = workload(seed=2)
        for _ in range(80):
            work.step()
        follower_for(ledger, views, select_projections()).catch_up()
        live = dump(views)
        stop = threading.Event()
        calls = []

        def progress(done: int, total: int) -> None:
            calls.append((done, total))
            if len(calls) == 2:
                stop.set()

        first = rebuild(
            ledger, views, select_projections(), batch_size=20, progress=progress, stop=stop
        )
        assert not first.swapped and first.position > 0
        assert dump(views) == live  # the live views are untouched until the swap
        second = rebuild(ledger, views, select_projections(), batch_size=20)
        assert second.swapped and second.resumed_from == first.position
        assert second.position == ledger.head_position()
        assert dump(views) == live
        assert all(done <= total for done, total in calls)
        rebuild(ledger, views, select_projections())
        with views.read() as tx:  # one index each, built before the swap, kept after it
            for table in ("statements", "balances"):
                ours = [n for n in tx.index_names(table) if n.startswith(f"{table}_0_")]
                assert len(ours) == 1, tx.index_names(table)
            assert not tx.table_exists("statements__rebuild")

    def test_rebuilding_one_projection_leaves_the_others(
        self, ledger: Ledger, views: ViewStore, workload: Callable[..., Workload]
    ) -> None:
        work = workload(seed=4)
        for _ in range(30):
            work.step()
        follower_for(ledger, views, select_projections()).catch_up()
        before = dump(views)
        report = rebuild(ledger, views, select_projections(["statements"]))
        assert report.names == ["statements"] and report.swapped
        assert dump(views) == before
        status = {s.name: s for s in ReadModels(views, ledger.head_position).status()}
        assert status["statements"].rebuilding is None
        assert status["balances"].lag == 0

    def test_readers_never_see_a_half_built_view(self, ledger: Ledger, views: ViewStore) -> None:
        accounts = [ledger.open_account("USD", f"r{i}").id for i in range(150)]
        for start in range(0, len(accounts), 50):
            ledger.transfer_batch(
                [
                    dict(
                        from_account=world_account_id("USD"), to_account=a, amount=7, currency="USD"
                    )
                    for a in accounts[start : start + 50]
                ]
            )
        follower_for(ledger, views, select_projections()).catch_up()
        read_models = ReadModels(views, ledger.head_position)
        expected_rows = len(accounts) + 1  # and the world account
        done = threading.Event()
        seen: list[tuple[int, int, int]] = []
        problems: list[str] = []

        def read() -> None:
            while not done.is_set():
                try:
                    rows = len(read_models.list_accounts(limit=1000).items)
                    totals = read_models.totals()
                    sums = read_models.balance_sums()
                except Exception as error:  # noqa: BLE001 - any failure is the finding
                    problems.append(repr(error))
                    return
                seen.append((rows, totals[0].accounts if totals else -1, sums.get("USD", -1)))

        readers = [threading.Thread(target=read) for _ in range(2)]
        for reader in readers:
            reader.start()
        try:
            for _ in range(2):
                report = rebuild(ledger, views, select_projections(), batch_size=10)
                assert report.swapped
        finally:
            done.set()
            for reader in readers:
                reader.join(30)
        assert not problems
        assert len(seen) > 10
        assert set(seen) == {(expected_rows, len(accounts), 0)}
        assert_rows_match_aggregates(ledger, views)


class TestRebuildWhileLive:
    def test_a_rebuild_under_a_live_follower_and_writers_loses_nothing(
        self, settings: Settings, ledger: Ledger, views: ViewStore
    ) -> None:
        runner = ProjectionRunner(
            ledger,
            views,
            select_projections(),
            events_database=settings.database,
            batch_size=13,
            poll_interval_seconds=0.01,
        )
        read_models = ReadModels(views, ledger.head_position)
        stop = threading.Event()
        writer = threading.Thread(target=stream_transfers, args=(ledger, stop))
        runner.start()
        writer.start()
        try:
            for names in (["balances", "totals"], ["statements"], []):
                # Each rebuild starts after the writers have added to the log.
                mark = ledger.head_position()
                wait_until(lambda mark=mark: ledger.head_position() >= mark + 30, 20)
                assert rebuild(ledger, views, select_projections(names), batch_size=50).swapped
                assert all(t.balance_sum == 0 for t in read_models.totals())
        finally:
            stop.set()
            writer.join(30)
        wait_until(lambda: views.positions()["statements"] >= ledger.head_position(), 20)
        runner.stop()
        assert runner.last_error is None
        assert_rows_match_aggregates(ledger, views)
        live = dump(views)
        rebuild(ledger, views, select_projections())
        assert dump(views) == live
