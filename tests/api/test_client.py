"""The Python client (``eventledger.client``) against a real ``eventledger serve``.

Method: one server per module on a SQLite file (and one with an API key); the sync and
the async client each run the HTTP tour (accounts, deposits, a transfer, a hold posted,
a reversal, history, balance at a version, statement and list from the views, audit)
and check typed answers. Lost answers are made by a transport that forwards each
request to the real server and then, once, throws the answer away (the server has
committed): the client must send the same request again, with the same
Idempotency-Key, and money must move once. Problems come back as the exception of
their code.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.routers.read_models import AccountListOut, StatementOut
from api.schemas import AccountOut, TransferOut
from eventledger import errors
from eventledger.client import AsyncClient, Client, RetryPolicy
from tests.api.servers import EVENTLEDGER, Server, running_server

FAST_RETRIES = RetryPolicy(attempts=4, backoff_seconds=0.01, backoff_max_seconds=0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("client")
    with running_server(workdir, f"sqlite:///{workdir / 'ledger.db'}") as server:
        yield server


class LosesAnswers(httpx.BaseTransport):
    """Forwards to the real server; throws away the answer of the first request that
    ``loses`` matches (after the server answered), as a dropped connection would."""

    def __init__(self, loses: str, error: type[httpx.TransportError] = httpx.ReadError) -> None:
        self.inner = httpx.HTTPTransport()
        self.loses = loses
        self.error = error
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        matches = f"{request.method} {request.url.path}".endswith(self.loses)
        if matches and self.loses:
            self.loses = ""
            if self.error is httpx.ConnectError:  # refused: never reached the server
                raise self.error("connection refused", request=request)
            answer = self.inner.handle_request(request)
            answer.read()
            answer.close()
            raise self.error("connection reset after the request was sent", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def tour(ledger: Client) -> dict[str, Any]:
    alice = ledger.open_account("USD", "Alice", metadata={"tier": "gold"})
    bob = ledger.open_account("USD", "Bob")
    ledger.deposit(alice.id, 10_000, "salary")
    paid = ledger.transfer(alice.id, bob.id, 2_500, "USD", "rent")
    held = ledger.transfer(alice.id, bob.id, 1_000, "USD", pending=True)
    posted = ledger.post_pending(held.id, 700)
    reversal = ledger.reverse(paid.id, 500)
    return {"alice": alice, "bob": bob, "paid": paid, "posted": posted, "reversal": reversal}


class TestTheTour:
    def test_the_sync_client_answers_typed_results(self, server: Server) -> None:
        with Client(server.url, retry=FAST_RETRIES) as ledger:
            made = tour(ledger)
            alice = ledger.get_account(made["alice"].id)
            assert isinstance(alice, AccountOut) and isinstance(made["paid"], TransferOut)
            assert (alice.balance, alice.available_balance) == (10_000 - 2_500 - 700 + 500,) * 2
            assert made["posted"].status == "posted" and made["posted"].posted_amount == 700
            assert made["reversal"].reverses == made["paid"].id
            assert ledger.balance(alice.id, version=2).balance == 10_000
            events = ledger.account_events(alice.id)
            assert [event.type for event in events.items][:2] == ["Opened", "Credited"]
            # Read-your-writes: the views are asked to wait for the client's last write.
            statement = ledger.statement(alice.id)
            assert isinstance(statement, StatementOut)
            assert sum(posting.amount for posting in statement.items) == alice.balance
            listed = ledger.list_accounts(currency="USD", limit=1000)
            assert isinstance(listed, AccountListOut)
            assert alice.id in {row.id for row in listed.items}
            assert listed.position >= made["reversal"].position
            assert ledger.audit_verify().ok

    def test_the_async_client_does_the_same(self, server: Server) -> None:
        async def run() -> tuple[AccountOut, StatementOut]:
            async with AsyncClient(server.url, retry=FAST_RETRIES) as ledger:
                alice = await ledger.open_account("USD", "Alice")
                bob = await ledger.open_account("USD", "Bob")
                await ledger.deposit(alice.id, 1_000)
                await ledger.transfer(alice.id, bob.id, 400, "USD")
                return await ledger.get_account(alice.id), await ledger.statement(alice.id)

        alice, statement = asyncio.run(run())
        assert alice.balance == 600
        assert [posting.amount for posting in statement.items] == [1_000, -400]


class TestProblems:
    def test_each_problem_is_raised_as_the_exception_of_its_code(self, server: Server) -> None:
        with Client(server.url, retry=FAST_RETRIES) as ledger:
            alice = ledger.open_account("USD")
            bob = ledger.open_account("USD")
            with pytest.raises(errors.InsufficientFunds) as refused:
                ledger.transfer(alice.id, bob.id, 1, "USD")
            assert refused.value.status == 422 and refused.value.code == "insufficient_funds"
            with pytest.raises(errors.NotFound):
                ledger.get_transfer("00000000-0000-4000-8000-000000000000")
            with pytest.raises(errors.VersionMismatch):
                ledger.freeze(alice.id, if_version=99)
            with pytest.raises(errors.CurrencyMismatch):
                ledger.transfer(alice.id, bob.id, 1, "EUR")
            with pytest.raises(errors.ValidationError):
                ledger.open_account("usd")

    def test_every_code_the_server_knows_has_its_exception(self) -> None:
        from api.errors import HTTP_PROBLEMS, LEDGER_PROBLEMS

        server_codes = {kind.code for kind in (*LEDGER_PROBLEMS.values(), *HTTP_PROBLEMS.values())}
        generic = {"ledger_error", "bad_request", "not_acceptable", "unsupported_media_type",
                   "payload_too_large", "headers_too_large", "internal_error",
                   "method_not_allowed"}  # fmt: skip
        assert server_codes - generic <= errors.ERRORS_BY_CODE.keys()


class TestRetries:
    def test_a_lost_answer_is_sent_again_with_the_same_key_and_moves_money_once(
        self, server: Server
    ) -> None:
        transport = LosesAnswers("POST /v1/transfers")
        with Client(server.url, retry=FAST_RETRIES, transport=transport) as ledger:
            alice = ledger.open_account("USD")
            bob = ledger.open_account("USD")
            ledger.deposit(alice.id, 100)
            paid = ledger.transfer(alice.id, bob.id, 30, "USD")
            assert ledger.get_account(alice.id).balance == 70
            assert ledger.get_account(bob.id).balance == 30
        sent = [r for r in transport.sent if r.url.path == "/v1/transfers"]
        assert len(sent) == 2
        assert sent[0].headers["idempotency-key"] == sent[1].headers["idempotency-key"]
        assert sent[0].content == sent[1].content
        assert paid.status == "posted"

    def test_a_command_without_a_key_is_not_sent_again_after_a_lost_answer(
        self, server: Server
    ) -> None:
        transport = LosesAnswers("/freeze")
        with Client(server.url, retry=FAST_RETRIES, transport=transport) as ledger:
            alice = ledger.open_account("USD")
            with pytest.raises(httpx.ReadError):
                ledger.freeze(alice.id)
            assert ledger.get_account(alice.id).status == "frozen"  # it had been applied
        assert len([r for r in transport.sent if r.url.path.endswith("/freeze")]) == 1

    def test_a_refused_connection_is_retried_even_without_a_key(self, server: Server) -> None:
        transport = LosesAnswers("/freeze", httpx.ConnectError)
        with Client(server.url, retry=FAST_RETRIES, transport=transport) as ledger:
            alice = ledger.open_account("USD")
            assert ledger.freeze(alice.id).status == "frozen"
        assert len([r for r in transport.sent if r.url.path.endswith("/freeze")]) == 2

    def test_the_attempts_run_out_and_the_error_is_raised(self) -> None:
        # Nothing listens on port 1: every attempt is refused.
        policy = RetryPolicy(attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.01)
        with (
            Client("http://127.0.0.1:1", retry=policy) as ledger,
            pytest.raises(httpx.ConnectError),
        ):
            ledger.get_account("00000000-0000-4000-8000-000000000000")

    @pytest.mark.parametrize(("attempt", "retry_after", "low", "high"), [
        (1, None, 0.0, 0.1), (3, None, 0.0, 0.4), (20, None, 0.0, 5.0),
        (1, "2", 2.0, 2.0), (1, "60", 5.0, 5.0), (1, "soon", 0.0, 0.1), (1, "²", 0.0, 0.1),
    ])  # fmt: skip
    def test_backoff_grows_is_capped_and_honours_retry_after(
        self, attempt: int, retry_after: str | None, low: float, high: float
    ) -> None:
        policy = RetryPolicy(attempts=20, backoff_seconds=0.1, backoff_max_seconds=5.0)
        for _ in range(50):
            assert low <= policy.delay_seconds(attempt, retry_after) <= high


class TestWithAKey:
    def test_a_key_is_sent_and_its_absence_is_unauthorized(self, tmp_path: Path) -> None:
        database = f"sqlite:///{tmp_path / 'keyed.db'}"
        created = subprocess.run(
            [EVENTLEDGER, "keys", "create", "--scope", "admin", "--database", database, "--json"],
            capture_output=True, text=True, check=True, cwd=tmp_path,
        )  # fmt: skip
        key = json.loads(created.stdout)["key"]
        with running_server(tmp_path, database) as server:
            with Client(server.url, key, retry=FAST_RETRIES) as ledger:
                assert ledger.open_account("USD").currency == "USD"
            with (
                Client(server.url, retry=FAST_RETRIES) as anonymous,
                pytest.raises(errors.Unauthorized),
            ):
                anonymous.open_account("USD")
