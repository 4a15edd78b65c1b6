"""Per-client token buckets: one client cannot starve the writer for everyone else.

Each client (its API key id, or its address when the API runs open without keys) has
a bucket of ``rate_limit_burst`` tokens refilled at ``rate_limit_per_second``; every
authenticated ``/v1`` request takes one token. An empty bucket answers 429
``rate_limited`` with ``Retry-After`` (whole seconds until a token is back), before
the route runs, so a refused request writes nothing and may be retried as it was.

The check runs inside the key check (``api.auth.authorize``, before the body is read),
right after the key is resolved, so a key is hashed once per request and the bucket is
the key's, not whatever a caller writes in a header. ``rate_limit_per_second = 0``
(the default) turns the limiter off. Buckets are per process: with N workers or N
servers a client gets up to N times the rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Request

from api.errors import Problem
from infrastructure.settings import Settings

# Buckets kept at most; past it the least recently used one is dropped (it can only
# have been idle, so it would be full again by now or soon: dropping it is generous).
CLIENTS_MAX = 100_000


class TokenBuckets:
    """Thread-safe: sync routes and dependencies run in the thread pool."""

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        clients_max: int = CLIENTS_MAX,
    ) -> None:
        assert rate_per_second > 0 and burst >= 1, (rate_per_second, burst)
        self.rate_per_second = rate_per_second
        self.burst = burst
        self._clock = clock
        self._clients_max = clients_max
        # client -> (tokens, time of the last refill)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Takes a token; returns 0.0 if there was one, else the seconds until one."""
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_second)
            wait_seconds = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait_seconds = (1.0 - tokens) / self.rate_per_second
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self._clients_max:
                self._buckets.popitem(last=False)
            return wait_seconds


def build_rate_limiter(settings: Settings) -> TokenBuckets | None:
    if settings.rate_limit_per_second <= 0:
        return None
    return TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)


def enforce_rate_limit(request: Request, key_id: str | None) -> None:
    """Raises 429 ``rate_limited`` when the client's bucket is empty.

    ``key_id`` is the authenticated key's id; None (open mode) falls back to the
    client's address.
    """
    buckets: TokenBuckets | None = getattr(request.app.state, "rate_limiter", None)
    if buckets is None:
        return
    if key_id is not None:
        client = f"key:{key_id}"
    else:
        client = f"ip:{request.client.host if request.client else 'unknown'}"
    wait_seconds = buckets.take(client)
    if wait_seconds > 0:
        retry_after = max(1, math.ceil(wait_seconds))
        raise Problem(
            429,
            "rate_limited",
            f"too many requests from this client; retry after {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
