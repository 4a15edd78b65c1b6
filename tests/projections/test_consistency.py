"""Every single read of the views is consistent, not just eventually; and a client
reads its own writes with ``min_position``.

Method: a writer thread streams transfers (single, batched, pending then posted)
while the background follower applies them and reader threads query totals and the
per-currency sum of all balances; every read must sum to exactly 0. Read-your-writes
goes through the HTTP API with the in-process follower.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from domain.ledger import Ledger
from domain.money import world_account_id
from infrastructure.settings import Settings
from infrastructure.views import ViewStore
from projections.catalog import select_projections
from projections.queries import ReadModels
from projections.runner import ProjectionRunner
from tests.projections.conftest import assert_rows_match_aggregates
from tests.support import wait_until

STREAM_SECONDS_MAX = 30.0


def stream_transfers(ledger: Ledger, stop: threading.Event) -> int:
    usd = [ledger.open_account("USD").id for _ in range(4)]
    eur = [ledger.open_account("EUR").id for _ in range(2)]
    count = 0
    while not stop.is_set():
        count += 1
        ledger.transfer_batch(
            [
                dict(
                    from_account=world_account_id("USD"), to_account=a, amount=count, currency="USD"
                )
                for a in usd
            ]
        )
        ledger.transfer(usd[count % 4], usd[(count + 1) % 4], 1, "USD")
        ledger.deposit(eur[count % 2], 3)
        pending = ledger.transfer(eur[count % 2], eur[(count + 1) % 2], 2, "EUR", pending=True)
        ledger.post_pending(pending.id, 1)
    return count


class TestReadsRacingTransfers:
    def test_every_read_of_totals_and_balances_sums_to_zero(
        self, settings: Settings, ledger: Ledger, views: ViewStore
    ) -> None:
        runner = ProjectionRunner(
            ledger,
            views,
            select_projections(),
            events_database=settings.database,
            batch_size=7,
            poll_interval_seconds=0.01,
        )
        read_models = ReadModels(views, ledger.head_position)
        stop = threading.Event()
        reads: list[tuple[int, int]] = []
        bad: list[object] = []

        def read() -> None:
            while not stop.is_set():
                for total in read_models.totals():
                    if total.balance_sum != 0:
                        bad.append(total)
                for currency, balance_sum in read_models.balance_sums().items():
                    if balance_sum != 0:
                        bad.append((currency, balance_sum))
                reads.append((len(reads), read_models.store.positions()["balances"]))

        runner.start()
        readers = [threading.Thread(target=read) for _ in range(2)]
        for reader in readers:
            reader.start()
        writer_stop = threading.Event()
        writer = threading.Thread(target=stream_transfers, args=(ledger, writer_stop))
        writer.start()
        # Until the readers have seen the views move, which is what this test is about.
        wait_until(lambda: len({position for _, position in list(reads)}) > 5, STREAM_SECONDS_MAX)
        writer_stop.set()
        writer.join(30)
        wait_until(lambda: views.positions()["totals"] >= ledger.head_position(), 20)
        stop.set()
        for reader in readers:
            reader.join(30)
        runner.stop()
        assert not bad
        assert len({position for _, position in reads}) > 5  # the reads saw the views move
        assert views.positions()["totals"] == ledger.head_position()
        assert_rows_match_aggregates(ledger, views)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
class TestReadYourWrites:
    def test_a_statement_read_with_the_position_includes_the_transfer(
        self, settings: Settings
    ) -> None:
        app = create_app(settings.model_copy(update={"projections_poll_interval_seconds": 0.5}))
        with TestClient(app) as client:
            account = client.post("/v1/accounts", json={"currency": "USD"}).json()["id"]
            for number in range(25):
                transfer = client.post(
                    f"/v1/accounts/{account}/deposits", json={"amount": 1 + number}
                ).json()
                response = client.get(
                    f"/v1/accounts/{account}/statement",
                    params={"min_position": transfer["position"], "limit": 1000},
                )
                assert response.status_code == 200, response.text
                ids = [posting["transfer_id"] for posting in response.json()["items"]]
                assert ids[-1] == transfer["id"] and len(ids) == number + 1
                listed = client.get(
                    "/v1/accounts",
                    params={"min_position": transfer["position"], "currency": "USD"},
                ).json()["items"]
                assert {a["id"]: a["balance"] for a in listed}[account] == sum(range(1, number + 2))

    def test_a_view_that_does_not_catch_up_answers_503_with_retry_after(
        self, settings: Settings
    ) -> None:
        app = create_app(
            settings.model_copy(
                update={"run_projections": False, "read_your_writes_timeout_seconds": 0.2}
            )
        )
        with TestClient(app) as client:
            account = client.post("/v1/accounts", json={"currency": "USD"}).json()["id"]
            position = client.post(f"/v1/accounts/{account}/deposits", json={"amount": 5}).json()[
                "position"
            ]
            response = client.get("/v1/accounts", params={"min_position": position})
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "view_behind"
            status = client.get("/v1/projections").json()["projections"]
            assert {p["name"]: p["lag"] for p in status}["balances"] == position


def test_the_sqlite_views_default_to_a_sibling_file(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    views = ViewStore.from_settings(settings)
    assert views.database.path == str(tmp_path / "ledger.views.db")
    views.close()
