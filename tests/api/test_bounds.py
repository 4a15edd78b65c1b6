"""Issue 13, items 1 to 3, as a client meets them: over HTTP and through the CLI.

Method: the issue's attacks, at full size, on every store (the batched attacks on
SQLite and PostgreSQL, the two kinds of views).

1. Ten batches of 1,000 pending transfers of 10^15 from the world account to one
   account: the batch that would take its pending credits past 2**63 - 1 is refused
   (422 ``batch_item_failed``, ``item_code`` ``amount_out_of_range``, naming the item),
   a single transfer one past the limit is refused and recorded, one exactly at it is
   taken; with the followers running, ``?min_position=`` reads answer at once and the
   views, and ``audit verify``, agree with the ledger.
2. Ten batches of 1,000 deposits of 10^15 into one client's own accounts take the
   world account past -2**63 (its range is 128 bits): a 1-cent deposit into another
   client's account is still taken, and the views hold the world's balance exactly.
3. A world id (uuid5 of ``world:<CUR>``, any three letters) is refused with 422
   ``reserved_id`` as an account id, a transfer id (body ``id``, or derived from an
   ``Idempotency-Key``), a deposit or withdrawal id, a batch item id and a reversal id,
   and nothing is written: the squats of the issue cannot happen. The same holds from
   the CLI. The cases join the hostile corpus (``hostile_failures``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api import idempotency
from api.app import create_app
from api.cli import app as cli
from domain.money import AMOUNT_MAX, BALANCE_MAX, world_account_id
from infrastructure.settings import Settings
from tests.api.support import (
    assert_problem,
    balance,
    deposit,
    hostile_failures,
    open_account,
    transfer,
)

BATCH = 1_000
FITTING = BALANCE_MAX // AMOUNT_MAX  # 9,223 transfers of 10^15 fit below 2**63 - 1
REST = BALANCE_MAX - FITTING * AMOUNT_MAX
JSON = "application/json"


def world(currency: str) -> str:
    return str(world_account_id(currency))


def batch_of(source: str, to: str, currency: str, count: int, **fields: Any) -> dict[str, Any]:
    item = {"from_account": source, "to_account": to, "amount": AMOUNT_MAX, "currency": currency}
    return {"transfers": [{**item, **fields}] * count}


def post_batch(client: TestClient, body: dict[str, Any]) -> Any:
    response = client.post("/v1/transfers/batch", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def followed(fresh_settings: Settings) -> Iterator[TestClient]:
    """An app on an empty store with its projection followers running."""
    app = create_app(fresh_settings.model_copy(update={"run_projections": True}))
    with TestClient(app) as client:
        yield client


def verify(client: TestClient) -> None:
    result = client.app.state.audit.verify()  # type: ignore[attr-defined]
    assert result.ok, [problem.as_dict() for problem in result.problems]


def account_rows(client: TestClient, currency: str, position: int) -> dict[str, Any]:
    """The balances view's rows of ``currency``, read once it reached ``position``."""
    response = client.get(
        "/v1/accounts", params={"currency": currency, "min_position": position, "limit": 1000}
    )
    assert response.status_code == 200, response.text
    return {row["id"]: row for row in response.json()["items"]}


# The attacks take ten HTTP batches each; the memory store's views are a SQLite file,
# so SQLite and PostgreSQL cover every kind of view.
VIEW_STORES = pytest.mark.parametrize("store", ["sqlite", "postgres"])


@VIEW_STORES
class TestPendingAmounts:
    def test_the_issues_batches_of_holds_are_refused_at_the_limit(
        self, followed: TestClient
    ) -> None:
        client, currency = followed, "USD"
        account = open_account(client, currency)
        source = world(currency)
        for _ in range(9):
            post_batch(client, batch_of(source, account, currency, BATCH, pending=True))
        refused = client.post(
            "/v1/transfers/batch", json=batch_of(source, account, currency, BATCH, pending=True)
        )
        problem = assert_problem(refused, 422, "batch_item_failed")
        assert (problem["index"], problem["item_code"]) == (FITTING - 9 * BATCH,
                                                            "amount_out_of_range")  # fmt: skip
        post_batch(client, batch_of(source, account, currency, FITTING - 9 * BATCH, pending=True))

        over = transfer(client, source, account, REST + 1, pending=True)
        body = assert_problem(over, 422, "amount_out_of_range")
        recorded = client.get(f"/v1/transfers/{body['transfer_id']}").json()
        assert (recorded["status"], recorded["error_code"]) == ("rejected", "amount_out_of_range")
        last = transfer(client, source, account, REST, pending=True)
        assert last.status_code == 201, last.text
        held = client.get(f"/v1/accounts/{account}").json()
        assert (held["pending_credits"], held["balance"]) == (BALANCE_MAX, 0)
        assert_problem(deposit_response(client, account, 1), 422, "amount_out_of_range")

        # Capturing a hold at the limit works; the views keep up and agree.
        captured = client.post(f"/v1/transfers/{last.json()['id']}/post")
        assert captured.status_code == 200, captured.text
        rows = account_rows(client, currency, captured.json()["position"])
        assert (rows[account]["balance"], rows[account]["pending_credits"]) == (
            REST, BALANCE_MAX - REST,
        )  # fmt: skip
        assert rows[source]["pending_debits"] == BALANCE_MAX - REST
        assert rows[source]["available_balance"] == -BALANCE_MAX
        verify(client)


