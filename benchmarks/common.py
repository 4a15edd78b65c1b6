"""Helpers shared by the benchmark scripts: stores, settings, timing, processes.

Every store a benchmark makes is its own: a SQLite file in a temporary directory, or a
fresh PostgreSQL schema ``bench_<random>`` that ``temporary_store`` drops afterwards.
Servers bind 127.0.0.1 on a free port and are killed (their whole process group) on
the way out, whatever happened.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from benchmarks.stats import emit, median, milliseconds, percentile  # noqa: E402, F401
from domain.ledger import Ledger  # noqa: E402
from domain.money import world_account_id  # noqa: E402
from infrastructure.persistence import build_ledger  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402

POSTGRES_BASE_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CURRENCY = "USD"
PR_SET_PDEATHSIG = 1
OPENING_BALANCE = 10**12
BATCH_SIZE = 1000
# The implementations every workload compares. "group_commit" runs only when the
# Settings of this checkout have the ``group_commit`` field.
EVENTLEDGER_MODES = ("group_commit", "per_command")
IMPLEMENTATIONS = ("eventledger_group_commit", "eventledger_per_command", "crud")


def has_group_commit() -> bool:
    return "group_commit" in Settings.model_fields


def implementations() -> list[str]:
    """The implementations this checkout can run, group commit first."""
    names = list(IMPLEMENTATIONS)
    if not has_group_commit():
        names.remove("eventledger_group_commit")
    return names


def eventledger_settings(database_url: str, mode: str, **overrides: Any) -> Settings:
    """Settings for ``mode`` ("group_commit" or "per_command")."""
    assert mode in EVENTLEDGER_MODES, mode
    values: dict[str, Any] = {"database_url": database_url, **overrides}
    if has_group_commit():
        values["group_commit"] = mode == "group_commit"
    else:
        assert mode == "per_command", "this checkout has no group commit"
    return Settings(**values)


def mode_environment(mode: str) -> dict[str, str]:
    """EVENTLEDGER_* variables that select ``mode`` in a server process."""
    if not has_group_commit():
        return {}
    return {"EVENTLEDGER_GROUP_COMMIT": "true" if mode == "group_commit" else "false"}


# Stores.


@dataclass
class Store:
    kind: str  # "sqlite" or "postgresql"
    url: str  # an EVENTLEDGER_DATABASE_URL
    directory: Path  # scratch space, removed afterwards
    schema: str = ""  # PostgreSQL only

    @property
    def sqlite_path(self) -> Path:
        assert self.kind == "sqlite"
        return Path(self.url[len("sqlite:///") :])


@contextlib.contextmanager
def temporary_store(kind: str, name: str = "ledger.db") -> Iterator[Store]:
    """A fresh SQLite file or PostgreSQL schema, removed or dropped on exit."""
    directory = Path(tempfile.mkdtemp(prefix="eventledger-bench-"))
    try:
        if kind == "sqlite":
            yield Store("sqlite", f"sqlite:///{directory / name}", directory)
        else:
            assert kind == "postgresql", kind
            schema = f"bench_{secrets.token_hex(6)}"
            try:
                yield Store("postgresql", f"{POSTGRES_BASE_URL}?schema={schema}", directory, schema)
            finally:
                drop_schema(schema)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def postgres_connect(**kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(POSTGRES_BASE_URL, connect_timeout=5, **kwargs)


def drop_schema(schema: str) -> None:
    with postgres_connect(autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with postgres_connect():
            return None
    except psycopg.OperationalError as error:
        return str(error).strip().splitlines()[0]


# Eventledger fixtures.


def open_funded_accounts(ledger: Ledger, count: int) -> list[UUID]:
    """Opens ``count`` accounts, each funded with OPENING_BALANCE in batched deposits."""
    accounts = [ledger.open_account(CURRENCY).id for _ in range(count)]
    world = world_account_id(CURRENCY)
    for start in range(0, count, BATCH_SIZE):
        ledger.transfer_batch(
            [
                transfer_item(world, account_id, OPENING_BALANCE)
                for account_id in accounts[start : start + BATCH_SIZE]
            ]
        )
    return accounts


def transfer_item(from_account: UUID, to_account: UUID, amount: int) -> dict[str, Any]:
    return {
        "transfer_id": uuid4(),
        "from_account": from_account,
        "to_account": to_account,
        "amount": amount,
        "currency": CURRENCY,
    }


def fill_events(ledger: Ledger, accounts: Sequence[UUID], events: int) -> int:
    """Adds batches of transfers among ``accounts`` until the log holds ``events``.

    A transfer writes three events (Debited, Credited, Posted). Returns transfers made.
    """
    made = 0
    while (head := ledger.head_position()) < events:
        size = max(1, min(BATCH_SIZE, (events - head) // 3))
        items = []
        for _ in range(size):
            made += 1
            items.append(
                transfer_item(
                    accounts[made % len(accounts)],
                    accounts[(made * 7 + 1) % len(accounts)],
                    1 + made % 100,
                )
            )
        ledger.transfer_batch(items)
    return made


def build(settings: Settings) -> Ledger:
    return build_ledger(settings)


def rss_mib(pid: int) -> dict[str, float]:
    """Resident memory of ``pid`` now and at its peak (VmHWM), from /proc."""
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
    return {"rss_mib": values["VmRSS"], "peak_rss_mib": values["VmHWM"]}


def machine() -> dict[str, Any]:
    """What the figures came from."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        memory_kib = int(meminfo.readline().split()[1])
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "load_average_at_start": [round(value, 2) for value in load],
    }


# Processes.


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout_seconds}s")


@contextlib.contextmanager
def running_server(
    command: Sequence[str],
    port: int,
    environment: dict[str, str] | None = None,
    log_path: Path | None = None,
    start_timeout_seconds: float = 60,
) -> Iterator[subprocess.Popen[bytes]]:
    """Starts ``command`` in its own process group; yields once ``port`` accepts
    connections; kills the group on exit."""
    log = open(log_path or os.devnull, "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        list(command),
        cwd=ROOT,
        env={**os.environ, **(environment or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        wait_for_port(port, process, start_timeout_seconds)
        yield process
    finally:
        stop_process_group(process)
        log.close()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the benchmark process dies, so even a
    benchmark killed by a timeout leaves no server behind (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def exit_on_sigterm() -> None:
    """Turns SIGTERM into SystemExit, so ``finally`` blocks stop servers, drop schemas."""

    def handle(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handle)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def run_json(command: Sequence[str], timeout_seconds: float) -> dict[str, Any]:
    """Runs a script that prints one JSON document; raises on failure or timeout.

    The script runs in its own process group so a timeout kills its servers too.
    """
    process = subprocess.Popen(
        list(command),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the script's finally blocks stop its servers and drop schemas.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        raise TimeoutError(f"{' '.join(command[1:3])} exceeded {timeout_seconds}s") from None
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(command[1:3])} failed: " + " | ".join(tail))
    result: dict[str, Any] = json.loads(stdout)
    return result
