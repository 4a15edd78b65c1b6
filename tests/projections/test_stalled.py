"""A follower that cannot apply an event stalls before it, says so everywhere, and
never dies; a restart keeps its place, and a repaired event lets it go on.

Method: through the ledger's own save (the application and its recorder, no mock),
write what the domain's guards refuse but a store written before them may hold: two
pending transfers of 2^62 from the world account to one account, so that the
second takes its pending credits (and the world's pending debits) to 2^63, one past
what the views' 64-bit columns store (SQLite's driver raises OverflowError,
PostgreSQL answers "bigint out of range"). A deposit follows. On SQLite and
PostgreSQL, then: the follower applies every save before the bad one and nothing
after it, in every view; the served app's follower thread stays alive and reports
it; /readyz answers 503 naming the views (no position); /metrics has the gauge and
the position; GET /v1/projections and `projections status` show where and why; a
``?min_position=`` read past it answers 503 ``view_stalled`` at once; ``audit
verify`` reports ``projection_stalled`` at the position. A restarted app keeps the
position and the report; once the stored event is repaired, the views go on and the
report is gone. An event that does not decode, and (SQLite) a row the recorder
cannot read, stall the follower at their exact position.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from domain.account import Account
from domain.ledger import Ledger
from domain.money import world_account_id
from domain.transfer import Transfer, TransferRequest
from infrastructure.settings import Settings
from infrastructure.views import ViewStore
from projections.catalog import all_projections, select_projections
from projections.follower import ProjectionStalled, follower_for
from projections.queries import ReadModels
from tests.audit.conftest import Tamper
from tests.support import funded_account, wait_until

pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgres"])

FITS = 2**62  # a posting's amount a 64-bit column holds
BEYOND = 2**63  # one past the largest 64-bit integer: the statements' amount column cannot
VIEWS = tuple(all_projections())
# What each database says of a value its BIGINT/INTEGER column cannot hold.
OVERFLOW_ERRORS = {"sqlite": "OverflowError", "postgresql": "NumericValueOutOfRange"}


def post_unchecked(ledger: Ledger, account_id: UUID, amount: int) -> int:
    """Writes a posted transfer of ``amount`` from the world account to ``account_id``
    with the application's save and none of the domain's checks, as a store written
    before them may hold it; returns the position of its save's first event. (Balances
    and pending amounts are stored wide since the world accounts' 128-bit range; a
    posting's amount, at most 10^15 by the rules, is not.)"""
    account = ledger.repository.get(account_id)
    world = ledger.repository.get(world_account_id(account.currency))
    transfer_id = uuid4()
    request = TransferRequest(world.id, account.id, amount, account.currency, "beyond range", {})
    world.trigger_event(
        Account.Debited,
        transfer_id=transfer_id,
        amount=amount,
        balance_after=world.balance - amount,
    )
    account.trigger_event(
        Account.Credited,
        transfer_id=transfer_id,
        amount=amount,
        balance_after=account.balance + amount,
    )
    before = ledger.head_position()
    ledger.save(world, account, Transfer.post(transfer_id, request))
    return before + 1


@dataclass
class Stalled:
    """A log whose events at ``first..last`` the views cannot store."""

    account: UUID
    first: int
    last: int
    later_deposit: UUID
    later_account: UUID
    head: int


@pytest.fixture
def stalled(ledger: Ledger) -> Stalled:
    account = funded_account(ledger, 100, description="before")
    post_unchecked(ledger, account, FITS)  # a posting of 2^62: still fits
    first = post_unchecked(ledger, account, BEYOND)  # 2^63: does not
    last = ledger.head_position()
    # Into another account: this one is out of range now, and refuses every change.
    other = funded_account(ledger, 0)
    later = ledger.deposit(other, 7, "after").id
    return Stalled(account, first, last, later, other, ledger.head_position())


def repair(settings: Settings, stalled: Stalled) -> None:
    """The stored events of the bad save get an amount that fits (what an operator
    may do; the audit chain then reports the change)."""
    tamper = Tamper(settings)
    try:
        for position in range(stalled.first, stalled.last + 1):
            state = tamper.state(position)
            tamper.set_state(position, state.replace(str(BEYOND).encode(), b"1"))
    finally:
        tamper.close()


def statement_transfers(views: ViewStore, account: UUID) -> list[UUID]:
    dialect = views.dialect
    with views.read() as tx:
        rows = tx.fetchall(
            "SELECT transfer_id FROM statements WHERE account_id = ? ORDER BY position",
            (dialect.id_value(account),),
        )
    return [dialect.id_from(row[0]) for row in rows]


def served(settings: Settings) -> TestClient:
    return TestClient(
        create_app(
            settings.model_copy(
                update={"run_projections": True, "projections_poll_interval_seconds": 0.05}
            )
        )
    )


