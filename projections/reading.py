"""Reading the notification log in whole saves, for the followers.

``read_whole_saves`` reads about a batch of events after a position, decoded
(``projections.decoding``), and cuts it at a save boundary (``projections.base``).
An event that cannot be read or decoded is ``EventUnreadable`` at its exact position,
once the whole saves before it have been returned: a row the recorder itself cannot
read (its error names no position) is found by bisecting the read's ``stop``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from eventsourcing.persistence import Notification

from domain.ledger import Ledger
from projections.base import Positioned, whole_saves
from projections.decoding import EventDecoder
from projections.failures import describe_error, is_transient

logger = logging.getLogger(__name__)

BATCH_SIZE_MAX = 100_000
# One save holds at most 1000 transfers of five events; a page is at least one event.
PAGES_PER_BATCH_MAX = 10_000


class EventUnreadable(Exception):
    """The event at ``position`` cannot be read from the log or decoded."""

    def __init__(self, position: int, error: BaseException) -> None:
        super().__init__(f"position {position}: {describe_error(error)}")
        self.position = position
        self.error = error


def read_whole_saves(
    ledger: Ledger,
    after: int,
    batch_size: int,
    decoder: EventDecoder | None = None,
    carried: Sequence[Positioned] = (),
) -> tuple[list[Positioned], list[Positioned]]:
    """About ``batch_size`` events after position ``after`` that end on a save
    boundary (more when one save is larger than a batch), and the events read beyond
    that boundary; ``carried`` are such events from the previous call, not read again.
    """
    assert 1 <= batch_size <= BATCH_SIZE_MAX
    decode = (decoder or EventDecoder(ledger.mapper)).decode
    events = list(carried)
    start = events[-1].position if events else after
    for _ in range(PAGES_PER_BATCH_MAX):
        page, unreadable = _read_page(ledger, start, batch_size)
        for notification in page:
            try:
                events.append(decode(notification))
            except Exception as error:  # noqa: BLE001 - whatever it is, this event is at fault
                unreadable = EventUnreadable(notification.id, error)
                break
        whole = whole_saves(events)
        if unreadable is not None:
            # The whole saves before it are applied; the next read starts at its save.
            if not whole:
                raise unreadable
            return events[:whole], []
        if whole or len(page) < batch_size:
            if not whole and events:
                # A save is written atomically, so the log never ends inside one; if it
                # seems to, the boundary rule and the model disagree: wait, don't guess.
                logger.warning("log ends inside a save at %d; waiting", events[-1].position)
            return events[:whole], events[whole:]
        start = page[-1].id
    raise AssertionError(f"no save boundary within {PAGES_PER_BATCH_MAX} pages after {after}")


def _read_page(
    ledger: Ledger, after: int, limit: int
) -> tuple[list[Notification], EventUnreadable | None]:
    """Up to ``limit`` notifications after ``after``. If a stored row cannot be read
    (the recorder raises a permanent error, e.g. an originator id that is not a UUID),
    the readable ones before it and an ``EventUnreadable`` naming its position, found
    by bisecting the read's ``stop``: the failure shows from that position on."""
    select = ledger.recorder.select_notifications

    def read(stop: int | None = None) -> list[Notification]:
        return list(select(after, limit, stop=stop, inclusive_of_start=False))

    def fails(stop: int) -> BaseException | None:
        try:
            read(stop)
        except Exception as error:
            if is_transient(error):
                raise
            return error
        return None

    try:
        return read(), None
    except Exception as error:
        if is_transient(error):
            raise
    low, high = after + 1, max(after + 1, ledger.recorder.max_notification_id() or 0)
    failure = fails(high)
    if failure is None:
        return read(), None  # it reads now: nothing to report
    while low < high:  # the least stop whose read fails
        middle = (low + high) // 2
        if fails(middle) is None:
            low = middle + 1
        else:
            high = middle
    readable = read(low - 1) if low > after + 1 else []
    return list(readable), EventUnreadable(low, failure)