def deposit_response(client: TestClient, account: str, amount: int) -> Any:
    return client.post(f"/v1/accounts/{account}/deposits", json={"amount": amount})


@VIEW_STORES
class TestSaturation:
    def test_one_client_fills_only_its_own_accounts(self, followed: TestClient) -> None:
        client, currency = followed, "USD"
        own = [open_account(client, currency) for _ in range(2)]
        someone_else = open_account(client, currency)
        source = world(currency)
        for number in range(10):
            post_batch(client, batch_of(source, own[number % 2], currency, BATCH))
        taken = 10 * BATCH * AMOUNT_MAX
        assert balance(client, source) == -taken < -(2**63)
        cent = deposit(client, someone_else, 1)
        assert cent.status_code == 201 and balance(client, someone_else) == 1
        world_balance = -taken - 1
        assert balance(client, source) == world_balance

        position = cent.json()["position"]
        rows = account_rows(client, currency, position)
        assert rows[source]["balance"] == rows[source]["available_balance"] == world_balance
        assert sum(row["balance"] for row in rows.values()) == 0
        # The cent's save: the world's Debited, the Credited, then Transfer.Posted at
        # the answer's position; the world's statement after the batches has one line.
        statement = client.get(
            f"/v1/accounts/{source}/statement",
            params={"cursor": str(position - 3), "min_position": position},
        )
        assert statement.status_code == 200, statement.text
        assert [p["balance_after"] for p in statement.json()["items"]] == [world_balance]
        every_view = client.get("/v1/projections", params={"min_position": position})
        lags = {view["name"]: view["lag"] for view in every_view.json()["projections"]}
        assert [lags[name] for name in ("balances", "statements", "totals")] == [0, 0, 0]
        totals = client.app.state.read_models.totals()  # type: ignore[attr-defined]
        assert [(t.currency, t.balance_sum, t.accounts) for t in totals] == [(currency, 0, 3)]
        verify(client)


# A world id as the id of each command a client can give one; all must be refused.
RESERVED = world("AUD")