@contextmanager
def stalled_app(settings: Settings, stalled: Stalled) -> Iterator[TestClient]:
    """The served app, once its follower has stalled."""
    with served(settings) as client:
        runner = client.app.state.projection_runner  # type: ignore[attr-defined]
        wait_until(lambda: runner.failures, 20, describe=lambda: str(runner.last_error))
        yield client


class TestTheFollower:
    def test_applies_every_save_before_the_bad_one_and_nothing_after(
        self, settings: Settings, ledger: Ledger, views: ViewStore, stalled: Stalled
    ) -> None:
        follower = follower_for(ledger, views, select_projections(), batch_size=1000)
        with pytest.raises(ProjectionStalled) as raised:
            follower.catch_up()
        assert follower.positions() == dict.fromkeys(VIEWS, stalled.first - 1)
        assert stalled.later_deposit not in statement_transfers(views, stalled.later_account)
        failures = {f.name: f for f in raised.value.failures}
        assert set(failures) == set(VIEWS)
        for failure in failures.values():
            assert (failure.position, failure.last_position) == (stalled.first, stalled.last)
            assert failure.cause == "statements"  # it holds the other two back
            assert failure.error_class == OVERFLOW_ERRORS[settings.database.kind]
        assert ReadModels(views, ledger.head_position).failures() == failures
        # Again, as the runner retries: the same failure, first seen at the same time.
        with pytest.raises(ProjectionStalled) as again:
            follower_for(ledger, views, select_projections()).catch_up()
        assert {f.name: f.since for f in again.value.failures} == {
            name: f.since for name, f in failures.items()
        }


class TestTheServedApp:
    def test_its_follower_lives_and_every_interface_reports_the_stall(
        self, settings: Settings, stalled: Stalled
    ) -> None:
        with stalled_app(settings, stalled) as client:
            runner = client.app.state.projection_runner  # type: ignore[attr-defined]
            time.sleep(0.3)  # several polls later
            assert runner.is_alive
            assert {f.name for f in runner.failures} == set(VIEWS)

            # Degraded, not 503: the views are shared, a 503 would stop every process.
            ready = client.get("/readyz")
            assert ready.status_code == 200
            body = ready.json()
            assert body["status"] == "degraded"
            assert body["stalled"] == sorted(VIEWS)
            assert "statements cannot apply an event" in body["detail"]
            # /readyz is open: no position of the stall, no error message.
            assert not re.search(rf"\b{stalled.first}\b", body["detail"])
            assert "out of range" not in body["detail"] and "too large" not in body["detail"]

            metrics = client.get("/metrics").text
            for name in VIEWS:
                assert f'eventledger_projection_failed{{projection="{name}"}} 1.0' in metrics
                assert (
                    f'eventledger_projection_stalled_position{{projection="{name}"}} '
                    f"{float(stalled.first)}"
                ) in metrics

            listed = {p["name"]: p for p in client.get("/v1/projections").json()["projections"]}
            balances = listed["balances"]
            assert balances["position"] == stalled.first - 1
            assert balances["stalled"]["position"] == stalled.first
            assert balances["stalled"]["cause"] == "statements"
            assert balances["stalled"]["error"].startswith(OVERFLOW_ERRORS[settings.database.kind])
            assert listed["statements"]["stalled"]["cause"] == "statements"

            started = time.monotonic()
            read = client.get(f"/v1/accounts?min_position={stalled.head}")
            assert time.monotonic() - started < 2  # not the 5 s read-your-writes wait
            assert read.status_code == 503
            assert read.json()["code"] == "view_stalled"
            assert "statements, followed with it, cannot apply" in read.json()["detail"]
            assert read.json()["stalled"][0]["position"] == stalled.first
            # A position before the stall is still served.
            before = client.get(f"/v1/accounts?min_position={stalled.first - 1}")
            assert before.status_code == 200

            report = client.post("/v1/audit/verify").json()
            problems = [p for p in report["problems"] if p["check"] == "projection_stalled"]
            assert report["ok"] is False
            assert {p["position"] for p in problems} == {stalled.first}
            assert len(problems) == len(VIEWS)
            assert any(OVERFLOW_ERRORS[settings.database.kind] in p["detail"] for p in problems)

    def test_the_command_line_reports_it(self, settings: Settings, stalled: Stalled) -> None:
        with stalled_app(settings, stalled):
            pass
        database = ["--database", settings.database_url]
        status = CliRunner().invoke(cli, ["projections", "status", "--json", *database])
        assert status.exit_code == 1, status.output
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        assert rows["balances"]["stalled"]["position"] == stalled.first
        assert rows["balances"]["lag"] == stalled.head - stalled.first + 1
        table = CliRunner().invoke(cli, ["projections", "status", *database])
        assert "statements cannot apply the save at positions" in " ".join(table.stdout.split())
        verify = CliRunner().invoke(cli, ["audit", "verify", "--json", *database])
        assert verify.exit_code == 1
        problems = json.loads(verify.stdout)["problems"]
        stalls = [p for p in problems if p["check"] == "projection_stalled"]
        assert {p["position"] for p in stalls} == {stalled.first}
        rebuild = CliRunner().invoke(cli, ["projections", "rebuild", *database])
        assert rebuild.exit_code == 1
        assert "the rebuild stopped: statements:rebuild cannot apply the save at positions" in (
            " ".join(rebuild.output.split())
        )
        after = CliRunner().invoke(cli, ["projections", "status", "--json", *database])
        assert {row["name"]: row["position"] for row in json.loads(after.stdout)}["balances"] == (
            stalled.first - 1
        )
        # Repaired, a rebuild gets past it and its swap clears the report.
        repair(settings, stalled)
        rebuild = CliRunner().invoke(cli, ["projections", "rebuild", *database])
        assert rebuild.exit_code == 0, rebuild.output
        after = CliRunner().invoke(cli, ["projections", "status", "--json", *database])
        assert after.exit_code == 0, after.output
        assert all(row["stalled"] is None for row in json.loads(after.stdout))


