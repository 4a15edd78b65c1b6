"""``GET /v1/accounts/{id}/balance?at=`` and ``eventledger history --at`` (issue 13,
item 4): every edge over HTTP, on every store, and a read that costs what the same
read by ``?version=`` costs, plus a logarithmic number of single events.

Method: the library's event clock ticks a millisecond every few events (ties and
gaps, stamped in +05:30); each ``?at=`` answer is compared with the full replay of
the account and with the ``?version=`` answer of the version it names.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID, uuid4

import eventsourcing.domain
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from api.cli import app as cli
from domain.ledger import Ledger
from domain.money import world_account_id
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from tests.api.support import assert_problem, open_account
from tests.point_in_time_support import (
    CountingReads,
    TickingClock,
    old_answer,
    replay_all,
    search_cost,
)

MICROSECOND = timedelta(microseconds=1)


@pytest.fixture
def event_clock(monkeypatch: pytest.MonkeyPatch) -> TickingClock:
    clock = TickingClock()
    monkeypatch.setattr(eventsourcing.domain, "datetime_now_with_tzinfo", clock)
    return clock


def grow(ledger: Ledger, account: UUID, transfers: int, batch: int = 50) -> None:
    world = world_account_id("USD")
    for start in range(0, transfers, batch):
        ledger.transfer_batch(
            [
                {
                    "transfer_id": uuid4(),
                    "from_account": world,
                    "to_account": account,
                    "amount": 1 + n,
                    "currency": "USD",
                }
                for n in range(start, min(transfers, start + batch))
            ]
        )


def ledger_of(client: TestClient) -> Ledger:
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    return ledger


def balance_at(client: TestClient, account: str, **params: str | int) -> dict[str, object]:
    response = client.get(f"/v1/accounts/{account}/balance", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_every_edge_answers_as_the_replay_and_as_by_version(
    event_clock: TickingClock, client: TestClient
) -> None:
    account = open_account(client)
    ledger = ledger_of(client)
    grow(ledger, UUID(account), 260)
    events = ledger.account_events(UUID(account), limit=1000)
    replayed = replay_all(ledger, UUID(account))
    opened, last = events[0].timestamp, events[-1].timestamp
    # Before the account was opened: 404, as before this change.
    for early in (opened - MICROSECOND, datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))):
        response = client.get(f"/v1/accounts/{account}/balance", params={"at": early.isoformat()})
        assert_problem(response, 404, "not_found")
    moments = [opened, last, last + MICROSECOND, last + timedelta(days=3650)]
    for event in events[1::13]:
        moments += [event.timestamp - MICROSECOND, event.timestamp, event.timestamp + MICROSECOND]
    zones = (UTC, timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=30)))
    for number, moment in enumerate(m for m in moments if m >= opened):
        at = moment.astimezone(zones[number % len(zones)]).isoformat()
        if number % 2:  # the RFC 3339 "Z" form too
            at = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
        body = balance_at(client, account, at=at)
        expected = old_answer(replayed, moment)
        assert expected is not None
        assert (body["version"], body["balance"]) == (expected.version, expected.balance), at
        assert body == balance_at(client, account, version=expected.version)
    # Exactly at an event: inclusive (the last of the events at that instant).
    middle = events[len(events) // 2]
    body = balance_at(client, account, at=middle.timestamp.isoformat())
    assert body["version"] == max(e.version for e in events if e.timestamp == middle.timestamp)


def test_refusals_are_clean_problems(client: TestClient) -> None:
    account = open_account(client)
    path = f"/v1/accounts/{account}/balance"
    for params in (
        {"at": "2030-01-01T00:00:00"},  # no zone
        {"at": "yesterday"},
        {"at": "2030-01-01T00:00:00Z", "version": "1"},
    ):
        assert client.get(path, params=params).status_code == 422, params
    missing = client.get(f"/v1/accounts/{uuid4()}/balance", params={"at": "2030-01-01T00:00:00Z"})
    assert_problem(missing, 404, "not_found")


def test_a_long_history_is_read_as_by_version(
    event_clock: TickingClock, client: TestClient
) -> None:
    account = open_account(client)
    ledger = ledger_of(client)
    grow(ledger, UUID(account), 2000, batch=500)
    events = ledger.account_events(UUID(account), limit=1000)
    rows_bound, decoded_bound = search_cost(2001)
    counting = CountingReads(ledger)
    for event in events[100::150]:
        with counting:
            by_time = balance_at(client, account, at=event.timestamp.isoformat())
        rows, decoded = counting.rows, counting.decoded
        with counting:
            by_version = balance_at(client, account, version=by_time["version"])  # type: ignore[arg-type]
        assert by_time == by_version
        assert rows <= counting.rows + rows_bound
        assert decoded <= counting.decoded + decoded_bound


def test_cli_history_at_an_instant(event_clock: TickingClock, tmp_path: Path) -> None:
    event_clock.step = timedelta(seconds=1)  # the CLI takes whole seconds
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = build_ledger(Settings(database_url=database))
    try:
        account = ledger.open_account("USD").id
        grow(ledger, account, 30, batch=7)
        events = ledger.account_events(account)
    finally:
        ledger.close()
    runner = CliRunner()

    def history(*options: str) -> Result:
        return runner.invoke(cli, ["history", str(account), "--database", database, *options])

    middle = events[len(events) // 2].timestamp
    # A naive --at is UTC; the history stops at the last event at or before it.
    naive = middle.astimezone(UTC).replace(tzinfo=None).isoformat()
    shown = history("--at", naive, "--json")
    assert shown.exit_code == 0, shown.output
    expected = [event.version for event in events if event.timestamp <= middle]
    assert [event["version"] for event in json.loads(shown.stdout)] == expected
    early = (events[0].timestamp - timedelta(seconds=1)).astimezone(UTC).replace(tzinfo=None)
    refused = history("--at", early.isoformat())
    assert refused.exit_code != 0 and "did not exist" in refused.output