class TestReservedIds:
    def test_as_an_account_id_in_another_currency(self, client: TestClient) -> None:
        head = client.app.state.ledger.head_position()  # type: ignore[attr-defined]
        squat = client.post("/v1/accounts", json={"currency": "USD", "id": world("JPY")})
        body = assert_problem(squat, 422, "reserved_id")
        assert world("JPY") in body["detail"]
        for code in ("USD", "ZZZ"):  # its own currency; a code no currency has yet
            squat = client.post("/v1/accounts", json={"currency": "USD", "id": world(code)})
            assert_problem(squat, 422, "reserved_id")
        assert client.app.state.ledger.head_position() == head  # type: ignore[attr-defined]
        yen = open_account(client, "JPY")
        assert deposit(client, yen, 500).status_code == 201  # JPY deposits work

    def test_as_a_transfer_or_deposit_id(
        self, client: TestClient, accounts: tuple[str, str]
    ) -> None:
        alice, bob = accounts
        ledger = client.app.state.ledger  # type: ignore[attr-defined]
        head = ledger.head_position()
        assert_problem(transfer(client, alice, bob, 1, id=RESERVED), 422, "reserved_id")
        assert_problem(
            transfer(client, alice, bob, 1, id=RESERVED, pending=True), 422, "reserved_id"
        )
        for route in ("deposits", "withdrawals"):
            moved = client.post(f"/v1/accounts/{alice}/{route}", json={"amount": 1, "id": RESERVED})
            assert_problem(moved, 422, "reserved_id")
        assert ledger.head_position() == head
        assert_problem(client.get(f"/v1/transfers/{RESERVED}"), 404, "not_found")
        dollars_in = deposit(client, bob, 7)  # and the AUD one works, as below
        assert dollars_in.status_code == 201
        aussie = open_account(client, "AUD")
        assert deposit(client, aussie, 5).status_code == 201
        assert (balance(client, alice), balance(client, bob)) == (1000, 7)

    def test_as_a_batch_item_id(self, client: TestClient, accounts: tuple[str, str]) -> None:
        alice, bob = accounts
        head = client.app.state.ledger.head_position()  # type: ignore[attr-defined]
        item = {"from_account": alice, "to_account": bob, "amount": 1, "currency": "USD"}
        response = client.post(
            "/v1/transfers/batch", json={"transfers": [item, {**item, "id": RESERVED}]}
        )
        problem = assert_problem(response, 422, "batch_item_failed")
        assert (problem["index"], problem["item_code"]) == (1, "reserved_id")
        assert client.app.state.ledger.head_position() == head  # type: ignore[attr-defined]

    def test_as_a_reversal_id(self, client: TestClient, accounts: tuple[str, str]) -> None:
        alice, bob = accounts
        paid = transfer(client, alice, bob, 10).json()["id"]
        head = client.app.state.ledger.head_position()  # type: ignore[attr-defined]
        for world_id in (world("USD"), RESERVED):  # an existing world account, and not
            reversed_ = client.post(f"/v1/transfers/{paid}/reverse", json={"id": world_id})
            assert_problem(reversed_, 422, "reserved_id")
        assert client.app.state.ledger.head_position() == head  # type: ignore[attr-defined]
        assert client.get(f"/v1/transfers/{paid}").json()["reversed_amount"] == 0

    def test_as_an_id_derived_from_an_idempotency_key(
        self, client: TestClient, accounts: tuple[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # No key is known whose uuid5 is a world id (that would take a SHA-1 preimage);
        # with the world ids' own namespace, the key "world:AUD" derives one, which
        # shows the check sees the id however it was made.
        alice, bob = accounts
        monkeypatch.setattr(idempotency, "IDEMPOTENCY_NAMESPACE", NAMESPACE_URL)
        assert uuid5(NAMESPACE_URL, "world:AUD") == world_account_id("AUD")
        key = {"Idempotency-Key": "world:AUD"}
        paid = transfer(client, alice, bob, 10).json()["id"]
        answers = [
            client.post("/v1/accounts", json={"currency": "EUR"}, headers=key),
            transfer(client, alice, bob, 1, idempotency_key="world:AUD"),
            client.post(f"/v1/accounts/{bob}/deposits", json={"amount": 1}, headers=key),
            client.post(f"/v1/transfers/{paid}/reverse", json={}, headers=key),
        ]
        for answer in answers:
            assert_problem(answer, 422, "reserved_id")

    def test_join_the_hostile_corpus(self, client: TestClient, accounts: tuple[str, str]) -> None:
        alice, bob = accounts
        transfer_body = '{"from_account":"%(a)s","to_account":"%(b)s","amount":1,"currency":"USD"'
        table = [
            (f"transfer id is world({code})", transfer_body + f',"id":"{world(code)}"}}', JSON,
             422, "reserved_id")
            for code in ("USD", "AUD", "JPY", "QQQ")
        ] + [
            ("pending to a world id", transfer_body + f',"pending":true,"id":"{RESERVED}"}}',
             JSON, 422, "reserved_id"),
        ]  # fmt: skip
        assert hostile_failures(client, table, alice, bob) == []


@pytest.mark.parametrize("store", ["sqlite"])
def test_the_cli_refuses_world_ids(settings: Settings) -> None:
    runner = CliRunner()
    database = ["--database", settings.database_url]
    opened = runner.invoke(cli, ["accounts", "open", "USD", "--id", world("JPY"), *database])
    assert opened.exit_code != 0 and "reserved_id" in opened.output, opened.output
    alice = runner.invoke(cli, ["accounts", "open", "USD", "--json", *database])
    assert alice.exit_code == 0, alice.output
    alice_id = json.loads(alice.stdout)["id"]
    moved = runner.invoke(cli, ["deposit", alice_id, "5", "--id", RESERVED, *database])
    assert moved.exit_code != 0 and "reserved_id" in moved.output, moved.output
    yen = json.loads(runner.invoke(cli, ["accounts", "open", "JPY", "--json", *database]).stdout)
    deposited = runner.invoke(cli, ["deposit", yen["id"], "5", *database])
    assert deposited.exit_code == 0, deposited.output