class TestRestartAndRepair:
    def test_a_restart_keeps_the_position_and_a_repair_lets_it_go_on(
        self, settings: Settings, ledger: Ledger, views: ViewStore, stalled: Stalled
    ) -> None:
        with stalled_app(settings, stalled) as client:
            since = client.get("/v1/projections").json()["projections"][0]["stalled"]["since"]
        with stalled_app(settings, stalled) as client:  # a restart
            listed = client.get("/v1/projections").json()["projections"]
            assert {p["name"]: p["position"] for p in listed if p["name"] in VIEWS} == (
                dict.fromkeys(VIEWS, stalled.first - 1)
            )
            assert listed[0]["stalled"]["since"] == since
            assert client.get("/readyz").json()["status"] == "degraded"
        repair(settings, stalled)
        with served(settings) as client:
            read_models = client.app.state.read_models  # type: ignore[attr-defined]
            wait_until(lambda: not read_models.failures(), 20)
            assert client.get("/readyz").json()["status"] == "ready"
            metrics = client.get("/metrics").text
            assert 'eventledger_projection_failed{projection="balances"} 0.0' in metrics
            assert "eventledger_projection_stalled_position{" not in metrics
            read = client.get(
                f"/v1/accounts/{stalled.account}/statement?min_position={stalled.head}"
            )
            assert read.status_code == 200
        transfers = statement_transfers(views, stalled.later_account)
        assert transfers.count(stalled.later_deposit) == 1
        assert views.positions()["balances"] == stalled.head


class TestUnreadableEvents:
    def test_an_event_that_does_not_decode_stalls_at_its_position(
        self, settings: Settings, ledger: Ledger, views: ViewStore
    ) -> None:
        account = funded_account(ledger, 100)
        bad = ledger.update_metadata(account, name="renamed").position
        ledger.deposit(account, 5)
        assert bad is not None
        tamper = Tamper(settings)
        tamper.set_state(bad, b"not json")
        tamper.close()
        follower = follower_for(ledger, views, select_projections(), batch_size=1000)
        with pytest.raises(ProjectionStalled) as raised:
            follower.catch_up()
        assert follower.position == bad - 1
        failure = raised.value.failures[0]
        assert (failure.position, failure.last_position, failure.cause) == (bad, bad, None)
        assert "cannot read the event at position" in failure.describe()

    def test_a_row_the_recorder_cannot_read_stalls_at_its_position(
        self, settings: Settings, ledger: Ledger, views: ViewStore
    ) -> None:
        if settings.database.kind != "sqlite":
            pytest.skip("a PostgreSQL uuid column cannot hold an id that is not a UUID")
        account = funded_account(ledger, 100)
        bad = ledger.update_metadata(account, name="renamed").position
        for _ in range(3):
            ledger.deposit(account, 5)
        assert bad is not None
        tamper = Tamper(settings)
        tamper.run("UPDATE stored_events SET originator_id = 'not a uuid' WHERE rowid = ?", (bad,))
        tamper.close()
        follower = follower_for(ledger, views, select_projections(), batch_size=1000)
        with pytest.raises(ProjectionStalled) as raised:
            follower.catch_up()
        assert follower.position == bad - 1
        failure = raised.value.failures[0]
        assert (failure.position, failure.cause) == (bad, None)
        assert failure.error_class == "ValueError"
