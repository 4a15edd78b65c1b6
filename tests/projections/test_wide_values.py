"""The views hold a world account's 128-bit numbers exactly, and ``audit verify`` agrees.

Method: issue 13's saturation, through the Ledger: ten batches of 1,000 deposits of
10^15 into one client's two accounts take the world's balance past -2**63, then a
1-cent deposit into a third account, holds from the world (one captured, one voided),
and a reversal. The followers then apply the log in odd-sized batches; every balances
row must equal its account aggregate (world included), the world's statement must end
at its balance, the totals must sum to exactly 0, a rebuild must give the same rows,
and ``audit verify`` must pass with its read-model checks. How the numbers are stored
is checked too: NUMERIC on PostgreSQL, an INTEGER or (past 64 bits) the decimal text
in a column without affinity on SQLite, never a REAL. Last, views made before the
columns were wide are widened in place, keeping their rows.
"""

from __future__ import annotations

from uuid import UUID

import pytest

from domain.ledger import Ledger
from domain.money import AMOUNT_MAX, world_account_id
from infrastructure.views import ViewStore
from projections.audit import Audit
from projections.base import create_tables
from projections.catalog import all_projections, select_projections
from projections.follower import follower_for
from projections.queries import ReadModels
from projections.rebuild import rebuild
from tests.projections.conftest import assert_rows_match_aggregates, dump

# The memory store's views are a SQLite file: SQLite and PostgreSQL cover every kind.
pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgres"])

CURRENCY = "XAU"
BATCH = 1_000


def saturate(ledger: Ledger) -> dict[str, UUID]:
    world = world_account_id(CURRENCY)
    own = [ledger.open_account(CURRENCY, f"own {n}").id for n in range(2)]
    other = ledger.open_account(CURRENCY, "someone else").id
    for batch in range(10):
        item = dict(from_account=world, to_account=own[batch % 2], amount=AMOUNT_MAX,
                    currency=CURRENCY, description=f"batch {batch}")  # fmt: skip
        ledger.transfer_batch([item] * BATCH)
    ledger.deposit(other, 1, "one cent")
    held = [ledger.transfer(world, other, AMOUNT_MAX, CURRENCY, pending=True).id for _ in range(3)]
    ledger.post_pending(held[0], 7)
    ledger.void_pending(held[1])
    paid = ledger.transfer(own[0], other, 500, CURRENCY).id
    ledger.reverse(paid, 200)
    return {"world": world, "own": own[0], "other": other}


def statement_balances(read_models: ReadModels, account: UUID) -> list[int]:
    balances, cursor = [], None
    while True:
        page = read_models.statement(account, cursor=cursor, limit=1000)
        balances += [posting.balance_after for posting in page.items]
        if page.next_cursor is None:
            return balances
        cursor = page.next_cursor


def test_views_and_verify_agree_past_64_bits(ledger: Ledger, views: ViewStore) -> None:
    ids = saturate(ledger)
    world = ledger.get_account(ids["world"])
    assert world.balance == -10 * BATCH * AMOUNT_MAX - 1 - 7 < -(2**63)
    assert world.available_balance == world.balance - AMOUNT_MAX  # one hold left

    follower = follower_for(ledger, views, select_projections(), batch_size=997)
    follower.catch_up()
    assert follower.position == ledger.head_position()
    assert assert_rows_match_aggregates(ledger, views) == 4  # with the world account
    read_models = ReadModels(views, ledger.head_position)
    world_row = next(
        row for row in read_models.list_accounts(currency=CURRENCY).items if row.is_world
    )
    assert (world_row.balance, world_row.available_balance) == (
        world.balance, world.available_balance,
    )  # fmt: skip
    balances = statement_balances(read_models, ids["world"])
    assert len(balances) == 10 * BATCH + 2 and balances[-1] == world.balance
    assert balances[BATCH * 9 - 1] == -9 * BATCH * AMOUNT_MAX  # still in 64 bits: an int
    (totals,) = [t for t in read_models.totals() if t.currency == CURRENCY]
    assert (totals.balance_sum, totals.accounts) == (0, 3)
    assert read_models.balance_sums() == {CURRENCY: 0}

    result = Audit(ledger, views).verify()
    assert result.ok, [problem.as_dict() for problem in result.problems]
    assert {"read_model:balances", "read_model:totals", "read_model:statements"} <= set(
        result.checks
    )

    before = dump(views)
    rebuild(ledger, views, select_projections(), batch_size=1_501)
    assert dump(views) == before


def test_the_wide_numbers_are_stored_exactly(ledger: Ledger, views: ViewStore) -> None:
    ids = saturate(ledger)
    follower_for(ledger, views, select_projections()).catch_up()
    world, own = ids["world"].hex, ids["own"].hex
    with views.read() as tx:
        if tx.dialect.is_sqlite:
            stored = dict(
                tx.fetchall(
                    "SELECT account_id, typeof(balance) FROM balances WHERE account_id IN (?, ?)",
                    (world, own),
                )
            )
            assert stored == {world: "text", own: "integer"}
            query = "SELECT DISTINCT typeof(balance_after) FROM statements"
            kinds = {row[0] for row in tx.fetchall(query)}
            assert kinds == {"text", "integer"}  # never "real"
        else:
            assert tx.column_types("balances")["balance"] == "NUMERIC(39,0)"
            assert tx.column_types("statements")["balance_after"] == "NUMERIC(39,0)"
            assert tx.column_types("totals")["balance_sum"] == "NUMERIC(39,0)"


def test_views_made_before_the_wide_columns_are_widened_in_place(
    ledger: Ledger, views: ViewStore
) -> None:
    # The tables as they were made before: every number a 64-bit {int}.
    projections = select_projections()
    follower = follower_for(ledger, views, projections)  # makes the current tables ...
    with views.transaction() as tx:  # ... which are replaced by the narrow ones
        for projection in projections:
            for logical, template in projection.tables.items():
                tx.execute(f"DROP TABLE {logical}")
                tx.execute(template.replace("{wide}", "{int}").replace("{table}", logical))
    account = ledger.open_account(CURRENCY).id
    ledger.deposit(account, 42)
    follower.catch_up()
    narrow = dump(views)
    with views.transaction() as tx:
        assert tx.column_types("balances")["balance"] in ("INTEGER", "BIGINT")
        for projection in all_projections().values():
            create_tables(tx, projection, rebuilding=False, generation="g1")
        assert tx.column_types("balances")["balance"] == tx.dialect.types["wide"]
        assert tx.column_types("statements")["balance_after"] == tx.dialect.types["wide"]
        assert tx.column_types("totals")["balance_sum"] == tx.dialect.types["wide"]
        indexes = tx.index_names("balances") | tx.index_names("statements")
        assert any(name.startswith("balances_0_") for name in indexes)
        assert any(name.startswith("statements_0_") for name in indexes)
    widened = dump(views)
    assert _as_ints(widened) == _as_ints(narrow)  # every row kept, exactly
    saturate(ledger)
    follower.catch_up()
    assert assert_rows_match_aggregates(ledger, views) == 5
    assert Audit(ledger, views).verify().ok


def _as_ints(rows: dict[str, list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
    """Rows with PostgreSQL's Decimals as ints, to compare with BIGINT rows."""
    from decimal import Decimal

    return {
        table: [tuple(int(v) if isinstance(v, Decimal) else v for v in row) for row in found]
        for table, found in rows.items()
    }
