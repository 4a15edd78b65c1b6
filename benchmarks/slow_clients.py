"""Slow and large request bodies before authentication: the figures of issue 13 item 5.

Starts one ``eventledger serve`` from ``--source`` (default: this checkout) on a SQLite
file in a temporary directory, with one admin key, so every /v1 route needs a key.
Then, with raw sockets and no key:

1. partial bodies: ``--connections`` connections each send the head of
   ``POST /v1/transfers/batch`` declaring 1 MiB, then 1 MiB minus one byte of body, and
   wait. Reported: the server's RSS before, at its peak while they are connected, and
   ``--settle-seconds`` after they all closed; how the server answered (status codes),
   how soon it closed them, and how many were still open after ``--observe-seconds``.
2. stalled head: the same count of connections send half a request head and wait:
   how many the server closed, and when.
3. flood: ``--flood-clients`` clients send 1 MiB bodies of tiny JSON objects in a
   loop for ``--flood-seconds``: ``/healthz`` latency (p50, p95) before and during,
   without a key and again with the admin key (then the server parses each body), and
   with the key, bodies of numbers.

Prints one JSON document. Every phase is bounded in connections and in time.
``tests/api/test_slow_clients.py`` uses the same clients, at smaller sizes.

Run: ``.venv/bin/python benchmarks/slow_clients.py [--source DIR]`` (a checkout of an
earlier commit: ``git archive COMMIT | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.stats import emit, milliseconds, percentile  # noqa: E402

MIB = 1024 * 1024
CHUNK_BYTES = 64 * 1024
BATCH_PATH = "/v1/transfers/batch"
EVENTLEDGER = str(Path(sys.executable).parent / "eventledger")


def request_head(path: str, content_length: int, key: str | None = None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {content_length}",
    ]
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def batch_of(item: bytes, size_bytes: int) -> bytes:
    """A batch of ``size_bytes`` whose transfers are all ``item``: ``[{},{},...]``."""
    prefix, suffix = b'{"transfers":[', b"]}"
    count = (size_bytes - len(prefix) - len(suffix) + 1) // (len(item) + 1)
    body = prefix + b",".join([item] * count) + suffix
    return body + b" " * (size_bytes - len(body))


# What a flood sends: a megabyte of either was parsed whole, in C, before the server
# refused it; api/strict_json.py now counts both with its hooks and stops at 10,000.
FLOOD_ITEMS = {"objects": b"{}", "numbers": b"1"}


def rss_mib(pid: int) -> float:
    return common.rss_mib(pid)["rss_mib"]


class RssSampler:
    """The highest RSS of ``pid`` seen while the ``with`` block runs (every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with suppress(OSError):
                self.peak_mib = max(self.peak_mib, rss_mib(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Outcome:
    """One connection: the status the server answered (None: no answer) and when the
    server closed it (None: still open when we stopped watching)."""

    status: int | None
    closed_after_seconds: float | None
    body_bytes_sent: int
    answer: bytes = b""  # its first 64 KiB

    def problem_code(self) -> str | None:
        """The ``code`` of the problem document answered, if one was."""
        _, _, body = self.answer.partition(b"\r\n\r\n")
        with suppress(ValueError):
            return str(json.loads(body)["code"])
        return None


async def _read_answer(sock: socket.socket, until_closed: bool, received: bytearray) -> None:
    """Reads the server's answer into ``received`` (its first 64 KiB): until the server
    closes the connection if ``until_closed``, else until the answer is complete.

    On the socket itself, not an asyncio stream: a stream whose write fails (the server
    closed the connection while the body was still being sent) drops what the server
    answered before, where the socket still returns it, as a blocking client sees it.
    """
    loop = asyncio.get_running_loop()
    with suppress(ConnectionError):
        while chunk := await loop.sock_recv(sock, 65536):
            received += chunk[: max(0, 65536 - len(received))]
            head, separator, body = bytes(received).partition(b"\r\n\r\n")
            if not until_closed and separator and len(body) >= _content_length(head):
                return


def _content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def _status(answer: bytes) -> int | None:
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def _send(sock: socket.socket, data: bytes, sent: list[int]) -> None:
    """Sends ``data`` in chunks as fast as the server reads it, counting in ``sent``."""
    loop = asyncio.get_running_loop()
    with suppress(ConnectionError):
        for start in range(0, len(data), CHUNK_BYTES):
            await loop.sock_sendall(sock, data[start : start + CHUNK_BYTES])
            sent[0] += len(data[start : start + CHUNK_BYTES])


async def one_request(
    host: str,
    port: int,
    head: bytes,
    body: bytes,
    watch_seconds: float,
    until_closed: bool = True,
) -> Outcome:
    """Sends ``head`` and ``body`` (possibly less than the head declares) and watches
    the connection for ``watch_seconds`` at most: until the server closes it, or, unless
    ``until_closed``, until its answer is complete (``closed_after_seconds`` is then
    when the answer was)."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        await loop.sock_sendall(sock, head)
        sent = [0]
        sending = asyncio.create_task(_send(sock, body, sent))
        answer = bytearray()
        try:
            await asyncio.wait_for(_read_answer(sock, until_closed, answer), watch_seconds)
            closed_after: float | None = time.monotonic() - started
        except TimeoutError:
            closed_after = None
        sending.cancel()
        with suppress(asyncio.CancelledError):
            await sending
        # A reset, not a FIN: the server sees the client leave at once.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return Outcome(_status(bytes(answer)), closed_after, sent[0], bytes(answer))


async def many_requests(
    host: str, port: int, head: bytes, body: bytes, connections: int, watch_seconds: float
) -> list[Outcome]:
    return list(
        await asyncio.gather(
            *(one_request(host, port, head, body, watch_seconds) for _ in range(connections))
        )
    )


def summary(outcomes: list[Outcome], open_after_seconds: float) -> dict[str, Any]:
    closed = sorted(o.closed_after_seconds for o in outcomes if o.closed_after_seconds is not None)
    return {
        "connections": len(outcomes),
        "statuses": dict(Counter(str(o.status) for o in outcomes)),
        "open_after_seconds": open_after_seconds,
        "still_open": len(outcomes) - len(closed),
        "closed_p50_seconds": round(percentile(closed, 0.5), 3) if closed else None,
        "closed_max_seconds": round(closed[-1], 3) if closed else None,
        "body_mib_sent_median": round(
            sorted(o.body_bytes_sent for o in outcomes)[len(outcomes) // 2] / MIB, 3
        ),
    }


def partial_bodies(
    host: str, port: int, pid: int, connections: int, observe_seconds: float, settle_seconds: float
) -> dict[str, Any]:
    """Connections that declare 1 MiB and send 1 MiB minus one byte, without a key."""
    head = request_head(BATCH_PATH, MIB)
    body = b"x" * (MIB - 1)
    # One request first, so that "before" is a server that has answered one.
    asyncio.run(one_request(host, port, head, b"", 5))
    before = rss_mib(pid)
    with RssSampler(pid) as sampler:
        outcomes = asyncio.run(many_requests(host, port, head, body, connections, observe_seconds))
    time.sleep(settle_seconds)
    return {
        **summary(outcomes, observe_seconds),
        "rss_mib_before": before,
        "rss_mib_peak": sampler.peak_mib,
        "rss_mib_after": rss_mib(pid),
        "settle_seconds": settle_seconds,
    }


def stalled_heads(host: str, port: int, connections: int, observe_seconds: float) -> dict[str, Any]:
    """Connections that send half a request head and nothing more."""
    head = request_head(BATCH_PATH, MIB)
    outcomes = asyncio.run(
        many_requests(host, port, head[: len(head) // 2], b"", connections, observe_seconds)
    )
    return summary(outcomes, observe_seconds)


def healthz_latencies(url_host: str, port: int, seconds: float) -> list[float]:
    """Sequential GET /healthz on one keep-alive connection for ``seconds``."""
    request = f"GET /healthz HTTP/1.1\r\nHost: {url_host}\r\n\r\n".encode()
    latencies: list[float] = []
    with socket.create_connection((url_host, port), timeout=30) as connection:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            connection.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                chunk = connection.recv(65536)
                assert chunk, "the server closed the /healthz connection"
                answer += chunk
            latencies.append(time.monotonic() - started)
            time.sleep(0.01)
    return latencies


def latency_figures(latencies: list[float]) -> dict[str, Any]:
    return {
        "requests": len(latencies),
        "p50_ms": milliseconds(percentile(latencies, 0.5)),
        "p95_ms": milliseconds(percentile(latencies, 0.95)),
    }


@contextmanager
def flooding(
    host: str, port: int, clients: int, key: str | None, item: bytes = b"{}"
) -> Iterator[Counter[str]]:
    """``clients`` connections in a loop, each sending a 1 MiB batch of ``item`` and
    reading the answer, until the block ends; yields the count of answers by status."""
    body = batch_of(item, MIB)
    head = request_head(BATCH_PATH, len(body), key)
    statuses: Counter[str] = Counter()
    stop = threading.Event()

    async def client() -> None:
        while not stop.is_set():
            outcome = await one_request(host, port, head, body, 60, until_closed=False)
            statuses[str(outcome.status)] += 1

    thread = threading.Thread(
        target=lambda: asyncio.run(_gather(*(client() for _ in range(clients)))), daemon=True
    )
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(90)


async def _gather(*coroutines: Any) -> None:
    await asyncio.gather(*coroutines)


def flood(
    host: str, port: int, clients: int, seconds: float, key: str | None, items: str = "objects"
) -> dict[str, Any]:
    before = healthz_latencies(host, port, min(seconds, 3))
    with flooding(host, port, clients, key, FLOOD_ITEMS[items]) as statuses:
        time.sleep(0.5)
        during = healthz_latencies(host, port, seconds)
    return {
        "clients": clients,
        "with_key": key is not None,
        "items": items,
        "healthz_before": latency_figures(before),
        "healthz_during": latency_figures(during),
        "flood_answers": dict(statuses),
    }


# The server.


def create_admin_key(source: Path, database_url: str) -> str:
    completed = subprocess.run(
        [EVENTLEDGER, "keys", "create", "--scope", "admin", "--database", database_url, "--json"],
        env={**os.environ, "PYTHONPATH": str(source)},
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    key: str = json.loads(completed.stdout)["key"]
    return key


@contextmanager
def server(source: Path) -> Iterator[tuple[int, int, str]]:
    """(port, pid, admin key) of a server of ``source`` on a fresh SQLite file."""
    with tempfile.TemporaryDirectory() as directory:
        database_url = f"sqlite:///{Path(directory) / 'ledger.db'}"
        key = create_admin_key(source, database_url)
        port = common.free_port()
        command = [EVENTLEDGER, "serve", "--port", str(port), "--database", database_url]
        variables = {"PYTHONPATH": str(source)}
        log_path = Path(directory) / "serve.log"
        with common.running_server(command, port, variables, log_path) as process:
            yield port, process.pid, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--observe-seconds", type=float, default=30)
    parser.add_argument("--settle-seconds", type=float, default=5)
    parser.add_argument("--flood-clients", type=int, default=4)
    parser.add_argument("--flood-seconds", type=float, default=10)
    parser.add_argument(
        "--skip", action="append", default=[], choices=["partial", "heads", "flood"]
    )
    arguments = parser.parse_args()
    phases: dict[str, Callable[[int, int, str], Any]] = {
        "partial_bodies": lambda port, pid, key: partial_bodies(
            "127.0.0.1", port, pid, arguments.connections, arguments.observe_seconds,
            arguments.settle_seconds,
        ),
        "stalled_heads": lambda port, pid, key: stalled_heads(
            "127.0.0.1", port, arguments.connections, arguments.observe_seconds
        ),
        "flood_without_key": lambda port, pid, key: flood(
            "127.0.0.1", port, arguments.flood_clients, arguments.flood_seconds, None
        ),
        "flood_with_key": lambda port, pid, key: flood(
            "127.0.0.1", port, arguments.flood_clients, arguments.flood_seconds, key
        ),
        "flood_of_numbers_with_key": lambda port, pid, key: flood(
            "127.0.0.1", port, arguments.flood_clients, arguments.flood_seconds, key,
            "numbers",
        ),
    }  # fmt: skip
    skipped = {"partial": ["partial_bodies"], "heads": ["stalled_heads"]}
    skipped["flood"] = ["flood_without_key", "flood_with_key", "flood_of_numbers_with_key"]
    names = [n for n in phases if not any(n in skipped[s] for s in arguments.skip)]
    results: dict[str, Any] = {"source": str(arguments.source.resolve())}
    for name in names:
        # A server per phase: memory left by one phase is not the next one's baseline.
        with server(arguments.source) as (port, pid, key):
            print(f"{name}...", file=sys.stderr)
            results[name] = phases[name](port, pid, key)
    emit(results)


if __name__ == "__main__":
    main()
