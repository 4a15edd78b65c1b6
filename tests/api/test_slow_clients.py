"""Slow and large requests through a real ``eventledger serve``, with raw sockets.

Goal (issue 13, item 5): a request is authorized before any of its body is read; a
request head and a request body each arrive within a bounded time or the connection is
closed; only so many bodies are received at once; no large parse holds the event loop;
the memory of bodies in flight is bounded and returns once the clients are gone.

Method: one server on SQLite with one admin key (so every /v1 route needs a key) and
short deadlines (head and body: 2 s, body slots: 2, slot wait: 0.5 s). The clients of
``benchmarks/slow_clients.py`` send heads and bodies piece by piece, or stall, and watch
when the server answers and when it closes the connection; the server's RSS comes from
/proc. Every load is bounded in connections and in time; the whole module takes about
half a minute. Latency bounds are generous (a shared machine), yet far below what the
same loads did before (``/healthz`` p50 at 0.6 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from benchmarks.slow_clients import (
    BATCH_PATH,
    MIB,
    Outcome,
    RssSampler,
    flooding,
    healthz_latencies,
    latency_figures,
    many_requests,
    one_request,
    request_head,
    rss_mib,
)
from infrastructure.api_keys import build_keystore, create_key
from infrastructure.settings import Settings
from tests.api.servers import running_server

HEAD_TIMEOUT_SECONDS = 2
BODY_TIMEOUT_SECONDS = 2
IN_FLIGHT_MAX = 2
QUEUE_TIMEOUT_SECONDS = 0.5
# How late past its deadline a connection may close on a loaded machine.
LATE_SECONDS = 2
HOST = "127.0.0.1"


@dataclass
class Target:
    port: int
    pid: int
    key: str


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    workdir = tmp_path_factory.mktemp("slow-clients")
    database_url = f"sqlite:///{workdir / 'ledger.db'}"
    keystore = build_keystore(Settings(database_url=database_url))
    try:
        key, _ = create_key(keystore, ["admin"])
    finally:
        keystore.close()
    settings = {
        "EVENTLEDGER_REQUEST_HEAD_TIMEOUT_SECONDS": str(HEAD_TIMEOUT_SECONDS),
        "EVENTLEDGER_REQUEST_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_SECONDS),
        "EVENTLEDGER_REQUEST_BODIES_IN_FLIGHT_MAX": str(IN_FLIGHT_MAX),
        "EVENTLEDGER_REQUEST_BODY_QUEUE_TIMEOUT_SECONDS": str(QUEUE_TIMEOUT_SECONDS),
    }
    with running_server(workdir, database_url, settings=settings) as server:
        yield Target(int(server.url.rsplit(":", 1)[1]), server.process.pid, key)


def send(target: Target, head: bytes, body: bytes = b"", watch_seconds: float = 10) -> Outcome:
    return asyncio.run(one_request(HOST, target.port, head, body, watch_seconds))


def account_head(target: Target, content_length: int) -> bytes:
    return request_head("/v1/accounts", content_length, target.key)


class TestHeads:
    def test_a_stalled_head_is_answered_408_and_closed(self, target: Target) -> None:
        outcome = send(target, b"POST /v1/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
        assert (outcome.status, outcome.problem_code()) == (408, "request_timeout")
        assert outcome.closed_after_seconds is not None
        assert outcome.closed_after_seconds > HEAD_TIMEOUT_SECONDS - 0.5
        assert outcome.closed_after_seconds < HEAD_TIMEOUT_SECONDS + LATE_SECONDS

    def test_a_connection_that_sends_nothing_is_closed(self, target: Target) -> None:
        outcome = send(target, b"")
        assert outcome.closed_after_seconds is not None
        assert outcome.closed_after_seconds < HEAD_TIMEOUT_SECONDS + LATE_SECONDS

    def test_a_second_head_on_a_kept_alive_connection_has_the_same_deadline(
        self, target: Target
    ) -> None:
        first = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        outcome = send(target, first + b"GET /healthz HTTP/1.1\r\nHo")
        assert outcome.answer.startswith(b"HTTP/1.1 200")
        assert b"HTTP/1.1 408" in outcome.answer
        assert outcome.closed_after_seconds is not None
        assert outcome.closed_after_seconds < HEAD_TIMEOUT_SECONDS + LATE_SECONDS

    def test_a_head_that_never_ends_is_refused_431_and_not_buffered(self, target: Target) -> None:
        """Before: httptools buffered a 200 MiB header whole."""
        before = rss_mib(target.pid)
        outcome = send(target, b"GET /healthz HTTP/1.1\r\nX-Big: ", b"a" * 64 * MIB)
        assert (outcome.status, outcome.problem_code()) == (431, "headers_too_large")
        assert outcome.body_bytes_sent < 32 * MIB  # the rest the server never read
        assert rss_mib(target.pid) - before < 16


class TestBodies:
    def test_a_stalled_body_is_answered_408_and_closed(self, target: Target) -> None:
        outcome = send(target, account_head(target, 1000), b'{"currency": ')
        assert (outcome.status, outcome.problem_code()) == (408, "request_timeout")
        assert outcome.closed_after_seconds is not None
        assert outcome.closed_after_seconds < BODY_TIMEOUT_SECONDS + LATE_SECONDS

    def test_without_a_key_the_body_is_not_waited_for(self, target: Target) -> None:
        """401 at once, though the body never comes: no byte of it was needed."""
        outcome = send(target, request_head(BATCH_PATH, MIB))
        assert (outcome.status, outcome.problem_code()) == (401, "unauthorized")
        assert outcome.closed_after_seconds is not None
        assert outcome.closed_after_seconds < BODY_TIMEOUT_SECONDS / 2

    def test_bodies_past_the_slots_wait_then_get_503(self, target: Target) -> None:
        async def three_stalled_bodies() -> list[Outcome]:
            head = account_head(target, 1000)
            holders = [one_request(HOST, target.port, head, b"{", 10) for _ in range(2)]
            started = [asyncio.ensure_future(holder) for holder in holders]
            await asyncio.sleep(0.3)  # the two hold both slots, until their deadline
            late = await one_request(HOST, target.port, head, b"{", 10)
            return [late, *await asyncio.gather(*started)]

        began = time.monotonic()
        late, *holders = asyncio.run(three_stalled_bodies())
        assert (late.status, late.problem_code()) == (503, "service_unavailable")
        assert b"retry-after: 1" in late.answer.lower()
        assert late.closed_after_seconds is not None
        assert late.closed_after_seconds < QUEUE_TIMEOUT_SECONDS + LATE_SECONDS
        assert [holder.status for holder in holders] == [408, 408]
        assert time.monotonic() - began < BODY_TIMEOUT_SECONDS + 2 * LATE_SECONDS
        body = b'{"currency": "USD"}'
        assert send(target, account_head(target, len(body)), body).status == 201

    def test_partial_bodies_without_a_key_cost_little_memory_and_return_it(
        self, target: Target
    ) -> None:
        """100 connections each send a head declaring 1 MiB, then 1 MiB minus one byte.
        Before: the server read them all (100 MiB more) and kept every one open."""
        head, body = request_head(BATCH_PATH, MIB), b"x" * (MIB - 1)
        before = rss_mib(target.pid)
        with RssSampler(target.pid) as sampler:
            outcomes = asyncio.run(many_requests(HOST, target.port, head, body, 100, 10))
        time.sleep(2)  # the server hands freed memory back a second after going idle
        after = rss_mib(target.pid)
        figures = f"RSS {before} -> peak {sampler.peak_mib} -> {after} MiB"
        print(figures)
        assert {outcome.status for outcome in outcomes} == {401}, figures
        closed = [outcome.closed_after_seconds for outcome in outcomes]
        assert all(seconds is not None and seconds < 5 for seconds in closed), closed
        assert sampler.peak_mib - before < 50, figures
        assert after - before < 20, figures


class TestFloods:
    def test_a_flood_without_a_key_leaves_healthz_fast(self, target: Target) -> None:
        """Four clients sending 1 MiB bodies of tiny objects, answered 401 unread."""
        before = latency_figures(healthz_latencies(HOST, target.port, 2))
        with flooding(HOST, target.port, 4, None) as statuses:
            time.sleep(0.5)
            during = latency_figures(healthz_latencies(HOST, target.port, 3))
        figures = f"/healthz before {before}, during {during}; flood answers {dict(statuses)}"
        print(figures)
        assert set(statuses) == {"401"} and sum(statuses.values()) > 20, figures
        assert during["p50_ms"] < 100, figures

    def test_a_flood_with_a_key_leaves_healthz_usable(self, target: Target) -> None:
        """The same bodies with the key: read, parsed off the event loop, refused."""
        before = latency_figures(healthz_latencies(HOST, target.port, 2))
        with flooding(HOST, target.port, 4, target.key) as statuses:
            time.sleep(0.5)
            during = latency_figures(healthz_latencies(HOST, target.port, 3))
        figures = f"/healthz before {before}, during {during}; flood answers {dict(statuses)}"
        print(figures)
        assert set(statuses) <= {"422", "503"} and statuses["422"] > 4, figures
        assert during["p50_ms"] < 200, figures
