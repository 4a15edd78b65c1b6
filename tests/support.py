"""Helpers shared by every layer's tests.

``funded_account`` opens and funds an account through the Ledger (the HTTP tests have
theirs in tests/api/support.py).

``wait_until`` is the one way a test waits for another thread or process (a server
starting, a follower catching up). It is never the way to let time pass for the
ledger: pending expiry and other deadlines move with the injected ``Clock`` of
tests/conftest.py.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any
from uuid import UUID

import httpx

from domain.ledger import Ledger

POLL_SECONDS = 0.02


def funded_account(
    ledger: Ledger, amount: int, currency: str = "USD", description: str = "", **fields: Any
) -> UUID:
    """Opens an account (``fields`` as ``open_account`` takes them) and deposits
    ``amount`` into it, nothing when 0; returns its id."""
    account_id = ledger.open_account(currency, **fields).id
    if amount:
        ledger.deposit(account_id, amount, description)
    return account_id


def wait_until(
    condition: Callable[[], object],
    timeout_seconds: float,
    *,
    describe: Callable[[], str] = lambda: "",
) -> float:
    """Polls ``condition()`` until it is true; returns the seconds that took.

    Fails after ``timeout_seconds``, with ``describe()`` in the message. A condition
    may raise to give up early (a process that exited will never become ready).
    """
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < timeout_seconds, f"not so after {elapsed:.1f} s. {describe()}"
        time.sleep(POLL_SECONDS)
    return time.monotonic() - started


def wait_until_serving(
    url: str,
    process: subprocess.Popen[bytes],
    timeout_seconds: float,
    log: Callable[[], str],
) -> None:
    """Waits until the server at ``url`` answers /readyz with 200."""

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{log()}")
        with suppress(httpx.TransportError):
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        return False

    wait_until(ready, timeout_seconds, describe=lambda: f"server not ready:\n{log()}")
