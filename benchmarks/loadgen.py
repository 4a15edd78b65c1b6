"""A light HTTP/1.1 load generator: asyncio streams, keep-alive, one process.

Why not httpx: on a 2-core machine the generator shares the CPU with the server, and
an httpx request costs several times the CPU of writing prepared bytes to a socket and
reading back a Content-Length body. This client does only that (uvicorn always sends
Content-Length for JSON), so most of the CPU stays with the server under test.

Modes:
- ``single``: each connection POSTs /v1/transfers (a random pair of the accounts,
  amount 1..100) back to back until the duration is over.
- ``batch``: each connection POSTs /v1/transfers/batch with ``--batch-size``
  transfers drawn from its own slice of the accounts (so connections do not contend
  for the same accounts), until the duration is over or ``--total-transfers`` are in.
Latencies are measured per request after ``--warmup-seconds``. Prints one JSON
document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.stats import emit, milliseconds, percentile  # noqa: E402

CURRENCY = "USD"


class Connection:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, api_key: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.authorization = f"Authorization: Bearer {api_key}\r\n" if api_key else ""

    @classmethod
    async def open(cls, port: int, api_key: str = "") -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
        return cls(reader, writer, api_key)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{self.authorization}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding":
                raise RuntimeError("chunked responses are not supported by this generator")
        payload = await self.reader.readexactly(length)
        return status, payload

    def close(self) -> None:
        self.writer.close()


class Run:
    def __init__(self, arguments: argparse.Namespace, accounts: list[str]) -> None:
        self.arguments = arguments
        self.accounts = accounts
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.transfers = 0
        self.measuring = False
        self.stop_at = 0.0
        self.sample_error = ""

    def body(self, chooser: random.Random, slice_: list[str]) -> tuple[str, bytes, int]:
        if self.arguments.mode == "single":
            debit, credit = chooser.sample(self.accounts, 2)
            item = {"from_account": debit, "to_account": credit,
                    "amount": chooser.randint(1, 100), "currency": CURRENCY}  # fmt: skip
            return "/v1/transfers", json.dumps(item).encode(), 1
        items = []
        for _ in range(self.arguments.batch_size):
            debit, credit = chooser.sample(slice_, 2)
            items.append({"from_account": debit, "to_account": credit,
                          "amount": chooser.randint(1, 100), "currency": CURRENCY})  # fmt: skip
        body = json.dumps({"transfers": items}).encode()
        return "/v1/transfers/batch", body, self.arguments.batch_size

    def done(self) -> bool:
        total = self.arguments.total_transfers
        return time.perf_counter() >= self.stop_at or (total > 0 and self.transfers >= total)

    async def client(self, number: int) -> None:
        chooser = random.Random(number)
        connections = self.arguments.connections
        slice_ = self.accounts[number::connections]
        connection = await Connection.open(self.arguments.port, self.arguments.api_key)
        try:
            while not self.done():
                path, body, count = self.body(chooser, slice_)
                started = time.perf_counter()
                status, payload = await connection.post(path, body)
                elapsed = time.perf_counter() - started
                if status in (200, 201):
                    self.transfers += count
                elif not self.sample_error:
                    self.sample_error = payload[:300].decode(errors="replace")
                if self.measuring:
                    self.latencies.append(elapsed)
                    self.statuses[status] += 1
        finally:
            connection.close()

    async def main(self) -> dict[str, Any]:
        arguments = self.arguments
        self.stop_at = time.perf_counter() + arguments.warmup_seconds + arguments.duration_seconds
        tasks = [asyncio.create_task(self.client(n)) for n in range(arguments.connections)]
        await asyncio.sleep(arguments.warmup_seconds)
        self.measuring = True
        warm_transfers = self.transfers
        started = time.perf_counter()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        measured = self.transfers - warm_transfers
        ok = self.statuses[200] + self.statuses[201]
        return {
            "mode": arguments.mode,
            "connections": arguments.connections,
            "batch_size": arguments.batch_size if arguments.mode == "batch" else 1,
            "seconds": round(elapsed, 3),
            "requests": sum(self.statuses.values()),
            "requests_ok": ok,
            "statuses": {str(code): count for code, count in sorted(self.statuses.items())},
            "transfers": measured,
            "transfers_total": self.transfers,
            "transfers_per_second": round(measured / elapsed, 1),
            "latency_ms": {
                "p50": milliseconds(percentile(self.latencies, 0.50)),
                "p99": milliseconds(percentile(self.latencies, 0.99)),
                "max": milliseconds(max(self.latencies)),
            }
            if self.latencies
            else None,
            "sample_error": self.sample_error or None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--accounts-file", required=True, help="JSON list of account ids")
    parser.add_argument("--mode", choices=("single", "batch"), default="single")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--duration-seconds", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    parser.add_argument("--total-transfers", type=int, default=0, help="stop after; 0: none")
    parser.add_argument("--api-key", default="", help="sent as Authorization: Bearer; default none")
    arguments = parser.parse_args()
    accounts = json.loads(Path(arguments.accounts_file).read_text())
    emit(asyncio.run(Run(arguments, accounts).main()))


if __name__ == "__main__":
    main()
