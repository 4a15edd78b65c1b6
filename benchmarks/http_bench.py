"""Benchmark: HTTP transfers against one server process on SQLite.

Prepares funded accounts in a fresh SQLite file, starts the server on 127.0.0.1 and
a free port (``eventledger serve``, or ``benchmarks/crud_server.py`` for the CRUD
baseline), drives it with ``benchmarks/loadgen.py`` in a separate process, reads the
server's RSS from /proc, stops the server. Prints one JSON document.

``--mode single``: 64 connections posting one transfer each request (p50/p99).
``--mode batch``: batches of 1,000 transfers.
``--mode rss``: batches until ``--total-transfers`` are in; the point is the server's
memory afterwards.

Run: ``.venv/bin/python benchmarks/http_bench.py --impl eventledger_per_command
--mode single --duration-seconds 10``
"""

from __future__ import annotations

import argparse
import json
import sys
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


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", required=True)
    parser.add_argument("--mode", choices=("single", "batch", "rss"), default="single")
    parser.add_argument("--connections", type=int, default=0, help="default 64, batches 2")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument(
        "--duration-seconds", type=float, default=10.0, help="in rss mode: a time cap"
    )
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    parser.add_argument("--total-transfers", type=int, default=1_000_000, help="rss mode")
    parser.add_argument(
        "--no-projections", action="store_true", help="serve without the projection follower"
    )
    arguments = parser.parse_args()
    connections = arguments.connections or (64 if arguments.mode == "single" else 2)
    with temporary_store("sqlite") as store:
        path = store.sqlite_path
        accounts = prepare(arguments.impl, store.url, path, arguments.accounts)
        accounts_file = store.directory / "accounts.json"
        accounts_file.write_text(json.dumps(accounts))
        port = free_port()
        command = server_command(
            arguments.impl, store.url, path, port, not arguments.no_projections
        )
        environment = mode_environment(arguments.impl.removeprefix("eventledger_"))
        log = store.directory / "server.log"
        warmup_seconds = 0 if arguments.mode == "rss" else arguments.warmup_seconds
        with running_server(command, port, environment, log) as server:
            rss_before = rss_mib(server.pid)
            load = [PYTHON, str(ROOT / "benchmarks" / "loadgen.py"), "--port", str(port),
                    "--accounts-file", str(accounts_file), "--connections", str(connections),
                    "--warmup-seconds", str(warmup_seconds)]  # fmt: skip
            if arguments.mode == "rss":
                # The duration is only a cap here: it stops at --total-transfers.
                load += ["--mode", "batch", "--total-transfers", str(arguments.total_transfers)]
            else:
                load += ["--mode", arguments.mode]
            load += ["--duration-seconds", str(arguments.duration_seconds)]
            timeout_seconds = arguments.warmup_seconds + arguments.duration_seconds + 120
            result = run_json(load, timeout_seconds=timeout_seconds)
            rss_after = rss_mib(server.pid)
    document: dict[str, Any] = {
        "benchmark": f"http_{arguments.mode}",
        "impl": arguments.impl,
        "store": "sqlite",
        "projections_follower": arguments.impl != "crud" and not arguments.no_projections,
        "accounts": arguments.accounts,
        **result,
        "server_rss_mib_before": rss_before["rss_mib"],
        "server_rss_mib_after": rss_after["rss_mib"],
        "server_peak_rss_mib": rss_after["peak_rss_mib"],
    }
    emit(document)


if __name__ == "__main__":
    main()
