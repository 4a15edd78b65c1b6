"""Faults injected at each step of a commit, on a real Ledger and its real store.

Nothing is mocked: the store's own methods still run; ``Faults`` wraps a few of them
on one Ledger instance so that the N-th call of one step fails the way a real outage
makes it fail. The steps, in the order a command meets them:

- ``load``: reading an aggregate's events fails (a pool timeout: the library's
  ``ConnectionUnavailableError``).
- ``decide``: the command fails while deciding, after earlier commands of its group
  changed their copies (the clock raises: any bug in a rule looks like this).
- ``save``: the insert fails before the COMMIT is sent (nothing can be written).
- ``commit``: the COMMIT is sent and fails, and the transaction is rolled back
  (SQLite and PostgreSQL only: the in-memory store has no commit to fail).
- ``answer_lost``: the COMMIT succeeds and its answer is lost; the recorder says
  what it says when the connection drops then: ``OutcomeUnknown``.
- ``after_commit``: writing a snapshot fails after the commit (snapshots are a cache).
- ``gave_up``: the caller stops waiting before its transfer started (the harness
  asks ``Faults.fires("gave_up")`` as it submits each transfer).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import ConnectionUnavailableError, OperationalError

from domain.errors import OutcomeUnknown
from domain.ledger import Ledger

STEPS = ("load", "decide", "save", "commit", "answer_lost", "after_commit", "gave_up")


class InjectedBug(RuntimeError):
    """A failure of our own code while deciding (not of the store)."""


class Faults:
    """Arms one step to fail at its N-th call from now; disarmed, it does nothing."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.fired: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._armed: dict[str, int] = {}
        self._suspended = False
        self._install()

    def arm(self, step: str, nth_call: int = 1) -> None:
        assert step in STEPS and nth_call >= 1, (step, nth_call)
        with self._lock:
            self._armed = {step: nth_call}

    def disarm(self) -> None:
        with self._lock:
            self._armed = {}

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """No fault fires and no call is counted inside (the checks' own reads)."""
        with self._lock:
            self._suspended = True
        try:
            yield
        finally:
            with self._lock:
                self._suspended = False

    def fires(self, step: str) -> bool:
        """Counts one call of ``step``; True when this call is the one to fail."""
        with self._lock:
            if self._suspended or step not in self._armed:
                return False
            self._armed[step] -= 1
            if self._armed[step] > 0:
                return False
            del self._armed[step]
        self.fired[step] += 1
        return True

    def _install(self) -> None:
        ledger = self.ledger
        recorder: Any = ledger.events.recorder
        self._wrap(recorder, "select_events", before=self._load)
        self._wrap(recorder, "insert_events", before=self._save, after=self._answer_lost)
        # The last step of our recorders before the library's COMMIT (see
        # infrastructure.persistence.CommitTracking).
        for name in ("_insert_events", "_fetch_ids_after_insert_events"):
            if name in type(recorder).__dict__:
                self._wrap(recorder, name, after=self._commit)
        snapshots: Any = ledger.snapshots
        assert snapshots is not None
        self._wrap(snapshots.recorder, "insert_events", before=self._after_commit)
        clock = ledger.clock

        def deciding_clock() -> Any:
            if self.fires("decide"):
                raise InjectedBug("injected: a bug while deciding")
            return clock()

        ledger.clock = deciding_clock

    @staticmethod
    def _wrap(
        target: Any,
        name: str,
        before: Callable[[], None] | None = None,
        after: Callable[[], None] | None = None,
    ) -> None:
        original = getattr(target, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if before is not None:
                before()
            result = original(*args, **kwargs)
            if after is not None:
                after()
            return result

        setattr(target, name, wrapped)

    def _load(self) -> None:
        if self.fires("load"):
            raise ConnectionUnavailableError("injected: timed out waiting for a connection")

    def _save(self) -> None:
        if self.fires("save"):
            raise OperationalError("injected: connection lost before the commit was sent")

    def _commit(self) -> None:
        if self.fires("commit"):
            raise OperationalError("injected: the COMMIT failed")

    def _answer_lost(self) -> None:
        if self.fires("answer_lost"):
            raise OutcomeUnknown("injected: connection lost after the COMMIT was sent")

    def _after_commit(self) -> None:
        if self.fires("after_commit"):
            raise OperationalError("injected: snapshot store unreachable")
