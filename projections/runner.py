"""Keeping the views up to date: a follower thread woken by PostgreSQL LISTEN/NOTIFY or
by a polling timer.

On PostgreSQL every save sends ``NOTIFY <events table>``; a listener thread turns each
notification into a wake-up. Notifications are only hints: the follower also polls
every ``poll_interval_seconds``, so a lost notification, a killed LISTEN connection
(reconnected with backoff) or a notification sent while it was down delays the views
by at most one interval. SQLite and memory stores have no notifications and just poll.

The thread never dies of a failure. A transient one (``projections.failures``: the
databases are away) is logged and retried with backoff. A permanent one (an event the
views cannot take) stalls the follower before that event: it is recorded in the views
for every process to report, logged once as an error, and tried again every
``stalled_retry_seconds`` (a repair, such as a wider column, is picked up without a
restart), without logging each retry. Anything else (a bug) is logged with its
traceback and retried with backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import psycopg
from psycopg import sql

from domain.ledger import Ledger
from infrastructure.settings import DatabaseUrl
from infrastructure.views import ViewStore
from projections.base import Projection
from projections.failures import TRANSIENT_ERRORS, ProjectionFailure
from projections.follower import ProjectionStalled, follower_for

logger = logging.getLogger(__name__)

LISTEN_TIMEOUT_SECONDS = 0.5
RECONNECT_BACKOFF_SECONDS_MAX = 5.0
ERROR_BACKOFF_SECONDS_MAX = 5.0
STOP_TIMEOUT_SECONDS = 10.0
STALLED_RETRY_SECONDS_DEFAULT = 30.0


class PostgresListener:
    """LISTENs on the events table's channel and sets ``wake`` on each NOTIFY."""

    def __init__(self, database: DatabaseUrl, channel: str, wake: threading.Event) -> None:
        self.database = database
        self.channel = channel
        self.wake = wake
        self.connections = 0  # how many times it has (re)connected
        self.backend_pid: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="projections-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_SECONDS)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error as error:
                logger.warning("LISTEN connection lost (%s); polling until it is back", error)
            self.backend_pid = None
            self._stop.wait(backoff)
            backoff = min(RECONNECT_BACKOFF_SECONDS_MAX, backoff * 2)

    def _listen(self) -> None:
        database = self.database
        with psycopg.connect(
            **database.connection_kwargs(),
            autocommit=True,
            application_name="eventledger-projections-listen",
        ) as connection:
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.backend_pid = connection.info.backend_pid
            self.connections += 1
            # Saves made while no one listened sent their NOTIFY to nobody: look now.
            self.wake.set()
            while not self._stop.is_set():
                for _ in connection.notifies(timeout=LISTEN_TIMEOUT_SECONDS, stop_after=1):
                    self.wake.set()


class ProjectionRunner:
    """A background follower with ``start()``/``stop()``, for the API's lifespan or the
    ``eventledger projections run`` process."""

    def __init__(
        self,
        ledger: Ledger,
        store: ViewStore,
        projections: Sequence[Projection],
        *,
        events_database: DatabaseUrl,
        batch_size: int = 1000,
        poll_interval_seconds: float = 0.2,
        listen: bool = True,
        stalled_retry_seconds: float = STALLED_RETRY_SECONDS_DEFAULT,
    ) -> None:
        assert stalled_retry_seconds > 0
        self.follower = follower_for(ledger, store, projections, batch_size=batch_size)
        self.poll_interval_seconds = poll_interval_seconds
        self.stalled_retry_seconds = stalled_retry_seconds
        # The last transient error, until a pass succeeds; the permanent failures the
        # follower is stalled at (also recorded in the views), until it gets past them.
        self.last_error: str | None = None
        self.failures: list[ProjectionFailure] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="projections", daemon=True)
        self.listener: PostgresListener | None = None
        if listen and events_database.kind == "postgresql":
            channel = ledger.recorder.channel_name  # type: ignore[attr-defined]
            self.listener = PostgresListener(events_database, channel, self._wake)

    def start(self) -> None:
        if self.listener is not None:
            self.listener.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.listener is not None:
            self.listener.stop()
        self._thread.join(STOP_TIMEOUT_SECONDS)

    def wake(self) -> None:
        """Asks for a look at the log now (e.g. after this process saved something)."""
        self._wake.set()

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def run(self) -> None:
        """Follows in the calling thread until ``stop()``."""
        self._run()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.follower.catch_up(self._stop)
            except ProjectionStalled as stalled:
                self._stalled(stalled)
                # Woken readers do not hurry a retry: nothing changes until a repair.
                self._stop.wait(self.stalled_retry_seconds)
                continue
            except TRANSIENT_ERRORS as error:
                self.last_error = f"{type(error).__name__}: {error}"
                logger.warning("projections paused: %s; retrying in %.1fs", error, backoff)
                self._stop.wait(backoff)
                backoff = min(ERROR_BACKOFF_SECONDS_MAX, backoff * 2)
                continue
            except Exception as error:  # noqa: BLE001 - the thread must not die of a bug
                self.last_error = f"{type(error).__name__}: {error}"
                logger.exception("projections failed; retrying in %.1fs", backoff)
                self._stop.wait(backoff)
                backoff = min(ERROR_BACKOFF_SECONDS_MAX, backoff * 2)
                continue
            if self.failures:
                logger.warning("projections resumed past position %d", self.failures[0].position)
                self.failures = []
            backoff, self.last_error = 0.1, None
            self._wake.wait(self.poll_interval_seconds)

    def _stalled(self, stalled: ProjectionStalled) -> None:
        """Logs a failure once (again only when it changes), and keeps it to report."""
        failures = stalled.failures
        if [(f.name, f.position, f.error) for f in self.failures] != [
            (f.name, f.position, f.error) for f in failures
        ]:
            logger.error(
                "projections stalled: %s; retrying every %.0fs until repaired",
                stalled,
                self.stalled_retry_seconds,
            )
        self.failures = failures
        self.last_error = None
