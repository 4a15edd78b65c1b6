"""The plain Ledger's transfer queue in a server: each transfer on a pool thread.

Without group commit a transfer is its own unit of work (``Ledger.execute_transfer``).
A caller on an event loop must not run it in its own thread, so ``submit_transfer``
hands it to this pool and every caller awaits a future, in both modes. A transfer
still queued when its caller gives up is cancelled and never runs.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from uuid import UUID

from domain.ledger import Ledger
from domain.results import TransferView
from domain.transfer import TransferRequest

THREADS_MAX = 32


class TransferThreads:
    def __init__(self, ledger: Ledger, threads_max: int = THREADS_MAX) -> None:
        self.ledger = ledger
        self._pool = ThreadPoolExecutor(threads_max, thread_name_prefix="transfer")

    def submit(self, transfer_id: UUID, request: TransferRequest) -> Future[TransferView]:
        return self._pool.submit(self.ledger.execute_transfer, transfer_id, request)

    def close(self) -> None:
        """Runs what is queued, then stops the threads."""
        self._pool.shutdown(wait=True)
