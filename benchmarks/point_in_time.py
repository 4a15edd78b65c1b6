"""Benchmark: the balance at an instant (``?at=``) against at a version (``?version=``).

Issue 13, item 4. One account with ``--events`` events of history in a fresh store
(SQLite by default), written by the group-commit Ledger in batches of ``--batch``
transfers against a sink account (each transfer gives the account one event; with
the default batch of 100 the account is snapshotted about every 100 versions, as
with single transfers). Then, at ``--instants`` instants spread over the history
(each between two events, so never the free "latest version" case):

In-process, a fresh Ledger with the default aggregate cache, medians over all
instants:
- ``before``: what ``Ledger.balance_at(at=)`` did until this change, kept here as
  ``replay_balance_at``: decode every event of the account to find the version, then
  replay from the nearest snapshot (``--before-repeats`` runs, it takes seconds);
- ``at``: ``Ledger.balance_at(at=)``: the version found by ``domain.timeline``, 15
  versions per query, then the replay from the nearest snapshot;
- ``at_bisection``: the same with a plain bisection, one event per query;
- ``version``: ``Ledger.balance_at(version=)`` at the version the instant gives.
The three run in turn, ``--repeats`` rounds; every answer is checked against the
replay's.

Over HTTP (``--http``): ``eventledger serve --no-projections`` on the same store;
medians of ``GET .../balance?at=`` and ``?version=``, then ``--concurrency``
(8) ``?at=`` requests at once, ``--repeats`` rounds: the wall time of a round and the
server's VmHWM (peak RSS) before and after. With ``--before-checkout DIR`` (for
example ``git worktree add /tmp/before <commit>``) the same HTTP measures run first
against a server on that checkout's code (``PYTHONPATH=DIR``) and the same file.

``--fanouts 2,8,16,64`` also times the search alone (no replay) with each number of
versions per query less one (2: a plain bisection, one event per query), to choose
``domain.timeline.FANOUT``. ``--cipher`` encrypts the events (AES, a fresh key).

Prints one JSON document; progress goes to stderr.

Run: ``.venv/bin/python benchmarks/point_in_time.py [--events 200000] [--http]
[--before-checkout DIR] [--store postgresql] [--fanouts 2,8,16,64] [--cipher]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote
from uuid import UUID

from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import StoredEvent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    build,
    emit,
    eventledger_settings,
    exit_on_sigterm,
    free_port,
    machine,
    median,
    milliseconds,
    open_funded_accounts,
    rss_mib,
    running_server,
    temporary_store,
    transfer_item,
)
from domain.account import Account  # noqa: E402
from domain.errors import AccountNotFound  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from domain.results import BalanceAt  # noqa: E402
from domain.timeline import FANOUT, ReadsVersions, last_version_at  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402

EVENTLEDGER = str(Path(sys.executable).parent / "eventledger")
MODE = "group_commit"


def settings_for(url: str, arguments: argparse.Namespace) -> Settings:
    """The group-commit settings on ``url``, with events encrypted if ``--cipher``."""
    if arguments.cipher_key:
        return eventledger_settings(url, MODE, cipher_key=arguments.cipher_key)
    return eventledger_settings(url, MODE)


def log(message: str) -> None:
    print(f"[point_in_time] {message}", file=sys.stderr, flush=True)


def replay_balance_at(ledger: Ledger, account_id: UUID, at: datetime) -> BalanceAt:
    """``Ledger.balance_at(at=)`` before issue 13: every event read and decoded."""
    version = 0
    for stored in ledger.events.get(account_id):
        if cast(Account.Event, stored).timestamp > at:
            break
        version = stored.originator_version
    if version == 0:
        raise AccountNotFound(account_id, f"account {account_id} did not exist at {at}")
    ledger.load_account(account_id)
    return BalanceAt.of(ledger.repository.get(account_id, version=version))


def build_history(url: str, arguments: argparse.Namespace) -> tuple[UUID, int]:
    """The account and its last version."""
    events, batch = arguments.events, arguments.batch
    ledger = build(settings_for(url, arguments))
    try:
        sink, account = open_funded_accounts(ledger, 2)  # account: Opened + Credited
        started = time.perf_counter()
        remaining = events - 2
        while remaining > 0:
            size = min(batch, remaining)
            ledger.transfer_batch(
                [
                    transfer_item(account, sink, 1)
                    if n % 2 == 0
                    else transfer_item(sink, account, 1)
                    for n in range(size)
                ]
            )
            remaining -= size
        version = ledger.get_account(account).version
        log(f"{version} events written in {time.perf_counter() - started:.1f}s")
        return account, version
    finally:
        ledger.close()


def instants_between_events(ledger: Ledger, account: UUID, count: int, last: int) -> list[datetime]:
    """``count`` instants spread over the history, each strictly between two events
    whose timestamps differ (the middle of the gap), none after the last event."""
    instants = []
    for index in range(1, count + 1):
        version = max(1, last * index // (count + 1))
        before, after = ledger.account_events(account, after_version=version - 1, limit=2)
        while after.timestamp == before.timestamp:  # several events in one microsecond
            before, after = ledger.account_events(account, after_version=before.version, limit=2)
        instants.append(before.timestamp + (after.timestamp - before.timestamp) / 2)
    return instants


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def bisection_balance_at(ledger: Ledger, account_id: UUID, at: datetime) -> BalanceAt:
    """``Ledger.balance_at(at=)`` with a plain bisection, one event per query (what the
    recorders' ``select_versions``, 15 versions per query, saves)."""
    current = ledger.load_account(account_id)
    assert current.created_on <= at < current.modified_on

    def one_by_one(versions: Sequence[int]) -> list[StoredEvent]:
        return [
            stored
            for v in versions
            for stored in ledger.recorder.select_events(account_id, gt=v - 1, lte=v)
        ]

    version = last_version_at(at, one_by_one, ledger._timestamp_of, 1, current.version, 2)
    return BalanceAt.of(ledger.repository.get(account_id, version=version))


# The in-process variants, each called as variant(ledger, account, at, version).
VARIANTS: dict[str, Callable[[Ledger, UUID, datetime, int], BalanceAt]] = {
    "at": lambda ledger, account, at, _: ledger.balance_at(account, at=at),
    "version": lambda ledger, account, _, version: ledger.balance_at(account, version=version),
    "at_bisection": lambda ledger, account, at, _: bisection_balance_at(ledger, account, at),
}


def timed_cpu(call: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, this thread's CPU seconds (which a busy machine does not inflate:
    the time waiting for a core or for PostgreSQL is not in it), and the result."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    result = call()
    return time.perf_counter() - started, time.thread_time() - cpu_started, result


def measure_inprocess(url: str, account: UUID, instants: list[datetime],
                      arguments: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """Per instant: the old replay ``--before-repeats`` times, then ``--repeats`` rounds
    of the variants, each round starting with the next one (so a slower minute of the
    machine, or a cold cache, hits each alike)."""
    ledger = build(settings_for(url, arguments))
    names = ["before", *VARIANTS]
    try:
        wall: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        per_instant = []
        for at in instants:
            runs: dict[str, list[float]] = {name: [] for name in names}
            expected = None
            for _ in range(arguments.before_repeats):
                seconds, cpu_seconds, expected = timed_cpu(
                    lambda at=at: replay_balance_at(ledger, account, at)
                )
                runs["before"].append(seconds)
                cpu["before"].append(cpu_seconds)
            assert expected is not None
            order = list(VARIANTS)
            for round_number in range(arguments.repeats):
                turn = round_number % len(order)
                for name in order[turn:] + order[:turn]:
                    seconds, cpu_seconds, answer = timed_cpu(
                        lambda v=VARIANTS[name], at=at, n=expected.version: v(
                            ledger, account, at, n
                        )
                    )
                    assert answer == expected, (name, answer, expected)
                    runs[name].append(seconds)
                    cpu[name].append(cpu_seconds)
            entry: dict[str, Any] = {"at": at.isoformat(), "version": expected.version}
            entry.update({f"{name}_ms": milliseconds(median(runs[name])) for name in names})
            per_instant.append(entry)
            for name in names:
                wall[name].extend(runs[name])
            log(f"in-process v{expected.version}: {entry}")
        middle = {name: median(values) for name, values in wall.items()}
        middle_cpu = {name: median(values) for name, values in cpu.items()}
        return {
            "median_ms": {name: milliseconds(value) for name, value in middle.items()},
            "median_cpu_ms": {name: milliseconds(value) for name, value in middle_cpu.items()},
            "at_over_version": round(middle["at"] / middle["version"], 2),
            "at_over_version_cpu": round(middle_cpu["at"] / middle_cpu["version"], 2),
            "at_bisection_over_version": round(middle["at_bisection"] / middle["version"], 2),
            "before_over_at": round(middle["before"] / middle["at"], 1),
            "answers_equal_replay": True,  # asserted above for every call
            "instants": per_instant,
        }
    finally:
        ledger.close()


def measure_fanouts(url: str, account: UUID, instants: list[datetime], last: int,
                    arguments: argparse.Namespace) -> dict[str, float]:  # fmt: skip
    """The search alone (no replay), per fanout: median ms, the fanouts taking turns."""
    ledger = build(settings_for(url, arguments))
    try:
        recorder = ledger.recorder
        assert isinstance(recorder, ReadsVersions)

        def one_by_one(versions: Sequence[int]) -> list[StoredEvent]:
            return [
                stored
                for v in versions
                for stored in recorder.select_events(account, gt=v - 1, lte=v)
            ]

        def many(versions: Sequence[int]) -> list[StoredEvent]:
            return recorder.select_versions(account, versions)

        fanouts = [int(value) for value in arguments.fanouts.split(",")]
        samples: dict[int, list[float]] = {fanout: [] for fanout in fanouts}
        for _ in range(arguments.repeats):
            for fanout in fanouts:
                read = one_by_one if fanout == 2 else many
                for at in instants:
                    seconds, _ = timed(
                        lambda at=at, r=read, f=fanout: last_version_at(
                            at, r, ledger._timestamp_of, 1, last, f
                        )
                    )
                    samples[fanout].append(seconds)
        return {str(fanout): milliseconds(median(values)) for fanout, values in samples.items()}
    finally:
        ledger.close()


def get(port: int, path: str, timeout_seconds: float) -> tuple[float, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_seconds)
    try:
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        seconds = time.perf_counter() - started
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
    return seconds, json.loads(body)


def concurrent_round(port: int, paths: list[str], timeout_seconds: float) -> float:
    """Sends every path at once (one connection each); the wall time until the last."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(paths) + 1)

    def one(path: str) -> None:
        barrier.wait()
        try:
            get(port, path, timeout_seconds)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=one, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} concurrent requests failed: {errors[0]}")
    return seconds


def measure_http(url: str, account: UUID, instants: list[datetime], versions: list[int],
                 checkout: Path | None, repeats: int, arguments: argparse.Namespace,
                 directory: Path) -> dict[str, Any]:  # fmt: skip
    """One server (on ``checkout``'s code, or this one's), the same measures."""
    port = free_port()
    # The console script, not ``python -m``: the latter puts the working directory
    # (this checkout) before PYTHONPATH.
    command = [EVENTLEDGER, "serve", "--host", "127.0.0.1", "--port", str(port),
               "--database", url, "--no-projections"]  # fmt: skip
    environment = {"EVENTLEDGER_GROUP_COMMIT": "true"}
    if arguments.cipher_key:
        environment["EVENTLEDGER_CIPHER_KEY"] = arguments.cipher_key
    if checkout is not None:
        environment["PYTHONPATH"] = str(checkout)
    label = "before" if checkout else "after"
    at_paths = [f"/v1/accounts/{account}/balance?at={quote(at.isoformat())}" for at in instants]
    version_paths = [f"/v1/accounts/{account}/balance?version={v}" for v in versions]
    timeout = arguments.request_timeout_seconds
    with running_server(command, port, environment, directory / f"server-{label}.log") as server:
        get(port, f"/v1/accounts/{account}", timeout)  # warm: the account is cached
        at_seconds, version_seconds = [], []
        for at_path, version_path, expected in zip(at_paths, version_paths, versions,
                                                   strict=True):  # fmt: skip
            for _ in range(repeats):
                seconds, body = get(port, at_path, timeout)
                assert body["version"] == expected, (label, body, expected)
                at_seconds.append(seconds)
                seconds, body = get(port, version_path, timeout)
                assert body["version"] == expected, (label, body, expected)
                version_seconds.append(seconds)
        log(f"http {label}: at {median(at_seconds):.4f}s version {median(version_seconds):.4f}s")
        memory_before = rss_mib(server.pid)
        paths = [at_paths[n % len(at_paths)] for n in range(arguments.concurrency)]
        rounds = [concurrent_round(port, paths, timeout) for _ in range(repeats)]
        memory_after = rss_mib(server.pid)
        log(f"http {label}: {arguments.concurrency} at once {rounds}, memory {memory_after}")
    return {
        "code": str(checkout) if checkout else "this checkout",
        "get_at_ms": milliseconds(median(at_seconds)),
        "get_version_ms": milliseconds(median(version_seconds)),
        "requests_each": len(at_seconds),
        "concurrent": {
            "requests": arguments.concurrency,
            "rounds": len(rounds),
            "median_seconds": round(median(rounds), 3),
            "seconds": [round(value, 3) for value in rounds],
            "peak_rss_mib_before": memory_before["peak_rss_mib"],
            "peak_rss_mib_after": memory_after["peak_rss_mib"],
            "rss_mib_after": memory_after["rss_mib"],
        },
    }


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events of the account")
    parser.add_argument("--batch", type=int, default=100, help="transfers per save")
    parser.add_argument("--instants", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--before-repeats", type=int, default=3)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--http", action="store_true", help="also through a real server")
    parser.add_argument("--before-checkout", type=Path, help="a checkout of the old code")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--request-timeout-seconds", type=float, default=600)
    parser.add_argument(
        "--fanouts", default="", help="also time the search alone per fanout, e.g. 2,8,16,64"
    )
    parser.add_argument("--cipher", action="store_true", help="events encrypted at rest")
    arguments = parser.parse_args()
    arguments.cipher_key = AESCipher.create_key(32) if arguments.cipher else ""
    document: dict[str, Any] = {
        "benchmark": "point_in_time",
        "machine": machine(),
        "store": arguments.store,
        "sizes": {
            key: value
            for key, value in vars(arguments).items()
            if key not in ("before_checkout", "cipher_key")
        },
        "fanout": FANOUT,
    }
    with temporary_store(arguments.store) as store:
        account, last = build_history(store.url, arguments)
        ledger = build(settings_for(store.url, arguments))
        try:
            instants = instants_between_events(ledger, account, arguments.instants, last)
            snapshots = ledger.snapshots
            assert snapshots is not None
            document["account_events"] = last
            document["snapshots"] = len(list(snapshots.get(account)))
        finally:
            ledger.close()
        inprocess = measure_inprocess(store.url, account, instants, arguments)
        document["inprocess"] = inprocess
        if arguments.fanouts:
            document["search_only_ms_by_fanout"] = measure_fanouts(
                store.url, account, instants, last, arguments
            )
        if arguments.http:
            versions = [entry["version"] for entry in inprocess["instants"]]
            http: dict[str, Any] = {}
            if arguments.before_checkout is not None:
                http["before"] = measure_http(
                    store.url, account, instants, versions,
                    arguments.before_checkout.resolve(), arguments.before_repeats, arguments,
                    store.directory,
                )  # fmt: skip
            http["after"] = measure_http(
                store.url, account, instants, versions, None, arguments.repeats, arguments,
                store.directory,
            )  # fmt: skip
            document["http"] = http
    emit(document)


if __name__ == "__main__":
    main()
