"""The Ledger as a server runs it: transfers go to a queue, callers await a future.

The domain's ``Ledger.transfer`` runs each transfer as its own unit of work in the
caller's thread. A caller on an event loop must not do that, so a server's Ledger
hands the checked request to a queue and every caller awaits one future, with one
timeout, whatever the queue is: a pool of threads running ``execute_transfer``
(``TransferThreads``, without group commit) or the group-commit writer
(``infrastructure.tuned_ledger``). A transfer still queued when its caller gives up
is cancelled and never runs.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol
from uuid import UUID

from domain.errors import OutcomeUnknown, ServiceUnavailable, Unavailable
from domain.ledger import Ledger
from domain.results import TransferView
from domain.transfer import TransferRequest

THREADS_MAX = 32
TRANSFER_TIMEOUT_SECONDS = 120.0


class TransferQueue(Protocol):
    def submit(self, transfer_id: UUID, request: TransferRequest) -> Future[TransferView]: ...

    def close(self) -> None:
        """Runs what is queued, then stops."""
        ...


class TransferThreads:
    """Each transfer its own unit of work, on a pool thread."""

    def __init__(self, ledger: Ledger, threads_max: int = THREADS_MAX) -> None:
        self.ledger = ledger
        self._pool = ThreadPoolExecutor(threads_max, thread_name_prefix="transfer")

    def submit(self, transfer_id: UUID, request: TransferRequest) -> Future[TransferView]:
        return self._pool.submit(self.ledger.execute_transfer, transfer_id, request)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class QueuedLedger(Ledger):
    # The library names the tables after the application: every class shares them.
    name = "Ledger"

    def __init__(
        self,
        *args: Any,
        transfer_timeout_seconds: float = TRANSFER_TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.transfer_timeout_seconds = transfer_timeout_seconds
        # Started last: the queue's threads use the store built above.
        self.transfer_queue = self.start_transfer_queue()

    def start_transfer_queue(self) -> TransferQueue:
        return TransferThreads(self)

    def close(self) -> None:
        """Commits the queued transfers, then closes the store."""
        self.transfer_queue.close()
        super().close()

    def submit_transfer(self, transfer_id: UUID, request: TransferRequest) -> Future[TransferView]:
        """Queues a checked request (``domain.rules.transfer_request``); the future
        holds the view or the ``LedgerError``. Does no I/O."""
        return self.transfer_queue.submit(transfer_id, request)

    def place_transfer(self, transfer_id: UUID, request: TransferRequest) -> TransferView:
        future = self.submit_transfer(transfer_id, request)
        try:
            return future.result(self.transfer_timeout_seconds)
        except FutureTimeout:
            raise self.gave_up(future) from None

    def gave_up(self, future: Future[TransferView]) -> Unavailable:
        """The error for a caller who waited ``transfer_timeout_seconds`` in vain.

        A transfer that had not started is cancelled and will never be written; one
        that had may be committed or not.
        """
        waited = f"no answer within {self.transfer_timeout_seconds} s"
        if future.cancel():
            return ServiceUnavailable(f"{waited}; nothing was written, retry the same request")
        return OutcomeUnknown(f"{waited}; retry with the same id or Idempotency-Key")
