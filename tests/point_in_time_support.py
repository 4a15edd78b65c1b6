"""Helpers of the point-in-time tests (application and HTTP): a clock for the
library's event timestamps, the old full replay, and a count of what a read reads."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from domain.ledger import Ledger
from domain.results import BalanceAt
from domain.timeline import FANOUT

INDIA = timezone(timedelta(hours=5, minutes=30))


class TickingClock:
    """Every ``per_tick`` calls, ``step`` later: ties and gaps, in +05:30."""

    def __init__(self, per_tick: int = 4, step: timedelta = timedelta(milliseconds=1)) -> None:
        self.start = datetime(2030, 6, 1, 12, 0, tzinfo=INDIA)
        self.per_tick = per_tick
        self.step = step
        self.calls = 0
        self.lock = threading.Lock()  # the group-commit writer stamps in its thread

    def __call__(self) -> datetime:
        with self.lock:
            calls, self.calls = self.calls, self.calls + 1
        return self.start + self.step * (calls // self.per_tick)


def replayed_at(ledger: Ledger, account: UUID, at: datetime) -> BalanceAt | None:
    """The old answer: replay from version 1, stop before the first event after ``at``."""
    state: Any = None
    for event in ledger.events.get(account):
        if event.timestamp > at:  # type: ignore[attr-defined]
            break
        state = event.mutate(state)
    return None if state is None else BalanceAt.of(state)


def replay_all(ledger: Ledger, account: UUID) -> list[tuple[datetime, BalanceAt]]:
    """Each version's timestamp and balances, from one replay from version 1."""
    state: Any = None
    replayed = []
    for event in ledger.events.get(account):
        state = event.mutate(state)
        replayed.append((event.timestamp, BalanceAt.of(state)))  # type: ignore[attr-defined]
    return replayed


def old_answer(replayed: list[tuple[datetime, BalanceAt]], at: datetime) -> BalanceAt | None:
    """``replayed_at`` on the result of ``replay_all``: the state before the first
    event after ``at``."""
    answer = None
    for timestamp, balances in replayed:
        if timestamp > at:
            break
        answer = balances
    return answer


def search_cost(versions: int) -> tuple[int, int]:
    """At most how many rows and decoded events finding a version among ``versions``
    adds to a read by version (``domain.timeline``, ``FANOUT`` per query)."""
    rounds = math.ceil(math.log(versions, FANOUT))
    return rounds * (FANOUT - 1), rounds * math.ceil(math.log2(FANOUT))


class CountingReads:
    """Rows the store returns and events decoded, for the reads in a ``with`` block."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.rows = 0
        self.decoded = 0

    def __enter__(self) -> CountingReads:
        self.rows = self.decoded = 0
        ledger = self.ledger
        assert ledger.snapshots is not None
        self.patched: list[tuple[Any, str, Any]] = []
        recorders = {id(r): r for r in (ledger.events.recorder, ledger.snapshots.recorder)}
        for recorder in recorders.values():
            self._wrap(recorder, "select_events", self._count_rows)
            if hasattr(recorder, "select_versions"):
                self._wrap(recorder, "select_versions", self._count_rows)
        self._wrap(ledger.mapper, "to_domain_event", self._count_decoded)
        return self

    def _wrap(self, target: Any, name: str, counter: Callable[[Any], Any]) -> None:
        original = getattr(target, name)
        self.patched.append((target, name, original))
        setattr(target, name, lambda *a, **k: counter(original(*a, **k)))

    def _count_rows(self, rows: Any) -> Any:
        rows = list(rows)
        self.rows += len(rows)
        return rows

    def _count_decoded(self, event: Any) -> Any:
        self.decoded += 1
        return event

    def __exit__(self, *_: object) -> None:
        for target, name, _original in self.patched:
            delattr(target, name)
