"""On PostgreSQL the follower is woken by NOTIFY, and polls too, so it cannot stall.

Method: a real LISTEN connection; the poll interval is set long to show a NOTIFY
wakes the follower, short to show polling alone catches up when every NOTIFY is lost
(the listener listens on a silent channel), and the listener's backend is killed
with ``pg_terminate_backend`` to show it reconnects and the views still catch up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from domain.ledger import Ledger
from infrastructure.settings import Settings
from infrastructure.views import ViewStore
from projections.catalog import select_projections
from projections.failures import read_failures
from projections.runner import ProjectionRunner
from tests.conftest import POSTGRES_BASE_URL
from tests.support import wait_until

pytestmark = pytest.mark.parametrize("store", ["postgres"])

CATCH_UP_SECONDS_MAX = 10.0


@pytest.fixture
def make_runner(
    settings: Settings, ledger: Ledger, views: ViewStore
) -> Iterator[Callable[..., ProjectionRunner]]:
    started: list[ProjectionRunner] = []

    def make(poll_interval_seconds: float, channel: str | None = None) -> ProjectionRunner:
        runner = ProjectionRunner(
            ledger,
            views,
            select_projections(),
            events_database=settings.database,
            poll_interval_seconds=poll_interval_seconds,
        )
        assert runner.listener is not None
        if channel is not None:
            runner.listener.channel = channel
        runner.start()
        started.append(runner)
        wait_until(lambda: runner.listener is not None and runner.listener.backend_pid, 10)
        return runner

    yield make
    for runner in started:
        runner.stop()


def caught_up(ledger: Ledger, views: ViewStore) -> Callable[[], bool]:
    return lambda: (
        min(views.positions()[p.name] for p in select_projections()) >= (ledger.head_position())
    )


class TestListenNotify:
    def test_a_notify_wakes_the_follower_long_before_its_poll(
        self, ledger: Ledger, views: ViewStore, make_runner: Callable[..., ProjectionRunner]
    ) -> None:
        make_runner(poll_interval_seconds=60)
        account = ledger.open_account("USD").id
        wait_until(caught_up(ledger, views), CATCH_UP_SECONDS_MAX)
        for amount in (1, 2, 3):
            ledger.deposit(account, amount)
            assert wait_until(caught_up(ledger, views), CATCH_UP_SECONDS_MAX) < 5

    def test_polling_catches_up_when_every_notify_is_lost(
        self, ledger: Ledger, views: ViewStore, make_runner: Callable[..., ProjectionRunner]
    ) -> None:
        make_runner(poll_interval_seconds=0.3, channel="eventledger_silent_channel")
        account = ledger.open_account("USD").id
        for amount in (1, 2, 3):
            ledger.deposit(account, amount)
            wait_until(caught_up(ledger, views), CATCH_UP_SECONDS_MAX)

    def test_a_killed_listen_connection_is_replaced_and_nothing_stalls(
        self, ledger: Ledger, views: ViewStore, make_runner: Callable[..., ProjectionRunner]
    ) -> None:
        runner = make_runner(poll_interval_seconds=1.0)
        listener = runner.listener
        assert listener is not None
        account = ledger.open_account("USD").id
        for round_number in range(3):
            pid = listener.backend_pid
            with psycopg.connect(POSTGRES_BASE_URL, autocommit=True) as connection:
                connection.execute("SELECT pg_terminate_backend(%s)", (pid,))
            ledger.deposit(account, 10 + round_number)  # its NOTIFY may find no listener
            wait_until(caught_up(ledger, views), CATCH_UP_SECONDS_MAX)
            wait_until(lambda p=pid: listener.backend_pid not in (None, p), CATCH_UP_SECONDS_MAX)
        assert listener.connections == 4
        assert runner.is_alive and runner.last_error is None

    def test_a_killed_views_connection_is_replaced_and_the_views_catch_up(
        self, ledger: Ledger, views: ViewStore, make_runner: Callable[..., ProjectionRunner]
    ) -> None:
        runner = make_runner(poll_interval_seconds=0.2)
        account = ledger.open_account("USD").id
        wait_until(caught_up(ledger, views), CATCH_UP_SECONDS_MAX)
        # Only this test's own connection: other suites may share the server.
        pid = views._writer.info.backend_pid
        with psycopg.connect(POSTGRES_BASE_URL, autocommit=True) as connection:
            connection.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for amount in (1, 2, 3):
            ledger.deposit(account, amount)
        wait_until(caught_up(ledger, views), CATCH_UP_SECONDS_MAX)
        assert runner.is_alive
        # A lost connection is transient: retried, never recorded as a stall.
        assert runner.failures == []
        with views.read() as tx:
            assert read_failures(tx) == {}
