"""Benchmark: HTTP transfers against one server process on SQLite.

For each implementation: funded accounts in a fresh SQLite file, then the server on
127.0.0.1 and a free port (``eventledger serve`` with the mode's
EVENTLEDGER_GROUP_COMMIT, or ``benchmarks/crud_server.py`` for the CRUD baseline),
driven by ``benchmarks/loadgen.py`` in a separate process, ``--repeats`` times each:
- single: 64 connections, one transfer per request (throughput, p50/p99);
- batch: POST /v1/transfers/batch with 1,000 transfers per request;
then, for one implementation, batches until ``--rss-transfers`` more are in, and
the server's RSS from /proc. The server is stopped before the next implementation
starts. Prints one JSON document.

Run: ``.venv/bin/python benchmarks/http_bench.py --repeats 3 --rss-transfers 0``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    CURRENCY,
    OPENING_BALANCE,
    ROOT,
    build,
    emit,
    eventledger_settings,
    exit_on_sigterm,
    free_port,
    implementations,
    median,
    mode_environment,
    open_funded_accounts,
    rss_mib,
    run_json,
    running_server,
    temporary_store,
)
from benchmarks.crud_baseline import CrudLedger  # noqa: E402

PYTHON = sys.executable
EVENTLEDGER = str(Path(sys.executable).parent / "eventledger")


def prepare(impl: str, url: str, path: Path, accounts: int) -> list[str]:
    """Funded accounts in the store, made before the server starts (not measured)."""
    if impl == "crud":
        crud = CrudLedger("sqlite", str(path))
        try:
            return [str(a) for a in crud.open_accounts(accounts, CURRENCY, OPENING_BALANCE)]
        finally:
            crud.close()
    ledger = build(eventledger_settings(url, impl.removeprefix("eventledger_")))
    try:
        return [str(a) for a in open_funded_accounts(ledger, accounts)]
    finally:
        ledger.close()


def server_command(impl: str, url: str, path: Path, port: int, projections: bool) -> list[str]:
    if impl == "crud":
        return [PYTHON, str(ROOT / "benchmarks" / "crud_server.py"),
                "--port", str(port), "--database", str(path)]  # fmt: skip
    command = [EVENTLEDGER, "serve", "--host", "127.0.0.1", "--port", str(port),
               "--database", url]  # fmt: skip
    if not projections:
        command.append("--no-projections")
    return command


def load(port: int, accounts_file: Path, mode: str, arguments: argparse.Namespace,
         **options: float) -> dict[str, Any]:  # fmt: skip
    """One run of the load generator (a separate process) against ``port``."""
    command = [PYTHON, str(ROOT / "benchmarks" / "loadgen.py"), "--port", str(port),
               "--accounts-file", str(accounts_file), "--mode", mode,
               "--batch-size", str(arguments.batch_size)]  # fmt: skip
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    cap = options.get("duration_seconds", 0) + options.get("warmup_seconds", 0)
    return run_json(command, timeout_seconds=cap + 120)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs of throughput and of each run's p50/p99."""
    return {
        "transfers_per_second": median([r["transfers_per_second"] for r in runs]),
        "p50_ms": median([r["latency_ms"]["p50"] for r in runs if r["latency_ms"]]),
        "p99_ms": median([r["latency_ms"]["p99"] for r in runs if r["latency_ms"]]),
        "non_2xx": sum(r["requests"] - r["requests_ok"] for r in runs),
        "sample_error": next((r["sample_error"] for r in runs if r["sample_error"]), None),
        "runs": [
            {key: r[key] for key in ("transfers_per_second", "latency_ms", "requests", "seconds")}
            for r in runs
        ],
    }


def measure_impl(impl: str, arguments: argparse.Namespace) -> dict[str, Any]:
    """Starts one server for ``impl``, runs the single and batch loads ``--repeats``
    times each, and (for the RSS implementation) then pushes ``--rss-transfers``."""
    with temporary_store("sqlite") as store:
        path = store.sqlite_path
        accounts = prepare(impl, store.url, path, arguments.accounts)
        accounts_file = store.directory / "accounts.json"
        accounts_file.write_text(json.dumps(accounts))
        port = free_port()
        command = server_command(impl, store.url, path, port, not arguments.no_projections)
        environment = mode_environment(impl.removeprefix("eventledger_"))
        log = store.directory / "server.log"
        result: dict[str, Any] = {}
        with running_server(command, port, environment, log) as server:
            result["server_rss_mib_at_start"] = rss_mib(server.pid)["rss_mib"]
            single, batch = [], []
            for _ in range(arguments.repeats):
                single.append(load(port, accounts_file, "single", arguments,
                                   connections=arguments.connections,
                                   duration_seconds=arguments.single_duration_seconds,
                                   warmup_seconds=arguments.warmup_seconds))  # fmt: skip
                batch.append(load(port, accounts_file, "batch", arguments,
                                  connections=arguments.batch_connections,
                                  duration_seconds=arguments.batch_duration_seconds,
                                  warmup_seconds=arguments.warmup_seconds))  # fmt: skip
            result["single"] = summary(single)
            result["batch"] = summary(batch)
            result["server_rss_mib_after_runs"] = rss_mib(server.pid)["rss_mib"]
            if impl == arguments.rss_impl and arguments.rss_transfers > 0:
                result["rss"] = push_for_rss(server.pid, port, accounts_file, arguments)
    return result


def push_for_rss(
    pid: int, port: int, accounts_file: Path, arguments: argparse.Namespace
) -> dict[str, Any]:
    """Batches until ``--rss-transfers`` more transfers are in (or the time cap)."""
    started = time.perf_counter()
    pushed = load(port, accounts_file, "batch", arguments,
                  connections=arguments.batch_connections,
                  total_transfers=arguments.rss_transfers,
                  duration_seconds=arguments.rss_time_cap_seconds, warmup_seconds=0)  # fmt: skip
    memory = rss_mib(pid)
    return {
        "transfers_requested": arguments.rss_transfers,
        "transfers_pushed": pushed["transfers_total"],
        "seconds": round(time.perf_counter() - started, 1),
        "transfers_per_second": pushed["transfers_per_second"],
        "server_rss_mib": memory["rss_mib"],
        "server_peak_rss_mib": memory["peak_rss_mib"],
    }


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impls", default="", help="comma-separated; default: all available")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=64, help="single-transfer load")
    parser.add_argument("--single-duration-seconds", type=float, default=8.0)
    parser.add_argument("--batch-connections", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-duration-seconds", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    parser.add_argument("--rss-impl", default="", help="default: eventledger's default mode")
    parser.add_argument("--rss-transfers", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--rss-time-cap-seconds", type=float, default=1800.0)
    parser.add_argument(
        "--no-projections", action="store_true", help="serve without the projection follower"
    )
    arguments = parser.parse_args()
    impls = arguments.impls.split(",") if arguments.impls else implementations()
    arguments.rss_impl = arguments.rss_impl or impls[0]
    emit(
        {
            "benchmark": "http",
            "store": "sqlite",
            "projections_follower": not arguments.no_projections,
            "accounts": arguments.accounts,
            "connections": arguments.connections,
            "batch_connections": arguments.batch_connections,
            "batch_size": arguments.batch_size,
            "repeats": arguments.repeats,
            "rss_impl": arguments.rss_impl,
            "results": {impl: measure_impl(impl, arguments) for impl in impls},
        }
    )


if __name__ == "__main__":
    main()
