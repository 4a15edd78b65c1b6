"""Offline rebuild: replay the log from position 0 into fresh tables, then swap.

The fresh tables (``balances__rebuild``...) have their own tracking rows
(``balances:rebuild``...), written in the same transaction as each batch, so an
interrupted rebuild resumes where its last batch committed. When the fresh tables have
caught up with the live ones, one transaction drops the live tables, renames the fresh
ones and moves the live position: readers see the old complete view or the new
complete view, never a half-built one. The live follower, if one runs meanwhile, keeps
the old tables current until the swap, then loses its compare-and-set once and
continues on the new tables.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from domain.ledger import Ledger
from infrastructure.views import ViewStore
from projections.base import (
    Projection,
    create_indexes,
    create_tables,
    drop_tables,
    swap_in,
    tracking_name,
)
from projections.follower import Follower

SWAP_ATTEMPTS_MAX = 100
REBUILD_BATCH_SIZE = 5000

# progress(events done, events to do): called after each batch.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RebuildReport:
    names: list[str]
    resumed_from: int  # 0 for a fresh rebuild
    events: int  # events read by this run
    position: int  # the position the swapped-in views are at
    seconds: float
    swapped: bool

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def rebuild(
    ledger: Ledger,
    store: ViewStore,
    projections: Sequence[Projection],
    *,
    batch_size: int = REBUILD_BATCH_SIZE,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> RebuildReport:
    """Rebuilds ``projections`` and swaps them in; resumes an interrupted rebuild.

    With ``stop`` set before the end, it returns with ``swapped`` False, leaving the
    fresh tables to be resumed by the next call.
    """
    started = time.monotonic()
    follower = Follower(ledger, store, projections, rebuilding=True, batch_size=batch_size)
    _prepare(store, projections)
    resumed_from = follower.position
    done = 0

    def on_batch(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            head = max(ledger.head_position(), follower.position)
            progress(follower.position - resumed_from, head - resumed_from)

    generation = secrets.token_hex(4)
    for _ in range(SWAP_ATTEMPTS_MAX):
        follower.catch_up(stop, on_batch)
        if stop is not None and stop.is_set():
            break
        with store.transaction() as tx:
            for projection in projections:
                create_indexes(tx, projection, rebuilding=True, generation=generation)
        if _swap_if_caught_up(store, projections):
            return RebuildReport(
                names=[p.name for p in projections],
                resumed_from=resumed_from,
                events=done,
                position=follower.position,
                seconds=time.monotonic() - started,
                swapped=True,
            )
    return RebuildReport(
        names=[p.name for p in projections],
        resumed_from=resumed_from,
        events=done,
        position=follower.position,
        seconds=time.monotonic() - started,
        swapped=False,
    )


def _prepare(store: ViewStore, projections: Sequence[Projection]) -> None:
    """Creates fresh tables, or keeps those of an interrupted rebuild to resume them."""
    generation = secrets.token_hex(4)
    with store.transaction() as tx:
        positions = tx.positions()
        for projection in projections:
            if tracking_name(projection, rebuilding=True) not in positions:
                drop_tables(tx, projection, rebuilding=True)  # leftovers of nothing
            create_tables(tx, projection, rebuilding=True, generation=generation)


def _swap_if_caught_up(store: ViewStore, projections: Sequence[Projection]) -> bool:
    """Swaps every projection in one transaction if none of the fresh tables is behind
    the live one (readers must not see a view go back in time); else False."""
    names = [tracking_name(p, rebuilding) for p in projections for rebuilding in (False, True)]
    with store.transaction() as tx:
        positions = tx.lock_positions(names)
        rebuilt = {p.name: positions[tracking_name(p, rebuilding=True)] for p in projections}
        for projection in projections:
            live = positions.get(tracking_name(projection, rebuilding=False), 0)
            if rebuilt[projection.name] < live:
                return False
        for projection in projections:
            swap_in(tx, projection, rebuilt[projection.name])
    return True
