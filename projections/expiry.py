"""Voids pending transfers whose timeout has passed, in the background of ``serve``.

Expiry is also lazy (posting an expired transfer voids it and answers
``pending_expired``); the sweeper makes the reserved funds come back without anyone
touching the transfer. It follows the log for the three events that open and close a
pending transfer, keeps the open ones with a deadline in memory (so memory grows with
the number of open pending transfers, not with the log), and asks the ledger to expire
the due ones. Several processes may sweep at once: the event store lets one win.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from uuid import UUID

from eventsourcing.persistence import PersistenceError
from eventsourcing.utils import get_topic

from domain.errors import LedgerError
from domain.ledger import Ledger
from domain.transfer import Transfer

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
OPENS = get_topic(Transfer.Pending)
CLOSES = (get_topic(Transfer.PendingPosted), get_topic(Transfer.PendingVoided))


class PendingExpirySweeper:
    def __init__(self, ledger: Ledger, interval_seconds: float = 1.0) -> None:
        assert interval_seconds > 0
        self.ledger = ledger
        self.interval_seconds = interval_seconds
        self.position = 0
        self.deadlines: dict[UUID, datetime] = {}
        self.expired_total = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def scan(self) -> None:
        """Reads the log's pending events since the last scan."""
        while True:
            page = self.ledger.recorder.select_notifications(
                self.position, PAGE_SIZE, topics=(OPENS, *CLOSES), inclusive_of_start=False
            )
            for notification in page:
                if notification.topic == OPENS:
                    event = self.ledger.mapper.to_domain_event(notification)
                    if event.expires_at is not None:
                        self.deadlines[event.originator_id] = event.expires_at
                else:
                    self.deadlines.pop(notification.originator_id, None)
            if not page:
                return
            self.position = page[-1].id

    def sweep(self) -> int:
        """Expires what is due now; returns how many transfers it voided."""
        self.scan()
        now = self.ledger.clock()
        due = [transfer_id for transfer_id, at in self.deadlines.items() if at <= now]
        expired = self.ledger.expire_pending(due)
        for transfer_id in due:
            self.deadlines.pop(transfer_id, None)
        self.expired_total += expired
        return expired

    def start(self) -> None:
        assert self._thread is None
        self._thread = threading.Thread(target=self._run, name="expiry-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout_seconds: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sweep()
            except (LedgerError, PersistenceError):
                # A conflict or an unreachable database: the next round tries again,
                # and lazy expiry still protects every post.
                logger.warning("pending-transfer sweep failed; retrying", exc_info=True)
            self._stopping.wait(self.interval_seconds)
