"""A Jepsen-style bank workload over HTTP: the harness, its faults and its checker.

Workload: N accounts holding a fixed total between them. Client threads send random
transfers, each with an id of its own (the body ``id``), to whichever server is up;
one reader thread reads all balances at once from GET /v1/accounts (the ``balances``
read model: one page, read in one transaction, so a consistent snapshot at the
view's position; separate GETs of each account would not be one snapshot, and their
sum could be off by a transfer in flight without any bug). Every request and its
outcome goes into a history:

- ``ok``: 2xx, the transfer is acknowledged as posted;
- ``rejected``: 422 with a business code, recorded as ``Transfer.Rejected``;
- ``failed``: a definite refusal that promises nothing was written (409 conflict,
  other 4xx), or a connection that was refused before the request was sent;
- ``unknown``: a timeout, a connection lost mid-request, or a 5xx: it may or may not
  have been applied.

Faults run in a thread of their own, bounded in count and time, and stop by
themselves: ``kill -9`` of a server and its restart on the same database, and
SIGSTOP/SIGCONT pauses.

Checker (reading the event store directly once every server is stopped): every read
sums to the total and holds every account, each within its overdraft limit; every
acknowledged transfer is in the store exactly once, posted, with exactly one debit and
one credit of its amount; every rejected one is recorded as rejected, with the code
the client was given, and moved nothing; every failed one is absent; every unknown one
is there at most once; no transfer among the accounts appears that nobody sent; each
account's final balance is the fold of its postings and they sum to the total;
``eventledger audit verify --json`` is ok.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx

from domain.money import world_account_id
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from tests.api.servers import EVENTLEDGER, free_port
from tests.reliability.test_crash_loop import read_history

ROOT = Path(__file__).resolve().parents[2]
CURRENCY = "USD"
START_TIMEOUT_SECONDS = 30
REQUEST_TIMEOUT = httpx.Timeout(5.0, connect=1.0)
# A definite "not applied": retries exhausted; or refused before the ledger ran.
FAILED_STATUSES = {400, 401, 403, 404, 405, 409, 413, 415, 429, 431}


@dataclass
class Operation:
    kind: str  # "transfer" | "read"
    started: float
    ended: float = 0.0
    outcome: str = ""  # ok | rejected | failed | unknown
    code: str = ""  # the problem code, the HTTP status, or the exception's name
    server: int = 0
    transfer_id: UUID | None = None
    from_account: UUID | None = None
    to_account: UUID | None = None
    amount: int = 0
    balances: dict[UUID, int] | None = None


@dataclass
class History:
    operations: list[Operation] = field(default_factory=list)
    kills: int = 0
    pauses: int = 0
    restarts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, operation: Operation) -> None:
        with self.lock:
            self.operations.append(operation)

    def transfers(self, outcome: str | None = None) -> list[Operation]:
        return [
            op
            for op in self.operations
            if op.kind == "transfer" and (outcome is None or op.outcome == outcome)
        ]

    def reads(self) -> list[Operation]:
        return [op for op in self.operations if op.kind == "read" and op.outcome == "ok"]

    def summary(self) -> dict[str, Any]:
        outcomes = Counter(op.outcome for op in self.transfers())
        return {
            "requests": len(self.operations),
            "transfers": len(self.transfers()),
            "acknowledged": outcomes["ok"],
            "rejected": outcomes["rejected"],
            "failed": outcomes["failed"],
            "unknown": outcomes["unknown"],
            "reads": len(self.reads()),
            "kills": self.kills,
            "pauses": self.pauses,
            "restarts": self.restarts,
            "codes": dict(Counter(f"{op.outcome}:{op.code}" for op in self.transfers())),
        }


@dataclass
class Bank:
    accounts: list[UUID]
    limits: dict[UUID, int]
    total: int
    setup: set[UUID]  # the opening deposits
    position: int  # the log position after the setup


# Servers -------------------------------------------------------------------------


class ServerProcess:
    """One ``eventledger serve`` (or a test-only app factory under uvicorn) on a fixed
    port, restartable after a kill on the same port and database."""

    def __init__(
        self, workdir: Path, database_url: str, options: tuple[str, ...] = (), app: str = ""
    ) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.options = options
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"bank-serve-{self.port}.log"

    def start(self) -> None:
        if self.app:  # a test-only factory: settings from the environment
            command = [
                sys.executable, "-m", "uvicorn", self.app, "--factory",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            ]  # fmt: skip
        else:
            command = [
                EVENTLEDGER, "serve", "--port", str(self.port),
                "--database", self.database_url, *self.options,
            ]  # fmt: skip
        environment = {k: v for k, v in os.environ.items() if not k.startswith("EVENTLEDGER_")}
        environment["EVENTLEDGER_DATABASE_URL"] = self.database_url
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log()}")
            with suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {START_TIMEOUT_SECONDS}s:\n{self.log()}")

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def kill_hard(self) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGCONT)  # a stopped process must not outlive us
        self.signal(signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill_hard()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextmanager
def servers_running(servers: list[ServerProcess]) -> Iterator[list[ServerProcess]]:
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


# Setup ---------------------------------------------------------------------------


def open_bank(url: str, funds: list[int], limits: list[int]) -> Bank:
    """Opens the accounts, deposits their funds, and waits until the balances view has
    applied it all: from then on every read of all balances must sum to the total."""
    accounts, setup, position = [], set(), 0
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        for amount, limit in zip(funds, limits, strict=True):
            response = client.post(
                "/v1/accounts", json={"currency": CURRENCY, "overdraft_limit": limit}
            )
            assert response.status_code == 201, response.text
            account = UUID(response.json()["id"])
            accounts.append(account)
            if amount:
                body = {"amount": amount, "id": str(uuid4())}
                response = client.post(f"/v1/accounts/{account}/deposits", json=body)
                assert response.status_code == 201, response.text
                setup.add(UUID(response.json()["id"]))
                position = max(position, int(response.json()["position"]))
        caught_up = client.get("/v1/accounts", params={"min_position": position, "limit": 1})
        assert caught_up.status_code == 200, caught_up.text
    limits_by_account = dict(zip(accounts, limits, strict=True))
    return Bank(accounts, limits_by_account, sum(funds), setup, position)


# Workload ------------------------------------------------------------------------


def classify(response: httpx.Response) -> tuple[str, str]:
    if response.status_code in (200, 201):
        return "ok", str(response.status_code)
    code = str(response.status_code)
    with suppress(ValueError, KeyError, TypeError):
        code = str(response.json()["code"])
    if response.status_code == 422:
        return "rejected", code
    if response.status_code in FAILED_STATUSES:
        return "failed", code
    return "unknown", code  # 5xx: outcome_unknown (503), store unavailable, ...


def transfer_once(
    client: httpx.Client, server: int, bank: Bank, chooser: random.Random
) -> Operation:
    payer, payee = chooser.sample(bank.accounts, 2)
    operation = Operation(
        "transfer", time.monotonic(), server=server, transfer_id=uuid4(),
        from_account=payer, to_account=payee, amount=chooser.randint(1, bank.total // 4),
    )  # fmt: skip
    body = {
        "id": str(operation.transfer_id),
        "from_account": str(payer),
        "to_account": str(payee),
        "amount": operation.amount,
        "currency": CURRENCY,
    }
    try:
        response = client.post("/v1/transfers", json=body)
        operation.outcome, operation.code = classify(response)
        if operation.outcome == "rejected" and operation.code == "validation_error":
            raise AssertionError(f"the harness sent an invalid transfer: {response.text}")
    except httpx.ConnectError as error:
        # Refused before anything was sent: definitely not applied. The server is
        # down (killed, restarting): wait a little rather than spin.
        operation.outcome, operation.code = "failed", type(error).__name__
        time.sleep(0.1)
    except httpx.TransportError as error:
        operation.outcome, operation.code = "unknown", type(error).__name__
    operation.ended = time.monotonic()
    return operation


def read_all(client: httpx.Client, server: int, bank: Bank) -> Operation:
    operation = Operation("read", time.monotonic(), server=server)
    try:
        response = client.get("/v1/accounts", params={"currency": CURRENCY, "limit": 1000})
        if response.status_code == 200:
            page = response.json()
            assert page["next_cursor"] is None, "more accounts than one page"
            operation.balances = {
                UUID(row["id"]): int(row["balance"])
                for row in page["accounts"]
                if UUID(row["id"]) in bank.limits
            }
            operation.outcome = "ok"
        else:
            operation.outcome, operation.code = "failed", str(response.status_code)
    except httpx.TransportError as error:
        operation.outcome, operation.code = "failed", type(error).__name__
    operation.ended = time.monotonic()
    return operation


def run_workload(
    servers: list[ServerProcess],
    bank: Bank,
    history: History,
    seconds: float,
    clients: int,
    faults: Callable[[threading.Event], None] | None = None,
    seed: int = 0,
) -> None:
    """Runs ``clients`` transfer threads, one reader and the fault thread for
    ``seconds``; every thread stops by itself at the deadline."""
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # reported by the test, not swallowed
                errors.append(error)
                stop.set()

        return run

    def transfers(index: int) -> None:
        chooser = random.Random(seed * 1000 + index)
        pool = [httpx.Client(base_url=s.url, timeout=REQUEST_TIMEOUT) for s in servers]
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                server = chooser.randrange(len(servers))
                history.add(transfer_once(pool[server], server, bank, chooser))
        finally:
            for client in pool:
                client.close()

    def reader() -> None:
        pool = [httpx.Client(base_url=s.url, timeout=REQUEST_TIMEOUT) for s in servers]
        chooser = random.Random(seed)
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                server = chooser.randrange(len(servers))
                history.add(read_all(pool[server], server, bank))
                time.sleep(0.05)
        finally:
            for client in pool:
                client.close()

    threads = [
        threading.Thread(target=guarded(lambda i=i: transfers(i)), name=f"client-{i}")
        for i in range(clients)
    ]
    threads.append(threading.Thread(target=guarded(reader), name="reader"))
    if faults is not None:
        threads.append(threading.Thread(target=guarded(lambda: faults(stop)), name="faults"))
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=START_TIMEOUT_SECONDS + 10)
    assert not any(thread.is_alive() for thread in threads), "a workload thread hung"
    if errors:
        raise errors[0]


# Faults --------------------------------------------------------------------------


def kill_and_restart(
    server: ServerProcess,
    history: History,
    every_seconds: tuple[float, float],
    kills_max: int,
    seed: int = 0,
) -> Callable[[threading.Event], None]:
    """``kill -9`` of ``server`` at random moments, then a restart on the same port."""

    def faults(stop: threading.Event) -> None:
        chooser = random.Random(seed)
        while history.kills < kills_max and not stop.wait(chooser.uniform(*every_seconds)):
            server.kill_hard()
            history.kills += 1
            server.start()
            history.restarts += 1

    return faults


def pause_and_kill(
    paused: ServerProcess,
    killed: ServerProcess,
    history: History,
    every_seconds: tuple[float, float],
    faults_max: int,
    seed: int = 0,
) -> Callable[[threading.Event], None]:
    """Alternately: SIGSTOP ``paused`` for 0.2-1 s then SIGCONT, or ``kill -9`` of
    ``killed`` and its restart; the other server carries on meanwhile."""

    def faults(stop: threading.Event) -> None:
        chooser = random.Random(seed)
        while history.kills + history.pauses < faults_max and not stop.wait(
            chooser.uniform(*every_seconds)
        ):
            if chooser.random() < 0.5:
                paused.signal(signal.SIGSTOP)
                try:
                    time.sleep(chooser.uniform(0.2, 1.0))
                finally:
                    paused.signal(signal.SIGCONT)
                history.pauses += 1
            else:
                killed.kill_hard()
                history.kills += 1
                killed.start()
                history.restarts += 1

    return faults


# Checker -------------------------------------------------------------------------


@dataclass
class Report:
    summary: dict[str, Any]
    bad_reads: list[str] = field(default_factory=list)
    lost: list[UUID] = field(default_factory=list)  # acknowledged, not posted in the store
    doubled: list[UUID] = field(default_factory=list)  # more than once in the store
    unbalanced: list[UUID] = field(default_factory=list)  # postings not one debit + credit
    wrong_rejections: list[UUID] = field(default_factory=list)
    applied_failures: list[UUID] = field(default_factory=list)  # "failed", yet stored
    phantoms: list[UUID] = field(default_factory=list)  # stored, never sent
    final_balances: dict[str, int] = field(default_factory=dict)
    final_problems: list[str] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)
    unknown_applied: int = 0

    def problems(self) -> dict[str, object]:
        names = (
            "bad_reads", "lost", "doubled", "unbalanced", "wrong_rejections",
            "applied_failures", "phantoms", "final_problems",
        )  # fmt: skip
        found: dict[str, object] = {name: v for name in names if (v := getattr(self, name))}
        if not self.audit.get("ok"):
            found["audit"] = {k: self.audit.get(k) for k in ("ok", "problems")}
        return found


def check(bank: Bank, history: History, database_url: str) -> Report:
    """Run once every server is stopped."""
    report = Report(history.summary())
    report.bad_reads = _check_reads(bank, history)
    ledger = build_ledger(Settings(database_url=database_url, aggregate_cache_size=0))
    try:
        stored = read_history(ledger)
        loaded = {account: ledger.get_account(account).balance for account in bank.accounts}
        recorded_codes = {
            op.transfer_id: ledger.get_transfer(op.transfer_id).error_code
            for op in history.transfers("rejected")
            if op.transfer_id in stored.kind
        }
    finally:
        ledger.close()
    ours = set(bank.accounts) | {world_account_id(CURRENCY)}
    sent = {op.transfer_id for op in history.transfers()}
    for op in history.transfers():
        transfer_id = op.transfer_id
        assert transfer_id is not None
        count = stored.first_events[transfer_id]
        postings = sorted(stored.postings.get(transfer_id, []))
        expected = sorted([(op.from_account, -op.amount), (op.to_account, op.amount)])
        if count > 1 or len(postings) > 2:
            report.doubled.append(transfer_id)
        if op.outcome == "ok":
            if stored.kind.get(transfer_id) != "Posted":
                report.lost.append(transfer_id)
            elif postings != expected:
                report.unbalanced.append(transfer_id)
        elif op.outcome == "rejected":
            recorded = stored.kind.get(transfer_id), recorded_codes.get(transfer_id)
            if recorded != ("Rejected", op.code) or postings:
                report.wrong_rejections.append(transfer_id)
        elif op.outcome == "failed":
            if count or postings:
                report.applied_failures.append(transfer_id)
        elif count:
            report.unknown_applied += 1
            if stored.kind.get(transfer_id) == "Posted" and postings != expected:
                report.unbalanced.append(transfer_id)
    for transfer_id, event in stored.posted.items():
        touches = {event.debit_account_id, event.credit_account_id} & set(bank.accounts)
        if touches and transfer_id not in sent and transfer_id not in bank.setup:
            report.phantoms.append(transfer_id)
    report.final_problems = _check_final(bank, stored, loaded, ours)
    report.final_balances = {str(a)[:8]: loaded[a] for a in bank.accounts}
    report.audit = audit_verify(database_url)
    return report


def _check_reads(bank: Bank, history: History) -> list[str]:
    bad = []
    for op in history.reads():
        assert op.balances is not None
        if op.balances.keys() != set(bank.accounts):
            bad.append(f"read at {op.started:.2f}: {len(op.balances)} of the accounts")
            continue
        if sum(op.balances.values()) != bank.total:
            bad.append(f"read at {op.started:.2f}: sum {sum(op.balances.values())}")
        for account, balance in op.balances.items():
            if balance < -bank.limits[account]:
                bad.append(f"read at {op.started:.2f}: {account} at {balance}")
    return bad


def _check_final(bank: Bank, stored: Any, loaded: dict[UUID, int], ours: set[UUID]) -> list[str]:
    problems = []
    folded: Counter[UUID] = Counter()
    for postings in stored.postings.values():
        for account, signed in postings:
            if account in ours:
                folded[account] += signed
    for account in bank.accounts:
        if loaded[account] != folded[account]:
            problems.append(f"{account}: loaded {loaded[account]} != folded {folded[account]}")
        if loaded[account] < -bank.limits[account]:
            problems.append(f"{account}: {loaded[account]} beyond its limit")
    if sum(loaded.values()) != bank.total:
        problems.append(f"final sum {sum(loaded.values())} != {bank.total}")
    return problems


def audit_verify(database_url: str) -> dict[str, Any]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EVENTLEDGER_")}
    done = subprocess.run(
        [EVENTLEDGER, "audit", "verify", "--json", "--database", database_url],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=environment,
    )  # fmt: skip
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"ok": False, "problems": [done.stdout[-2000:], done.stderr[-2000:]]}
    return result
