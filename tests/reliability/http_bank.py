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

Servers (``http_bank_servers``) restart on the same port, so clients keep their URL.
Faults run in a thread of their own, bounded in count and time, and stop by themselves:
``kill -9`` of a server and its restart on the same database, and SIGSTOP/SIGCONT
pauses.

Checker (``http_bank_checker``, reading the event store directly once every server is
stopped): every read sums to the total and holds every account, each within its
overdraft limit; every acknowledged transfer is in the store exactly once, posted,
with exactly one debit and one credit of its amount; every rejected one is recorded as
rejected, with the code the client was given, and moved nothing; every failed one is
absent; every unknown one is there at most once; no transfer among the accounts
appears that nobody sent; each account's final balance is the fold of its postings and
they sum to the total; ``eventledger audit verify --json`` is ok.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import httpx

from tests.reliability.http_bank_servers import START_TIMEOUT_SECONDS, ServerProcess

CURRENCY = "USD"
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
                for row in page["items"]
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
