"""Through real ``eventledger serve`` processes on 127.0.0.1 and free ports.

1. The README's curl tour as pasted; then transfers in flight when the server gets
   ``kill -9``; restarted on the same SQLite file, every acknowledged account and
   transfer is there with the same balances, and the books still sum to zero.
2. Two servers sharing one PostgreSQL schema: Alice (100000) pays Bob 20000 ten times
   at once, split across both servers: exactly 5 succeed, 5 are insufficient_funds.
3. ``--workers 2`` on one SQLite file stays correct under concurrent writes.
4. Without API keys, a non-loopback bind is refused.

Every process is killed (process group, SIGKILL) when its test ends, pass or fail.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid4, uuid5

import httpx
import pytest

from tests.api.servers import EVENTLEDGER, Server, free_port, running_server

ROOT = Path(__file__).resolve().parents[2]
TOUR = re.compile(r"<!-- tour:api -->\n```bash\n(.*?)```\n<!-- /tour:api -->", re.DOTALL)
TIMEOUT = httpx.Timeout(20.0)


def world_usd() -> str:
    return str(uuid5(NAMESPACE_URL, "world:USD"))


def run_tour(server: Server) -> str:
    (script,) = TOUR.findall((ROOT / "README.md").read_text())
    script = script.replace("http://127.0.0.1:8000", server.url)
    # As pasted in a folder that is not the repository: the server's own work folder.
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=server.log_path.parent, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.log()}"
    return done.stdout


def post(url: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return httpx.post(url, json=body, headers=headers, timeout=TIMEOUT)


def with_retries(url: str, body: dict[str, Any], key: str) -> httpx.Response:
    """What a careful client does: 409 and 503 are retried with the same key."""
    for _ in range(10):
        response = post(url, body, key)
        if response.status_code not in (409, 503):
            return response
    return response


def get_json(url: str) -> dict[str, Any]:
    response = httpx.get(url, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_bodies_over_64_kib_are_refused(server: Server) -> None:
    """Through uvicorn: a declared length and a chunked body (no length) over 64 KiB."""

    def chunks() -> Iterator[bytes]:
        yield b'{"currency": "USD", "name": "'
        for _ in range(80):
            yield b"x" * 1024

    headers = {"Content-Type": "application/json"}
    for content in (b"x" * (64 * 1024 + 1), chunks()):
        response = httpx.post(
            f"{server.url}/v1/accounts", content=content, headers=headers, timeout=TIMEOUT
        )
        assert response.status_code == 413, response.text
        assert response.json()["code"] == "payload_too_large"
    assert httpx.get(f"{server.url}/healthz", timeout=TIMEOUT).status_code == 200


def test_tour_then_kill_9_then_restart_keeps_every_acknowledged_write(
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    with running_server(tmp_path, database) as server:
        tour = run_tour(server)
        alice, bob = re.search(r"alice=(\S+) bob=(\S+)", tour).groups()  # type: ignore[union-attr]
        tour_transfers = [
            json.loads(line) for line in tour.splitlines() if line.startswith('{"id"')
        ]
        tour_transfers = [t for t in tour_transfers if "from_account" in t]
        assert len(tour_transfers) == 3  # the deposit, the rent, the captured hold
        # The rent and the capture, each sent twice: the second answers are replays.
        assert tour.lower().count("idempotent-replayed: true") == 2
        tour_accounts = {a: get_json(f"{server.url}/v1/accounts/{a}") for a in (alice, bob)}
        assert tour_accounts[alice]["balance"] == 6800 and tour_accounts[bob]["balance"] == 3200
        assert tour_accounts[alice]["status"] == "frozen"

        assert_bodies_over_64_kib_are_refused(server)
        carol = post(f"{server.url}/v1/accounts", {"currency": "USD"}).json()["id"]
        dave = post(f"{server.url}/v1/accounts", {"currency": "USD"}).json()["id"]
        post(f"{server.url}/v1/accounts/{carol}/deposits", {"amount": 100000})
        attempted = [str(uuid4()) for _ in range(60)]
        acknowledged: list[str] = []
        enough = threading.Event()

        def pay(transfer_id: str) -> None:
            body = {"from_account": carol, "to_account": dave, "amount": 100,
                    "currency": "USD", "id": transfer_id}  # fmt: skip
            try:
                response = post(f"{server.url}/v1/transfers", body)
            except httpx.TransportError:
                return  # the server died with this request in flight
            if response.status_code == 201:
                acknowledged.append(transfer_id)
                if len(acknowledged) >= 20:
                    enough.set()

        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(pay, transfer_id) for transfer_id in attempted]
            assert enough.wait(30), server.log()
            server.kill_hard()
            for future in futures:
                future.result()
    assert 20 <= len(acknowledged) < len(attempted)

    with running_server(tmp_path, database) as restarted:
        url = restarted.url
        for account_id, before in tour_accounts.items():
            after = get_json(f"{url}/v1/accounts/{account_id}")
            assert after == before
        for transfer in tour_transfers:
            after = get_json(f"{url}/v1/transfers/{transfer['id']}")
            assert after["status"] == "posted"
            assert after["posted_amount"] == transfer["posted_amount"]
        found = []
        for transfer_id in attempted:
            response = httpx.get(f"{url}/v1/transfers/{transfer_id}", timeout=TIMEOUT)
            assert response.status_code in (200, 404)
            if response.status_code == 200:
                assert response.json()["status"] == "posted"
                found.append(transfer_id)
        assert set(acknowledged) <= set(found)
        print(
            f"kill -9 with writes in flight: {len(acknowledged)} acknowledged, "
            f"{len(found)} found after restart, {len(attempted)} attempted"
        )
        carol_after = get_json(f"{url}/v1/accounts/{carol}")["balance"]
        dave_after = get_json(f"{url}/v1/accounts/{dave}")["balance"]
        assert (carol_after, dave_after) == (100000 - 100 * len(found), 100 * len(found))
        world = get_json(f"{url}/v1/accounts/{world_usd()}")["balance"]
        assert world + 6800 + 3200 + carol_after + dave_after == 0


def test_two_servers_on_one_postgres_schema_split_the_bank_case(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    with (
        running_server(tmp_path, fresh_postgres_url, "--no-projections") as first,
        running_server(tmp_path, fresh_postgres_url, "--no-projections") as second,
    ):
        alice = post(f"{first.url}/v1/accounts", {"currency": "USD", "name": "alice"}).json()["id"]
        bob = post(f"{second.url}/v1/accounts", {"currency": "USD", "name": "bob"}).json()["id"]
        assert post(f"{second.url}/v1/accounts/{alice}/deposits", {"amount": 100000}).is_success
        assert post(f"{first.url}/v1/accounts/{bob}/deposits", {"amount": 50000}).is_success
        start = threading.Barrier(10)

        def pay(number: int) -> httpx.Response:
            server = (first, second)[number % 2]
            body = {"from_account": alice, "to_account": bob, "amount": 20000, "currency": "USD"}
            start.wait(10)
            return with_retries(f"{server.url}/v1/transfers", body, f"bank-{alice}-{number}")

        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(pay, range(10)))
        codes = sorted(
            "ok" if a.status_code in (200, 201) else a.json().get("code", a.status_code)
            for a in answers
        )
        assert codes == ["insufficient_funds"] * 5 + ["ok"] * 5, codes
        for server in (first, second):
            assert get_json(f"{server.url}/v1/accounts/{alice}")["balance"] == 0
            assert get_json(f"{server.url}/v1/accounts/{bob}")["balance"] == 150000
        retries = sum(
            float(line.split()[-1])
            for server in (first, second)
            for line in httpx.get(f"{server.url}/metrics").text.splitlines()
            if line.startswith("eventledger_concurrency_retries_total")
        )
        print(f"bank case over two servers: concurrency retries = {retries:.0f}")


def test_two_workers_on_one_sqlite_file_stay_correct(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'workers.db'}"
    with running_server(tmp_path, database, "--workers", "2", "--no-projections") as server:
        account = post(f"{server.url}/v1/accounts", {"currency": "USD"}).json()["id"]

        def deposit(number: int) -> int:
            url = f"{server.url}/v1/accounts/{account}/deposits"
            return with_retries(url, {"amount": 1}, f"w-{account}-{number}").status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(deposit, range(40)))
        assert set(statuses) <= {200, 201}, statuses
        assert get_json(f"{server.url}/v1/accounts/{account}")["balance"] == 40


def test_a_public_bind_without_keys_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [EVENTLEDGER, "serve", "--host", "0.0.0.0", "--port", str(free_port()),
         "--database", f"sqlite:///{tmp_path / 'open.db'}"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--insecure-no-auth" in done.stderr


@pytest.fixture
def store() -> str:
    """These tests pick their stores themselves; run each once."""
    return "postgres"
